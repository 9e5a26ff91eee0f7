/**
 * The environment worker processes start with: the parent's, plus glibc allocator settings (GLIBC_TUNABLES) that
 * cut their page faults. On this kind of VM a page fault costs ~13 µs of CPU (bench/RESULTS.md, decision 24), and
 * with glibc's defaults a worker faulted in ~60 fresh pages per tile and ~45,000 while it started:
 *  - mmap_threshold 32 MiB: tile-sized buffers (~600 KB) come from the heap and are reused, rather than mapped
 *    afresh for every tile and faulted in page by page;
 *  - trim_threshold 256 MiB: memory freed at the top of the heap stays for the next tiles rather than being handed
 *    back and faulted in again;
 *  - hugetlb 1: large allocations (onnxruntime's copies of the model's weights as it builds its session) use
 *    transparent huge pages: one fault per 2 MiB instead of 512.
 * The tile budget still bounds what a worker holds; these settings only decide how the allocator reuses it.
 * A tunable already in the user's GLIBC_TUNABLES wins. Other C libraries (musl) ignore the variable.
 */
export const WORKER_MALLOC_TUNABLES: Readonly<Record<string, string>> = {
  'glibc.malloc.hugetlb': '1',
  'glibc.malloc.mmap_threshold': String(32 << 20),
  'glibc.malloc.trim_threshold': String(256 << 20),
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
