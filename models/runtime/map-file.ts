/**
 * Read-only memory maps of large files that every worker reads whole (StainNet's 48 MB lookup table), through
 * koffi and the C library's mmap. Reading the table into a buffer cost each worker ~180 ms of CPU, nearly all of it
 * faulting in 12,000 fresh pages; mapped with MAP_POPULATE it takes ~3 ms, and the pages are the page cache's,
 * shared by every process that maps the file. Where the C library cannot be reached (not Linux with glibc), or mmap
 * fails, the file is read as before.
 *
 * A mapping lives as long as the process. The file must not be truncated while mapped (reads past its end would
 * raise SIGBUS): the table cache replaces a file by renaming a new one over it, which leaves a mapped file intact.
 */
import { open, readFile } from 'node:fs/promises';
import koffi from 'koffi';

const PROT_READ = 1;
const MAP_SHARED = 1;
const MAP_POPULATE = 0x8000;
/** mmap's MAP_FAILED, (void *) -1. */
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

export type Mmap = (addr: null, length: number, prot: number, flags: number, fd: number, offset: number) => unknown;

let mmap: Mmap | null | undefined;

/** The C library's mmap, or null where it cannot be loaded (looked up once). */
function libcMmap(): Mmap | null {
  if (mmap !== undefined) return mmap;
  try {
    mmap = koffi.load('libc.so.6').func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)') as Mmap;
  } catch {
    mmap = null; // no glibc here (macOS, musl, Windows): files are read instead, as documented above
  }
  return mmap;
}

/**
 * The whole file as bytes: `mapped` (read-only memory: writing to it would crash the process) when possible, else
 * read into a buffer. `map` is the mmap to use (tests pass their own; null: read).
 */
export async function mapOrReadFile(path: string, map: Mmap | null = libcMmap()): Promise<{ bytes: Uint8Array; mapped: boolean }> {
  if (map !== null) {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      // mmap of 0 bytes fails (EINVAL): an empty file is read.
      const p = size > 0 ? map(null, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fh.fd, 0) : null;
      if (p !== null && koffi.address(p) !== MAP_FAILED) return { bytes: new Uint8Array(koffi.view(p, size)), mapped: true };
    } finally {
      await fh.close(); // the mapping holds the file's pages, not the descriptor
    }
  }
  return { bytes: await readFile(path), mapped: false };
}
