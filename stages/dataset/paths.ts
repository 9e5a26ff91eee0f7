/**
 * The job's folders, checked before any work: `--slides` must be a folder; `--out` and the work folder must be
 * folders this process can create and write (checked by doing it; nothing is left behind). Each refusal is a usage error (E_USAGE, exit code 2) naming the
 * flag, the path and the errno.
 */
import { mkdir, open, rm, rmdir, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { errnoText, isSystemError } from './io.js';

function usage(message: string): Error {
  return Object.assign(new Error(message), { code: 'E_USAGE' });
}

function errnoOf(err: unknown): string {
  if (isSystemError(err)) return errnoText(err);
  throw err;
}

/** `--slides DIR`: an existing folder. */
export async function checkSlidesDir(dir: string): Promise<void> {
  const st = await stat(dir).catch((err: unknown) => {
    throw usage(`--slides ${dir}: ${errnoOf(err)}: no such folder`);
  });
  if (!st.isDirectory()) throw usage(`--slides ${dir}: ENOTDIR: not a folder`);
}

/**
 * `flag DIR`: can be created and written (a probe file): a read-only mount is found here. Leaves nothing behind:
 * the probe and the folders made for it are removed (the job makes its folders later, once past every check).
 */
export async function checkWritableDir(flag: string, dir: string): Promise<void> {
  const st = await stat(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw usage(`${flag} ${dir}: ${errnoOf(err)}`);
  });
  if (st !== undefined && !st.isDirectory()) throw usage(`${flag} ${dir}: ENOTDIR: exists and is not a folder`);
  const created: string[] = [];
  try {
    await mkdirEach(dir, created).catch((err: unknown) => {
      throw usage(`${flag} ${dir}: ${errnoOf(err)}: the folder cannot be created`);
    });
    await probeWrite(flag, dir);
  } finally {
    for (const d of created.reverse()) {
      await rmdir(d).catch((err: NodeJS.ErrnoException) => {
        // Another process put something there meanwhile: its folder now, not ours to remove.
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST' && err.code !== 'ENOENT') throw err;
      });
    }
  }
}

async function probeWrite(flag: string, dir: string): Promise<void> {
  const probe = join(dir, `.write-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(probe, 'wx');
    try {
      await fh.write('probe\n');
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw usage(`${flag} ${dir}: ${errnoOf(err)}: the folder cannot be written`);
  } finally {
    await rm(probe, { force: true });
  }
}

/**
 * mkdir -p, one level at a time: node's recursive mkdir reports a read-only parent as ENOENT, this gives the
 * real errno (EROFS, EACCES, ENOSPC, ...).
 */
async function mkdirEach(dir: string, created: string[]): Promise<void> {
  const missing: string[] = [];
  for (let d = resolve(dir); !existsSync(d); d = dirname(d)) missing.unshift(d);
  for (const d of missing) {
    const made = await mkdir(d).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
        return false;
      },
    );
    if (made) created.push(d);
  }
}

/** The main job's folders, before any work. */
export async function checkJobPaths(p: { readonly slides: string | undefined; readonly out: string; readonly workDir: string; readonly cache?: string | undefined }): Promise<void> {
  if (p.slides !== undefined) await checkSlidesDir(p.slides);
  await checkWritableDir('--out', p.out);
  await checkWritableDir('--work-dir', p.workDir);
  // The cache folder when given by WSI_CACHE_DIR (./.cache is the job's own, made when needed).
  if (p.cache !== undefined) await checkWritableDir('WSI_CACHE_DIR', p.cache);
}
