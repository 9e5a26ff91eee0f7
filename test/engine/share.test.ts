import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph, type ItemEvent, type WorkerEvent } from '../../engine/index.js';
import type { SharedItem, SharedResult } from './fixtures/engine-worker.js';

// Shared items (fan-out `share`): once the input has run dry, an idle worker joins a running item and both claim
// its parts from the parent's counter. The fixture's items yield one result per claimed part.
const workerModule = new URL('./fixtures/engine-worker.ts', import.meta.url).href;
const execArgv = process.execArgv.filter((a) => a.includes('typescript'));

function build(items: SharedItem[], fan: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'share-'));
  const g = new Graph({ name: 'share', highWaterMark: 2, tileBudget: 16, tmpDir: dir, metricsIntervalMs: 0 });
  const events: ItemEvent[] = [];
  const workers: WorkerEvent[] = [];
  g.on('item', (e) => events.push(e));
  g.on('worker', (e) => workers.push(e));
  const got: SharedResult[] = [];
  g.source('Items', async function* () {
    yield* items;
  })
    .fanOut<SharedResult>('Work', { module: workerModule, exportName: 'sharedItem', config: { dir }, key: (i: SharedItem) => i.key, workers: 2, window: 4, execArgv, share: true, ...fan })
    .sink('Collect', async (s) => {
      for await (const r of s) got.push(r);
    });
  return { g, events, workers, got, dir };
}

const parts = (got: SharedResult[], key: string): number[] => got.filter((r) => r.key === key).map((r) => r.part).sort((a, b) => a - b);
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

t.test('an idle worker joins the running item: every part exactly once, from both processes', async (t) => {
  // b is short: its worker then finds the input dry and joins a, whose first worker waits for it after one part.
  const { g, events, got } = build([{ key: 'a', parts: 40, awaitJoiner: true }, { key: 'b', parts: 3 }]);
  const res = await g.run();
  t.same(parts(got, 'a'), range(40), 'a: parts 0..39, none twice');
  t.same(parts(got, 'b'), range(3));
  const a = got.filter((r) => r.key === 'a');
  t.same([...new Set(a.map((r) => r.participant))].sort(), [0, 1], 'a was run by its worker and one joiner');
  t.equal(new Set(a.map((r) => r.pid)).size, 2, 'in two processes');
  t.ok(a.filter((r) => r.participant === 1).length > 0, 'the joiner did some of the parts');
  const joined = events.filter((e) => e.type === 'joined');
  t.equal(joined.length, 1);
  t.match(joined[0], { key: 'a', attempt: 1 });
  t.match(events.find((e) => e.type === 'done' && e.key === 'a'), { count: 40 }, 'one done event, counting both participants');
  t.equal(events.filter((e) => e.type === 'progress' && e.key === 'a').length, 40, 'progress events from both participants');
  t.equal(res.items.done, 2);
});

t.test('without share, items do not see ctx.share and run on one worker each', async (t) => {
  const { g, events, got } = build([{ key: 'a', parts: 12 }, { key: 'b', parts: 2 }], { share: false });
  await g.run();
  t.same(parts(got, 'a'), range(12));
  t.same([...new Set(got.map((r) => r.participant))], [-1], 'no ctx.share');
  t.equal(new Set(got.filter((r) => r.key === 'a').map((r) => r.pid)).size, 1);
  t.equal(events.filter((e) => e.type === 'joined').length, 0);
});

t.test('no worker joins an item with fewer than shareMinParts parts left', async (t) => {
  // b finishes only after a has claimed a part, so a's total (4 < 8) is known when b's worker looks for work.
  const { g, events, got, dir } = build([{ key: 'a', parts: 4 }, { key: 'b', parts: 1, holdUntil: 'claimed-a' }]);
  await g.run();
  t.same(parts(got, 'a'), range(4));
  t.equal(events.filter((e) => e.type === 'joined' && e.key === 'a').length, 0, 'nobody joined a (its first worker may join b)');
  t.same(readFileSync(join(dir, 'participants-a'), 'utf8').trim().split('\n').map((l) => l.split(' ')[0]), ['0'], 'a ran once, as participant 0');
});

t.test('a worker with no process yet starts one only for an item known to have parts to share', async (t) => {
  // One small item on 2 workers: the second slot waits until a is sized (4 parts < 8) and never forks.
  const small = build([{ key: 'a', parts: 4 }]);
  await small.g.run();
  t.same(parts(small.got, 'a'), range(4));
  t.equal(small.workers.filter((e) => e.type === 'spawn').length, 1, 'one process for a small item alone');
  // One big item alone: the second slot forks once a is sized with 40 parts, and joins.
  const big = build([{ key: 'a', parts: 40, awaitJoiner: true }]);
  await big.g.run();
  t.same(parts(big.got, 'a'), range(40));
  t.equal(big.workers.filter((e) => e.type === 'spawn').length, 2);
  t.equal(big.events.filter((e) => e.type === 'joined').length, 1);
});

t.test('a joiner that throws fails the attempt: the item is reported failed and none of its results are delivered', async (t) => {
  const { g, events, got } = build([{ key: 'a', parts: 40, awaitJoiner: true, failParticipant: 1, fail: 'throw' }, { key: 'b', parts: 3 }]);
  const res = await g.run();
  t.same(parts(got, 'a'), [], 'no partial results of a');
  t.same(parts(got, 'b'), range(3), 'b unaffected');
  t.equal(res.items.failed.length, 1);
  t.match(res.items.failed[0]?.error, { code: 'E_WORKER_ITEM', stage: 'Work', key: 'a', message: /participant 1 of a failed/ });
  t.equal(events.filter((e) => e.type === 'started' && e.key === 'a').length, 1, 'a thrown error is not retried by default');
});

t.test('a joiner that dies fails the attempt; the retry delivers every part exactly once', async (t) => {
  const { g, events, got } = build([{ key: 'a', parts: 40, awaitJoiner: true, failParticipant: 1, fail: 'kill', failOnce: true }, { key: 'b', parts: 3 }], { stageMemory: 4 });
  const res = await g.run();
  t.same(parts(got, 'a'), range(40), 'the first attempt (with its first worker\'s parts) discarded, the retry complete');
  t.match(events.find((e) => e.type === 'retry'), { key: 'a', attempt: 1, error: { message: /died/ } });
  t.equal(events.filter((e) => e.type === 'joined' && e.key === 'a').length, 2, 'a worker joined each attempt');
  t.equal(res.items.done, 2);
  t.same(res.items.failed, []);
});

t.test('failFast: a failed shared item stops the run with its error, and every worker is gone', async (t) => {
  const { g, workers } = build([{ key: 'a', parts: 40, awaitJoiner: true, failParticipant: 1, fail: 'throw' }, { key: 'b', parts: 3 }], { failFast: true });
  await t.rejects(g.run(), { code: 'E_WORKER_ITEM', key: 'a' });
  for (const w of workers.filter((e) => e.type === 'spawn')) {
    t.throws(() => process.kill(w.pid, 0), { code: 'ESRCH' }, `worker ${w.pid} is gone`);
  }
});
