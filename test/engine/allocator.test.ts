import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph } from '../../engine/index.js';
import { WORKER_MALLOC_TUNABLES, workerEnv } from '../../engine/allocator.js';

const ours = Object.entries(WORKER_MALLOC_TUNABLES).map(([k, v]) => `${k}=${v}`);

t.test('the allocator settings are added to an environment without GLIBC_TUNABLES; the rest is kept', async (t) => {
  const env = workerEnv({ PATH: '/bin', HOME: '/h' });
  t.equal(env.PATH, '/bin');
  t.equal(env.HOME, '/h');
  t.same(env.GLIBC_TUNABLES?.split(':'), ours);
  t.ok(ours.includes('glibc.malloc.mmap_threshold=33554432') && ours.includes('glibc.malloc.hugetlb=1'), 'the documented values');
});

t.test("a tunable the user set wins; the user's other tunables are kept", async (t) => {
  const env = workerEnv({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0:glibc.pthread.rseq=0' });
  const got = env.GLIBC_TUNABLES!.split(':');
  t.same(got.slice(0, 2), ['glibc.malloc.hugetlb=0', 'glibc.pthread.rseq=0'], "the user's first, unchanged");
  t.equal(got.filter((x) => x.startsWith('glibc.malloc.hugetlb=')).length, 1, 'hugetlb once: the user\'s value');
  t.same(got.slice(2), ours.filter((x) => !x.startsWith('glibc.malloc.hugetlb=')), 'ours for the rest');
});

t.test('a worker process starts with them', async (t) => {
  const g = new Graph({ name: 'env', highWaterMark: 2, tileBudget: 4, tmpDir: mkdtempSync(join(tmpdir(), 'env-')), metricsIntervalMs: 0 });
  const got: string[] = [];
  g.source('One', async function* () { yield 'a'; })
    .fanOut<string>('Env', { module: new URL('./fixtures/engine-worker.ts', import.meta.url).href, exportName: 'envOf', key: (k: string) => k, workers: 1, execArgv: process.execArgv.filter((a) => a.includes('typescript')) })
    .sink('Collect', async (s) => { for await (const v of s) got.push(v); });
  await g.run();
  t.equal(got.length, 1);
  t.same(got[0], workerEnv().GLIBC_TUNABLES, "this process's environment plus the settings");
  for (const x of ours) t.ok(got[0]!.split(':').some((y) => y.split('=')[0] === x.split('=')[0]), `${x.split('=')[0]} is set`);
});
