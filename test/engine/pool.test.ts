import t from 'tap';
import { mkdtempSync, readFileSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph, prestartWorkers, stopPrestarted, type ItemEvent, type WorkerEvent } from '../../engine/index.js';
import type { TestItem, TestResult } from './fixtures/engine-worker.js';
import { childPids } from '../helpers/proc.js';

const workerModule = new URL('./fixtures/engine-worker.ts', import.meta.url).href;
// Workers need only tap's TypeScript loader (its coverage/mock loaders add seconds per spawn).
const execArgv = process.execArgv.filter((a) => a.includes('typescript'));

function setup(_t: unknown): string {
  return mkdtempSync(join(tmpdir(), "pool-"));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false; // ESRCH: gone
  }
}

async function waitFor(cond: () => boolean, what: string, limitMs = 10000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > limitMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function build(dir: string, items: TestItem[], fan: Record<string, unknown> = {}, sinkFn?: (s: AsyncIterable<TestResult>) => Promise<void>) {
  const g = new Graph({ name: 'pool', highWaterMark: 2, tileBudget: 16, tmpDir: dir, metricsIntervalMs: 0 });
  const events: ItemEvent[] = [];
  const workers: WorkerEvent[] = [];
  g.on('item', (e) => events.push(e));
  g.on('worker', (e) => workers.push(e));
  const got: TestResult[] = [];
  g.source('Items', async function* () { yield* items; })
    .fanOut<TestResult>('Work', { module: workerModule, exportName: 'perItem', config: { dir }, key: (i: TestItem) => i.key, workers: 2, window: 4, execArgv, ...fan })
    .sink('Collect', sinkFn ?? (async (s) => { for await (const r of s) got.push(r); }));
  return { g, events, workers, got };
}

const count = (got: TestResult[], key: string) => got.filter((r) => r.key === key).length;

/** This process's children that are alive now (from /proc), in pid order. */
function readChildren(): number[] {
  return childPids().filter(alive).sort((a, b) => a - b);
}

t.test('items run in worker processes; typed arrays cross intact; tile usage is reported', async (t) => {
  const dir = setup(t);
  const items: TestItem[] = [{ key: 'a', n: 30, bytes: 1000 }, { key: 'b', n: 5 }, { key: 'c', n: 0 }, { key: 'd', n: 7 }];
  const { g, events, workers, got } = build(dir, items);
  const res = await g.run();
  t.equal(count(got, 'a'), 30);
  t.equal(count(got, 'b'), 5);
  t.equal(count(got, 'd'), 7);
  const a5 = got.find((r) => r.key === 'a' && r.i === 5) as TestResult;
  t.ok(a5.payload instanceof Uint8Array && a5.payload.length === 1000 && a5.payload[999] === 5, 'Uint8Array payload');
  t.ok(a5.vec instanceof Float32Array && a5.vec[1] === 2.5, 'Float32Array');
  t.ok(a5.pid !== process.pid, 'produced in another process');
  t.equal(res.items.done, 4);
  t.same(res.items.failed, []);
  t.equal(events.filter((e) => e.type === 'done').length, 4);
  const doneA = events.find((e) => e.type === 'done' && e.key === 'a');
  t.match(doneA, { count: 30, attempt: 1 });
  const progressA = events.filter((e): e is Extract<ItemEvent, { type: 'progress' }> => e.type === 'progress' && e.key === 'a');
  t.same(progressA.map((e) => e.count), Array.from({ length: 30 }, (_, i) => i + 1), 'a progress event per result as it arrives');
  t.match(progressA[4]?.value, { key: 'a', i: 4 }, 'carrying the result');
  t.ok(workers.filter((w) => w.type === 'spawn').length <= 2, 'at most `workers` processes');
  for (const w of workers) t.notOk(alive(w.pid), `worker ${w.pid} is gone after the run`);
  t.ok(res.tiles.max >= 1, `global tiles max ${res.tiles.max} includes the workers' reports`);
});

for (const how of ['exit', 'kill'] as const) {
  t.test(`a worker that dies mid-item (${how}) is retried on a fresh process, partial results discarded`, async (t) => {
    const dir = setup(t);
    const items: TestItem[] = [{ key: 'x', n: 40, failAt: 25, fail: how, failOnce: true }, { key: 'y', n: 10 }];
    const { g, events, got } = build(dir, items, { stageMemory: 8 }); // past 8 results staging spills to a file
    const res = await g.run();
    t.equal(count(got, 'x'), 40, 'x delivered exactly once despite 25 results before the crash');
    t.same(got.filter((r) => r.key === 'x').map((r) => r.i), Array.from({ length: 40 }, (_, i) => i), 'in order, no duplicates');
    t.equal(count(got, 'y'), 10);
    const retry = events.find((e) => e.type === 'retry');
    t.match(retry, { key: 'x', attempt: 1 });
    const starts = events.filter((e) => e.type === 'started' && e.key === 'x') as Extract<ItemEvent, { type: 'started' }>[];
    t.equal(starts.length, 2);
    t.not(starts[0]?.pid, starts[1]?.pid, 'retried on a fresh process');
    t.equal(res.items.done, 2);
  });
}

t.test('after the retries the item is reported failed and the run goes on', async (t) => {
  const dir = setup(t);
  const items: TestItem[] = [{ key: 'bad', n: 10, failAt: 3, fail: 'exit' }, { key: 'thrower', n: 5, failAt: 2, fail: 'throw' }, { key: 'ok', n: 6 }];
  const { g, events, got } = build(dir, items, { retries: 2 });
  const res = await g.run();
  t.equal(count(got, 'bad'), 0, 'no partial results of the failed item');
  t.equal(count(got, 'thrower'), 0);
  t.equal(count(got, 'ok'), 6);
  t.equal(res.items.failed.length, 2);
  const bad = res.items.failed.find((f) => f.key === 'bad');
  t.match(bad?.error, { code: 'E_WORKER_CRASH', stage: 'Work', key: 'bad' });
  const thrower = res.items.failed.find((f) => f.key === 'thrower');
  t.match(thrower?.error, { code: 'E_WORKER_ITEM', key: 'thrower', message: /failed at 2/ });
  t.equal(events.filter((e) => e.type === 'started' && e.key === 'bad').length, 3, '1 + 2 retries');
  t.equal(events.filter((e) => e.type === 'started' && e.key === 'thrower').length, 1, 'a thrown error is not retried by default');
});

t.test('failFast stops the run with the item error', async (t) => {
  const dir = setup(t);
  const items: TestItem[] = [{ key: 'bad', n: 10, failAt: 1, fail: 'throw' }, ...Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, n: 3 }))];
  const { g, workers } = build(dir, items, { failFast: true, workers: 1 });
  await t.rejects(g.run(), { name: 'EngineError', code: 'E_WORKER_ITEM', stage: 'Work', key: 'bad' });
  for (const w of workers) t.notOk(alive(w.pid), 'workers gone');
});

t.test('refuse: an item the parent knows will fail fails at once, without a worker or an attempt; failFast stops on it', async (t) => {
  const dir = setup(t);
  const items: TestItem[] = [{ key: 'ok1', n: 2 }, { key: 'known-bad', n: 5 }, { key: 'ok2', n: 3 }];
  const refuse = (i: TestItem): Error | undefined => (i.key.startsWith('known') ? Object.assign(new Error(`${i.key}: no file`), { code: 'E_TEST_KNOWN' }) : undefined);
  const { g, events, got } = build(dir, items, { refuse });
  const res = await g.run();
  t.same([count(got, 'ok1'), count(got, 'known-bad'), count(got, 'ok2')], [2, 0, 3], 'the others run; the refused one gives nothing');
  t.equal(res.items.failed.length, 1);
  const failed = res.items.failed[0]!;
  t.match(failed.error, { code: 'E_WORKER_ITEM', stage: 'Work', key: 'known-bad', message: /item failed after 0 attempt\(s\): known-bad: no file/ });
  t.match((failed.error as Error).cause, { code: 'E_TEST_KNOWN' }, 'its cause is the item\'s own error');
  t.same(events.filter((e) => e.key === 'known-bad').map((e) => [e.type, 'attempt' in e ? e.attempt : undefined]), [['failed', 0]], 'one failed event, attempt 0, never started');
  t.notMatch(readFileSync(join(dir, 'started'), 'utf8'), /known-bad/, 'no worker saw it');

  const dir2 = setup(t);
  const stop = build(dir2, [{ key: 'known-first', n: 1 }, ...Array.from({ length: 5 }, (_, i) => ({ key: `k${i}`, n: 2 }))], { refuse, failFast: true, workers: 1 });
  await t.rejects(stop.g.run(), { name: 'EngineError', code: 'E_WORKER_ITEM', key: 'known-first' });
});

t.test('stream delivery: a slow consumer bounds what the worker produced (credit window)', async (t) => {
  const dir = setup(t);
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  let taken = 0;
  const { g } = build(dir, [{ key: 'big', n: 500 }], { delivery: 'stream', window: 4, workers: 1 }, async (s) => {
    for await (const _ of s) {
      taken++;
      if (taken === 1) await gate;
    }
  });
  const run = g.run();
  const produced = () => (existsSync(join(dir, 'produced-big')) ? readFileSync(join(dir, 'produced-big'), 'utf8').length : 0);
  await waitFor(() => produced() >= 4, 'the worker to fill its window');
  // Give the worker ample time to overrun if backpressure were broken (a bound check, not a timing measurement).
  await new Promise((r) => setTimeout(r, 500));
  const p = produced();
  // Parent: sink 1 + edge 2 + Work's pushing 1 + fan-out buffer 2 + 1 awaiting its push + window 4 = 11;
  // child sub-graph: Emit pushing 1 + edge 2 + Vec 1 + edge 2 + output sink 1 + output buffer 2 + 1 awaiting credit = 10.
  t.ok(p <= 21, `worker produced ${p} of 500 while the consumer held 1`);
  release();
  await run;
  t.equal(taken, 500);
});

t.test('checkpoint: a second run replays committed items without dispatching; partial files ignored', async (t) => {
  const dir = setup(t);
  const ckpt = mkdtempSync(join(tmpdir(), 'ckpt-'));
  const items: TestItem[] = [{ key: 'a', n: 20, bytes: 64 }, { key: 'b', n: 3 }, { key: 'c', n: 4, failAt: 1, fail: 'throw' }];
  const r1 = build(dir, items, { checkpointDir: ckpt, stageMemory: 2 });
  await r1.g.run();
  t.equal(count(r1.got, 'a'), 20);
  t.equal(readdirSync(ckpt).filter((f) => f.endsWith('.done')).length, 2, 'a and b committed, c not');
  writeFileSync(join(ckpt, 'deadbeef.partial-1-1'), 'garbage from a killed run');
  const r2 = build(dir, items, { checkpointDir: ckpt });
  const res2 = await r2.g.run();
  t.equal(count(r2.got, 'a'), 20);
  t.same(r2.got.filter((r) => r.key === 'a').map((r) => r.payload?.[0]), Array.from({ length: 20 }, (_, i) => i % 251), 'replayed payloads intact');
  t.equal(count(r2.got, 'b'), 3);
  t.equal(res2.items.replayed, 2);
  t.same(r2.events.filter((e) => e.type === 'started').map((e) => e.key), ['c'], 'only the uncommitted item is dispatched');
  t.notOk(existsSync(join(ckpt, 'deadbeef.partial-1-1')), 'stale partial file removed');
  // A changed input (here: a different checkpoint key for b) is recomputed, not replayed.
  const r3 = build(dir, items, { checkpointDir: ckpt, checkpointKey: (i: TestItem) => (i.key === 'b' ? 'b-changed' : i.key) });
  const res3 = await r3.g.run();
  t.same(r3.events.filter((e) => e.type === 'started').map((e) => e.key).sort(), ['b', 'c'], 'b recomputed under its new checkpoint key');
  t.equal(res3.items.replayed, 1, 'a still replayed');
  t.equal(count(r3.got, 'b'), 3);
});

t.test('a result held back for coalescing still arrives when no other frame follows it (timer flush)', async (t) => {
  const dir = setup(t);
  const ac = new AbortController();
  // The item yields one result and then hangs: nothing else would push that result out of the worker.
  const g = new Graph({ name: 'pool', tmpDir: dir, signal: ac.signal, metricsIntervalMs: 0 });
  const got: TestResult[] = [];
  g.source('Items', async function* () { yield { key: 'h', n: 5, failAt: 1, fail: 'hang' } as TestItem; })
    .fanOut<TestResult>('Work', { module: workerModule, exportName: 'perItem', config: { dir }, key: (i: TestItem) => i.key, workers: 1, delivery: 'stream', execArgv })
    .sink('S', async (s) => {
      for await (const r of s) {
        got.push(r);
        ac.abort(new Error('seen'));
      }
    });
  await t.rejects(g.run(), { code: 'E_ABORTED' });
  t.same(got.map((r) => [r.key, r.i]), [['h', 0]], 'the one result reached the parent');
});

t.test('abort kills every worker', async (t) => {
  const dir = setup(t);
  const ac = new AbortController();
  const items: TestItem[] = [{ key: 'h1', n: 5, failAt: 1, fail: 'hang' }, { key: 'h2', n: 5, failAt: 1, fail: 'hang' }];
  const g = new Graph({ name: 'pool', tmpDir: dir, signal: ac.signal, metricsIntervalMs: 0 });
  const pids: number[] = [];
  g.on('worker', (e) => { if (e.type === 'spawn') pids.push(e.pid); });
  g.on('item', (e) => { if (e.type === 'started' && pids.length === 2) setTimeout(() => ac.abort(new Error('user stop')), 100); });
  g.source('Items', async function* () { yield* items; })
    .fanOut('Work', { module: workerModule, exportName: 'perItem', config: { dir }, key: (i: TestItem) => i.key, workers: 2, delivery: 'stream', execArgv })
    .sink('S', async (s) => { for await (const _ of s); });
  await t.rejects(g.run(), { code: 'E_ABORTED' });
  t.equal(pids.length, 2);
  for (const pid of pids) t.notOk(alive(pid), `worker ${pid} is gone`);
});

t.test('prestarted processes are the ones the fan-out uses; the ones it does not take are killed by stopPrestarted', async (t) => {
  t.teardown(stopPrestarted);
  const dir = setup(t);
  prestartWorkers(3, workerModule, execArgv);
  const prestartedPids = readChildren();
  t.equal(prestartedPids.length, 3, 'three processes forked at once');
  const { g, workers, got } = build(dir, [{ key: 'a', n: 3 }, { key: 'b', n: 2 }]);
  await g.run();
  t.equal(got.length, 5);
  const used = workers.filter((w) => w.type === 'spawn').map((w) => w.pid);
  t.equal(used.length, 2, 'two workers');
  t.ok(used.every((pid) => prestartedPids.includes(pid)), 'both taken from the prestarted ones, none forked');
  const spare = prestartedPids.filter((pid) => !used.includes(pid));
  t.equal(spare.length, 1);
  t.ok(alive(spare[0]!), 'the spare one waits');
  stopPrestarted();
  await waitFor(() => !alive(spare[0]!), 'the spare process to die');
  t.pass('stopPrestarted killed it');
});

t.test('a prestarted process forked with other node flags is not taken', async (t) => {
  t.teardown(stopPrestarted);
  const dir = setup(t);
  prestartWorkers(1, workerModule, [...execArgv, '--no-warnings']);
  const [other] = readChildren();
  const { g, workers, got } = build(dir, [{ key: 'a', n: 2 }], { workers: 1 });
  await g.run();
  t.equal(got.length, 2, 'the item ran');
  t.notOk(workers.some((w) => w.type === 'spawn' && w.pid === other), 'on a process forked with the stage\'s own flags');
  t.ok(alive(other!), 'the other one still waits for stopPrestarted');
});

t.test('a prestarted process that died before it was taken is skipped, and a fresh one forked', async (t) => {
  t.teardown(stopPrestarted);
  const dir = setup(t);
  prestartWorkers(1, workerModule, execArgv);
  const [dead] = readChildren();
  process.kill(dead!, 'SIGKILL');
  await waitFor(() => !alive(dead!), 'the prestarted process to die');
  await new Promise((r) => setImmediate(r)); // its exit is seen by the parent
  const { g, workers, got } = build(dir, [{ key: 'a', n: 2 }], { workers: 1 });
  await g.run();
  t.equal(got.length, 2, 'the item ran');
  const spawned = workers.filter((w) => w.type === 'spawn').map((w) => w.pid);
  t.notOk(spawned.includes(dead!), 'not on the dead process');
});

t.test('staged delivery: a worker starts its next item while the last one is still being delivered downstream', async (t) => {
  const dir = setup(t);
  let bStarted: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (bStarted = resolve));
  let guard: NodeJS.Timeout | undefined;
  // The sink holds item a's first result until item b has started on the (only) worker. Were delivery part of the
  // worker's turn, b could not start: the guard fails the test instead of hanging.
  const { g, events, got } = build(dir, [{ key: 'a', n: 3 }, { key: 'b', n: 2 }], { workers: 1 }, async (source) => {
    for await (const r of source) {
      if (r.key === 'a' && r.i === 0) {
        await Promise.race([started, new Promise((_, reject) => (guard = setTimeout(() => reject(new Error('item b never started while a was delivered')), 20000)))]);
        clearTimeout(guard);
      }
      got.push(r);
    }
  });
  g.on('item', (e) => e.type === 'started' && e.key === 'b' && bStarted());
  await g.run();
  t.same(got.map((r) => `${r.key}${r.i}`), ['a0', 'a1', 'a2', 'b0', 'b1'], 'delivered whole, in item order');
  const order = events.filter((e) => e.type === 'started' || e.type === 'done').map((e) => `${e.type} ${e.key}`);
  t.ok(order.indexOf('started b') < order.indexOf('done a'), `b started before a was done: ${order.join(', ')}`);
});

t.test('staged delivery: a downstream failure while the worker runs its next item stops the run with that error', async (t) => {
  const dir = setup(t);
  const { g, workers } = build(dir, [{ key: 'a', n: 2 }, { key: 'h', n: 5, failAt: 1, fail: 'hang' }], { workers: 1 }, async (source) => {
    for await (const r of source) if (r.key === 'a') throw Object.assign(new Error('sink failed'), { code: 'E_SINK' });
  });
  await t.rejects(g.run(), { message: /sink failed/ });
  for (const w of workers) t.notOk(alive(w.pid), `worker ${w.pid} is gone (it was hanging in item h)`);
});

t.test('a module without the export fails the run with E_STAGE', async (t) => {
  const dir = setup(t);
  const g = new Graph({ name: 'pool', tmpDir: dir, metricsIntervalMs: 0 });
  g.source('Items', async function* () { yield { key: 'a', n: 1 }; })
    .fanOut('Work', { module: workerModule, exportName: 'nope', key: (i: TestItem) => i.key, workers: 1, execArgv })
    .sink('S', async (s) => { for await (const _ of s); });
  await t.rejects(g.run(), { code: 'E_STAGE', stage: 'Work', message: /no function export nope/ });
});

t.test('checkpointDir with stream delivery is E_GRAPH', async (t) => {
  const dir = setup(t);
  const g = new Graph({ name: 'pool', tmpDir: dir, metricsIntervalMs: 0 });
  g.source('Items', async function* () { yield { key: 'a', n: 1 }; })
    .fanOut('Work', { module: workerModule, exportName: 'perItem', key: (i: TestItem) => i.key, delivery: 'stream', checkpointDir: dir, execArgv })
    .sink('S', async (s) => { for await (const _ of s); });
  await t.rejects(g.run(), { code: 'E_GRAPH', stage: 'Work' });
});

t.test('a worker gives back the tiles an item still holds when it ends, and reports its sub-graph metrics', async (t) => {
  const dir = setup(t);
  // One worker with 16 tiles: the first item keeps 12 tiles forever, the second needs 12 more.
  const items: TestItem[] = [{ key: 'leaky', n: 12, leak: true }, { key: 'next', n: 12 }];
  const { g, got } = build(dir, items, { workers: 1, delivery: 'stream' });
  const result = await g.run();
  t.equal(got.filter((r) => r.key === 'next').length, 12, 'the second item got the whole budget back');
  const emit = result.metrics.find((m) => m.name === 'Work/Emit');
  t.ok(emit, 'the sub-graph stage is listed as Work/Emit');
  t.equal(emit?.elementsOut, 24, 'its counts add up over both items');
});
