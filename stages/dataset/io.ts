/**
 * File-system plumbing of the dataset's commit: one clear error line per failed operation (path and errno),
 * durable writes (temporary name, fsync, rename; the temporary file removed on failure) and directory fsyncs.
 */
import { open, readFile, rename, rm } from 'node:fs/promises';

/** A node system error (it has an errno code such as ENOSPC and the syscall that failed). */
export function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  const e = err as NodeJS.ErrnoException | undefined;
  return typeof e?.code === 'string' && typeof e.syscall === 'string';
}

/** `ENOSPC (no space left on device)` from a node system error's message `ENOSPC: no space left on device, write`. */
export function errnoText(err: NodeJS.ErrnoException): string {
  const desc = /^[A-Z0-9_]+: ([^,]+)/.exec(err.message)?.[1];
  return desc === undefined ? String(err.code) : `${err.code} (${desc})`;
}

/** An output error: code E_OUTPUT_IO, one line naming what was done, the path and the errno. */
export class OutputError extends Error {
  readonly code = 'E_OUTPUT_IO';
  override readonly name = 'OutputError';
  constructor(
    readonly path: string,
    readonly errno: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** `err` as an OutputError naming `path` when it is a system error; any other error unchanged. */
export function outputError(err: unknown, what: string, path: string): unknown {
  if (err instanceof OutputError || !isSystemError(err)) return err;
  return new OutputError(path, String(err.code), `E_OUTPUT_IO: cannot ${what} ${path}: ${errnoText(err)}`, { cause: err });
}

/** Runs `fn`, turning a system error into an OutputError naming `path`. */
export async function naming<T>(what: string, path: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw outputError(err, what, path);
  }
}

/** Writes `data` to a new file `path` and fsyncs it; a partial file is removed on failure. */
export async function writeSynced(path: string, data: string | Uint8Array, shownAs: string = path): Promise<void> {
  let done = false;
  try {
    await naming('write', shownAs, async () => {
      const fh = await open(path, 'w');
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
    });
    done = true;
  } finally {
    if (!done) await rm(path, { force: true });
  }
}

/** Writes `data` to `path` as a whole: `path.tmp-<tag>`, fsync, rename; the temporary file is removed on failure. */
export async function writeDurable(path: string, data: string | Uint8Array, tag: string = String(process.pid)): Promise<void> {
  const tmp = `${path}.tmp-${tag}`;
  await writeSynced(tmp, data, path);
  try {
    await naming('write', path, () => rename(tmp, path));
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * fsync of a directory, so that the renames and unlinks in it are on disk before the next step (a no-op on
 * file systems that cannot sync a directory; NFS commits each rename on the server before it returns).
 */
export async function syncDir(dir: string): Promise<void> {
  await naming('sync', dir, async () => {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EBADF' && code !== 'EISDIR') throw err;
    } finally {
      await fh.close();
    }
  });
}

/** A file's text; undefined when there is no such file (other errors are thrown as they are). */
export async function readTextIfThere(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Removes a file; true when it was there. */
export async function unlinkIfThere(path: string): Promise<boolean> {
  return naming('remove', path, async () => {
    try {
      await rm(path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  });
}
