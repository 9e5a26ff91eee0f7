/**
 * A queue worker reads and writes only under its `--root` folders: every path a job names is resolved (symlinks
 * followed) and must lie inside one of them, else the item fails with E_QUEUE_PATH (a queue is not a way to read
 * arbitrary files of the machines that serve it).
 */
import { realpath } from 'node:fs/promises';
import { dirname, isAbsolute, join, sep, basename } from 'node:path';
import { EngineError } from '../types.js';

export class RootGuard {
  private constructor(private readonly roots: readonly string[]) {}

  /** The guard of `roots` (each must exist: E_USAGE-like E_QUEUE_ROOT otherwise). */
  static async open(roots: readonly string[]): Promise<RootGuard> {
    if (roots.length === 0) throw new EngineError('E_QUEUE_ROOT', 'queue', undefined, 'a worker needs at least one --root folder (the shared storage it may read and write)');
    const real: string[] = [];
    for (const r of roots) {
      try {
        real.push(await realpath(r));
      } catch (err) {
        throw new EngineError('E_QUEUE_ROOT', 'queue', undefined, `--root ${r} cannot be opened: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    return new RootGuard(real);
  }

  get folders(): readonly string[] {
    return this.roots;
  }

  /**
   * `path` resolved (symlinks followed; a path that does not exist yet is resolved through its nearest existing
   * parent) if it lies under a root; E_QUEUE_PATH naming `what` and the item otherwise.
   */
  async check(path: string, what: string, stage: string, key: string): Promise<string> {
    if (typeof path !== 'string' || !isAbsolute(path)) throw new EngineError('E_QUEUE_PATH', stage, key, `${what} must be an absolute path, got ${JSON.stringify(path)}`);
    const real = await realpathOfNearest(path);
    if (this.roots.some((r) => real === r || real.startsWith(r.endsWith(sep) ? r : r + sep))) return real;
    throw new EngineError('E_QUEUE_PATH', stage, key, `${what} ${path} is outside this worker's --root folder(s) (${this.roots.join(', ')}); refused`);
  }
}

async function realpathOfNearest(path: string): Promise<string> {
  const rest: string[] = [];
  for (let p = path; ; p = dirname(p)) {
    try {
      return join(await realpath(p), ...rest.reverse());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(p) === p) throw err;
      rest.push(basename(p));
    }
  }
}
