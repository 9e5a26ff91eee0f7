/** Safe resolution of an image_id to a slide file inside the slides folder. */
import { stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { SlideError } from './errors.js';

/** Extensions tried, in order, for `<slidesDir>/<image_id>.<ext>`. */
export const SLIDE_EXTENSIONS = ['svs', 'tif', 'tiff', 'ome.tif', 'ome.tiff', 'ndpi', 'mrxs', 'scn', 'vms', 'vmu', 'bif'] as const;

/** Throws E_BAD_IMAGE_ID unless image_id is a plain file-name stem (no separators, `..`, NUL, absolute path). */
export function checkImageId(image_id: string, slidesDir: string): void {
  const bad =
    image_id.length === 0 ||
    image_id.includes('\0') ||
    image_id.includes('/') ||
    image_id.includes('\\') ||
    image_id === '.' ||
    image_id === '..' ||
    image_id.startsWith('..') ||
    resolve(slidesDir, image_id) !== join(resolve(slidesDir), image_id);
  if (bad) throw new SlideError('E_BAD_IMAGE_ID', image_id, slidesDir, 'image_id must be a plain file name inside the slides folder');
}

/**
 * Finds `<slidesDir>/<image_id>.<ext>` over SLIDE_EXTENSIONS, or `<slidesDir>/<image_id>` when the id is
 * already a file name. Never looks outside slidesDir. Throws E_BAD_IMAGE_ID or E_SLIDE_MISSING.
 */
export async function resolveSlidePath(slidesDir: string, image_id: string): Promise<string> {
  checkImageId(image_id, slidesDir);
  const root = resolve(slidesDir);
  const candidates = [...SLIDE_EXTENSIONS.map((ext) => `${image_id}.${ext}`), image_id];
  for (const name of candidates) {
    const p = join(root, name);
    if (!p.startsWith(root + sep)) continue;
    const st = await stat(p).catch(() => undefined);
    if (st?.isFile()) return p;
  }
  throw new SlideError('E_SLIDE_MISSING', image_id, join(root, image_id), `no slide file (tried .${SLIDE_EXTENSIONS.join(', .')} and the exact name)`);
}
