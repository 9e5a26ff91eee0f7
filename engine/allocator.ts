/**
 * glibc allocator settings for the worker processes, which cut their page faults. On this kind of VM a page fault
 * costs ~13 µs of CPU (bench/RESULTS.md, decision 24); with glibc's defaults the bench job's workers took ~260,000
 * faults (~70 per tile) and ~70,000 while they started, and with these ~17,000 and ~14,500:
 *  - arena_max 1: every thread allocates from one heap, so a buffer freed by one thread (the decoder's libvips
 *    threads, onnxruntime, the main thread) is reused by the next instead of each thread's arena growing its own;
 *  - mmap_threshold 32 MiB: tile-sized buffers (~600 KB) come from that heap and are reused, rather than mapped
 *    afresh for every tile and faulted in page by page;
 *  - trim_threshold 256 MiB: memory freed at the top of the heap stays for the next tiles rather than being handed
 *    back and faulted in again;
 *  - hugetlb 1: large allocations, such as onnxruntime's copies of the model's weights as it builds its session, use
 *    transparent huge pages (one fault per 2 MiB instead of 512).
 * The tile budget still bounds what a process holds; these settings only decide how the allocator reuses it (peak
 * RSS of the bench job: 750-760 MB before, 700-790 MB with them).
 *
 * Workers get them as GLIBC_TUNABLES in their environment (a tunable already in the user's wins); other C libraries
 * ignore the variable. The parent is left alone: its faults are mostly V8's own memory, which malloc settings do not
 * reach (the mmap and trim thresholds set on it with mallopt(3) did not change its ~49,000 faults per bench job).
 */
const MIB = 1 << 20;

export const WORKER_MALLOC_TUNABLES: Readonly<Record<string, string>> = {
  'glibc.malloc.arena_max': '1',
  'glibc.malloc.hugetlb': '1',
  'glibc.malloc.mmap_threshold': String(32 * MIB),
  'glibc.malloc.trim_threshold': String(256 * MIB),
};

/** `env` with WORKER_MALLOC_TUNABLES added to its GLIBC_TUNABLES (keeping every tunable it already sets). */
export function workerEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const own = (env.GLIBC_TUNABLES ?? '').split(':').filter((t) => t !== '');
  const named = new Set(own.map((t) => t.split('=')[0]));
  const added = Object.entries(WORKER_MALLOC_TUNABLES)
    .filter(([name]) => !named.has(name))
    .map(([name, value]) => `${name}=${value}`);
  return { ...env, GLIBC_TUNABLES: [...own, ...added].join(':') };
}
