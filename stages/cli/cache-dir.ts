/**
 * The cache folder: the demo slides and models, the StainNet lookup table (keyed by the model's sha256) and the
 * int8 copies (keyed by what they were made from). `WSI_CACHE_DIR` when set and not empty (one cache for all of a
 * user's runs, e.g. on a cluster's home folder), else `./.cache`. What is written there goes through a temporary
 * file of its writer's own and a rename, so concurrent runs may share it.
 */
import { resolve } from 'node:path';

export const CACHE_DIR_ENV = 'WSI_CACHE_DIR';

/** The cache folder, absolute. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env[CACHE_DIR_ENV];
  return resolve(dir === undefined || dir === '' ? '.cache' : dir);
}
