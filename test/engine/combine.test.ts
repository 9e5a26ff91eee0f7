import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Graph, type CombineFn, type KV } from '../../engine/index.js';

interface Acc { sum: number; n: number; dir: string }

/** Sums per key; writes one spill file per input into its spillDir so the test can check removal. */
function summer(log: { created: string[]; disposed: number; failOn?: number }): CombineFn<[string, number], Acc, number> {
  return {
    createAccumulator(ctx) {
      log.created.push(ctx.spillDir);
      return { sum: 0, n: 0, dir: ctx.spillDir };
    },
    addInput(acc, [, v]) {
      if (v === log.failOn) throw Object.assign(new Error('bad value'), { code: 'E_BAD' });
      writeFileSync(join(acc.dir, `spill-${acc.n}`), String(v));
      return { ...acc, sum: acc.sum + v, n: acc.n + 1 };
    },
    mergeAccumulators(accs, ctx) {
      return accs.reduce((a, b) => ({ sum: a.sum + b.sum, n: a.n + b.n, dir: ctx.spillDir }));
    },
    extractOutput: (acc) => acc.sum,
    dispose() {
      log.disposed++;
    },
  };
}

const rows: [string, number][] = [['b', 1], ['a', 2], ['c', 3], ['b', 4], ['a', 5]];

t.test('one output per key, sorted by key; spill dirs removed; dispose called', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'comb-'));
  t.teardown(() => undefined);
  const log = { created: [] as string[], disposed: 0 };
  const g = new Graph({ name: 'comb', tmpDir: tmp });
  const got: KV<string, number>[] = [];
  g.source('Rows', async function* () { yield* rows; })
    .combinePerKey('Sum', (r) => r[0], summer(log))
    .sink('S', async (s) => { for await (const kv of s) got.push(kv); });
  await g.run();
  t.same(got, [['a', 7], ['b', 5], ['c', 3]]);
  t.equal(log.created.length, 3);
  t.equal(log.disposed, 3);
  for (const d of log.created) t.notOk(existsSync(d), `spill dir ${d} removed`);
  t.same(readdirSync(tmp), [], 'run temp dir removed');
});

t.test('failure: the error names stage and key; every accumulator disposed, spill dirs removed', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'comb-'));
  const log = { created: [] as string[], disposed: 0, failOn: 4 };
  const g = new Graph({ name: 'comb', tmpDir: tmp });
  g.source('Rows', async function* () { yield* rows; })
    .combinePerKey('Sum', (r) => r[0], summer(log))
    .sink('S', async (s) => { for await (const _ of s); });
  await t.rejects(g.run(), { name: 'EngineError', code: 'E_BAD', stage: 'Sum', key: 'b' });
  t.equal(log.created.length, 3);
  t.equal(log.disposed, 3, 'dispose called on every accumulator');
  for (const d of log.created) t.notOk(existsSync(d), 'spill dir removed');
  t.same(readdirSync(tmp), []);
});

t.test('downstream failure during emission still disposes the rest', async (t) => {
  const log = { created: [] as string[], disposed: 0 };
  const g = new Graph({ name: 'comb' });
  g.source('Rows', async function* () { yield* rows; })
    .combinePerKey('Sum', (r) => r[0], summer(log))
    .sink('S', async (s) => {
      for await (const [k] of s) if (k === 'a') throw new Error('sink broke');
    });
  await t.rejects(g.run(), { stage: 'S' });
  t.equal(log.disposed, 3);
  for (const d of log.created) t.notOk(existsSync(d));
});
