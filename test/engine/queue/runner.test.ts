/**
 * The queue runner in the engine (real redis-server, real BullMQ, real worker processes running the engine's test
 * module): items through the queue are delivered as on the local pool; a crashed attempt is retried; a thrown error
 * fails the item at once and the others go on; a coordinator stopped and started again adds no job twice; a wrong
 * model hash and a path outside the worker's roots fail the item with their codes.
 */
import t from 'tap';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Graph, type ItemEvent } from '../../../engine/index.js';
import { queueConnection, type QueueConnection } from '../../../engine/queue/connection.js';
import { QueueRunner } from '../../../engine/queue/coordinator.js';
import { QUEUE_NAME, QUEUE_PREFIX } from '../../../engine/queue/job-data.js';
import { RootGuard } from '../../../engine/queue/roots.js';
import { QueueWorker, type JobPaths } from '../../../engine/queue/worker.js';
import { redisMissing, startRedis } from '../../helpers/redis.js';
import type { TestItem, TestResult } from '../fixtures/engine-worker.js';

const MODULE = new URL('../fixtures/engine-worker.ts', import.meta.url).href;

interface Setup {
  readonly dir: string;
  readonly checkpointDir: string;
  readonly connection: QueueConnection;
}

async function setup(t: Tap.Test): Promise<Setup> {
  const redis = await startRedis(t);
  const dir = await mkdtemp(join(tmpdir(), 'queue-runner-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const checkpointDir = join(dir, 'checkpoints');
  await mkdir(checkpointDir);
  return { dir, checkpointDir, connection: await queueConnection(redis.url) };
}

/** A QueueWorker in this process (its item processes are real), stopped in teardown. */
async function worker(t: Tap.Test, s: Setup, opts: { roots?: string[]; paths?: (item: TestItem) => JobPaths; processes?: number } = {}): Promise<QueueWorker> {
  const w = new QueueWorker({
    connection: s.connection,
    roots: await RootGuard.open(opts.roots ?? [s.dir]),
    processes: opts.processes ?? 2,
    tileLimit: 64,
    moduleUrl: MODULE,
    exportNames: ['perItem'],
    paths: async (job) => opts.paths?.(job.item as TestItem) ?? { reads: [], models: [] },
    localConfig: (job) => job.config,
    lockMs: 5000,
    stalledMs: 2000,
  });
  t.teardown(() => w.stop(true));
  await w.start();
  return w;
}

interface Ran {
  readonly results: TestResult[];
  readonly events: ItemEvent[];
  readonly error: unknown;
}

/** Runs `items` through a fan-out whose runner is the queue; `signal` stops it. */
async function run(s: Setup, items: TestItem[], opts: { sha256?: Record<string, string>; signal?: AbortSignal; onEvent?: (e: ItemEvent) => void } = {}): Promise<Ran> {
  const results: TestResult[] = [];
  const events: ItemEvent[] = [];
  const g = new Graph({ name: 'q', tmpDir: s.dir, metricsIntervalMs: 0, fanOutRunner: new QueueRunner({ connection: s.connection, sha256: opts.sha256 ?? {}, attempts: 2, backoffMs: 10, sweepMs: 200 }), ...(opts.signal && { signal: opts.signal }) });
  g.on('item', (e) => {
    events.push(e);
    opts.onEvent?.(e);
  });
  g.source('Items', async function* () {
    yield* items;
  })
    .fanOut<TestResult>('Work', { module: MODULE, exportName: 'perItem', config: { dir: s.dir }, key: (i: TestItem) => i.key, checkpointDir: s.checkpointDir, retries: 1 })
    .sink('Collect', async (src) => {
      for await (const r of src) results.push(r as TestResult);
    });
  let error: unknown;
  try {
    await g.run();
  } catch (e) {
    error = e;
  }
  return { results, events, error };
}

const byKey = (rs: TestResult[]): string[] => rs.map((r) => `${r.key}:${r.i}:${[...r.vec].join(',')}`).sort();
const startedLines = async (dir: string): Promise<string[]> => (await readFile(join(dir, 'started'), 'utf8').catch(() => '')).split('\n').filter(Boolean);

const missing = redisMissing();
if (missing) {
  t.plan(0, missing);
} else {
  t.test('items through the queue: delivered once, committed once; a crash retried; a thrown error fails its item alone', async (t) => {
    const s = await setup(t);
    await worker(t, s);
    const fine: TestItem[] = [{ key: 'a', n: 5 }, { key: 'b', n: 3, bytes: 100 }, { key: 'c', n: 0 }];
    const items: TestItem[] = [...fine, { key: 'crash', n: 4, failAt: 2, fail: 'kill', failOnce: true }, { key: 'throws', n: 4, failAt: 1, fail: 'throw' }];
    const r = await run(s, items);
    t.equal(r.error, undefined, 'the run goes on');
    const expected = ['a:0:0,0', 'a:1:1,0.5', 'a:2:2,1', 'a:3:3,1.5', 'a:4:4,2', 'b:0:0,0', 'b:1:1,0.5', 'b:2:2,1', 'crash:0:0,0', 'crash:1:1,0.5', 'crash:2:2,1', 'crash:3:3,1.5'];
    t.same(byKey(r.results), expected, 'every result once; the crashed attempt delivered nothing of its own');
    t.equal((await readdir(s.checkpointDir)).filter((f) => f.endsWith('.done')).length, 4, 'four committed checkpoints');
    t.same((await readdir(s.checkpointDir)).filter((f) => f.includes('.partial-')), [], 'no partial file left');
    const done = r.events.filter((e) => e.type === 'done');
    t.equal(done.length, 4);
    for (const e of done) t.ok(e.type === 'done' && typeof e.host === 'string' && e.stalls === 0, `${e.key}: host and stalls reported`);
    const crash = done.find((e) => e.key === 'crash');
    t.equal(crash?.type === 'done' ? crash.attempt : undefined, 2, 'the crashed item succeeded on its second attempt');
    const failed = r.events.find((e) => e.type === 'failed' && e.key === 'throws');
    t.ok(failed, 'the throwing item failed');
    if (failed?.type === 'failed') {
      t.equal(failed.attempt, 1, 'a thrown error is not retried');
      t.equal((failed.error.cause as { code?: string }).code, 'E_TEST', 'the item error keeps its code');
      t.match(failed.error.message, /item failed after 1 attempt\(s\): .*item throws failed at 1/);
    }
    t.equal((await startedLines(s.dir)).filter((l) => l.startsWith('throws ')).length, 1, 'the throwing item ran once');
    // Run the good ones again: every item replayed from its checkpoint, nothing sent to a worker.
    const before = (await startedLines(s.dir)).length;
    const again = await run(s, [...fine, items[3]!]);
    t.same(byKey(again.results), expected);
    t.equal(again.events.filter((e) => e.type === 'replayed').length, 4);
    t.equal((await startedLines(s.dir)).length, before, 'no item ran again');
  });

  t.test('a coordinator stopped while its jobs wait, then started again: no job added twice, each item run once', async (t) => {
    const s = await setup(t);
    const items: TestItem[] = [{ key: 'x', n: 2 }, { key: 'y', n: 2 }];
    const queue = new Queue(QUEUE_NAME, { connection: s.connection.options, prefix: QUEUE_PREFIX });
    t.teardown(() => queue.close());
    const controller = new AbortController();
    // No worker yet: the jobs wait; once both are in Redis the coordinator is stopped.
    const first = run(s, items, { signal: controller.signal });
    for (;;) {
      const c = await queue.getJobCounts('waiting');
      if ((c.waiting ?? 0) >= 2) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    controller.abort(new Error('stopped'));
    t.ok((await first).error, 'the first coordinator stopped');
    const second = run(s, items);
    t.equal((await queue.getJobCounts('waiting')).waiting, 2, 'the second coordinator added no job');
    await worker(t, s);
    const r = await second;
    t.equal(r.error, undefined);
    t.same(byKey(r.results), ['x:0:0,0', 'x:1:1,0.5', 'y:0:0,0', 'y:1:1,0.5']);
    t.same((await startedLines(s.dir)).map((l) => l.split(' ')[0]).sort(), ['x', 'y'], 'each item ran once');
  });

  t.test('a model whose sha256 is not the one in the job fails the item (E_QUEUE_MODEL_HASH)', async (t) => {
    const s = await setup(t);
    const model = join(s.dir, 'model.onnx');
    await writeFile(model, 'the bytes on this machine');
    await worker(t, s, { paths: () => ({ reads: [], models: [model] }) });
    const r = await run(s, [{ key: 'm', n: 1 }], { sha256: { [model]: 'f'.repeat(64) } });
    const failed = r.events.find((e) => e.type === 'failed');
    t.equal(failed?.type === 'failed' ? (failed.error.cause as { code?: string }).code : undefined, 'E_QUEUE_MODEL_HASH');
    t.match(failed?.type === 'failed' ? failed.error.message : '', /model .*model\.onnx has sha256 .* the job expects ffff/);
    t.same(await startedLines(s.dir), [], 'the item never ran');
  });

  t.test('a path outside the worker --root folders fails the item (E_QUEUE_PATH), a symlink out of the root too', async (t) => {
    const s = await setup(t);
    const outside = await mkdtemp(join(tmpdir(), 'queue-outside-'));
    t.teardown(() => rm(outside, { recursive: true, force: true }));
    await symlink(outside, join(s.dir, 'link-out'));
    await worker(t, s, { paths: (item) => ({ reads: [item.key === 'direct' ? join(outside, 'slide.tiff') : join(s.dir, 'link-out', 'slide.tiff')], models: [] }) });
    const r = await run(s, [{ key: 'direct', n: 1 }, { key: 'via-link', n: 1 }]);
    for (const key of ['direct', 'via-link']) {
      const failed = r.events.find((e) => e.type === 'failed' && e.key === key);
      t.equal(failed?.type === 'failed' ? (failed.error.cause as { code?: string }).code : undefined, 'E_QUEUE_PATH', `${key}: refused`);
      t.match(failed?.type === 'failed' ? failed.error.message : '', /outside this worker's --root/);
    }
    t.same(await startedLines(s.dir), [], 'no item ran');
  });

  t.test('a checkpoint folder outside the roots is refused too', async (t) => {
    const s = await setup(t);
    const other = await mkdtemp(join(tmpdir(), 'queue-root-'));
    t.teardown(() => rm(other, { recursive: true, force: true }));
    await worker(t, s, { roots: [other] });
    const r = await run(s, [{ key: 'k', n: 1 }]);
    const failed = r.events.find((e) => e.type === 'failed');
    t.equal(failed?.type === 'failed' ? (failed.error.cause as { code?: string }).code : undefined, 'E_QUEUE_PATH');
    t.match(failed?.type === 'failed' ? failed.error.message : '', /checkpoint folder/);
  });
}
