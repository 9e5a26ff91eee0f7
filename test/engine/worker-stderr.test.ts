/**
 * Worker processes' stderr (engine/worker-proc.ts): piped by the parent and handed, a whole line at a time with the
 * writing process's pid, to the sink set with onWorkerStderr. With the pids of the item events, each line is
 * attributed to the item its worker runs (what the job's RunRecord does to name the slide of a decoder warning).
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph, onWorkerStderr, stopPrestarted, type ItemEvent } from '../../engine/index.js';
import type { TestItem, TestResult } from './fixtures/engine-worker.js';

const workerModule = new URL('./fixtures/engine-worker.ts', import.meta.url).href;
const execArgv = process.execArgv.filter((a) => a.includes('typescript'));

t.test('each stderr line of a worker reaches the sink whole, attributed to the item its worker runs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'worker-stderr-'));
  t.teardown(() => {
    onWorkerStderr();
    stopPrestarted();
    rmSync(dir, { recursive: true, force: true });
  });
  const items: TestItem[] = [
    { key: 'a', n: 3, stderrLines: 4 },
    { key: 'b', n: 2, stderrLines: 2 },
    { key: 'c', n: 2 },
    { key: 'd', n: 1, stderrLines: 3 },
  ];
  const runningOn = new Map<number, string>();
  const byItem = new Map<string, string[]>();
  const unattributed: string[] = [];
  onWorkerStderr((pid, line) => {
    const key = runningOn.get(pid);
    if (key === undefined) unattributed.push(line);
    else byItem.set(key, [...(byItem.get(key) ?? []), line]);
  });
  const g = new Graph({ name: 'stderr', highWaterMark: 2, tileBudget: 16, tmpDir: dir, metricsIntervalMs: 0 });
  g.on('item', (e: ItemEvent) => {
    if (e.type === 'started') runningOn.set(e.pid, e.key);
  });
  const got: TestResult[] = [];
  g.source('Items', async function* () {
    yield* items;
  })
    .fanOut<TestResult>('Work', { module: workerModule, exportName: 'perItem', config: { dir }, key: (i: TestItem) => i.key, workers: 2, window: 4, execArgv })
    .sink('Collect', async (s) => {
      for await (const r of s) got.push(r);
    });
  await g.run();
  t.equal(got.length, 8, 'every result arrived');
  for (const item of items) {
    const expected = Array.from({ length: item.stderrLines ?? 0 }, (_, l) => `warning ${l} from item ${item.key}`);
    t.same(byItem.get(item.key) ?? [], expected, `item ${item.key}: its lines, whole and in order, attributed to it`);
  }
  t.same(unattributed, [], 'no line without an item');
});
