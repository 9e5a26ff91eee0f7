import t from 'tap';
import { Graph, type KV } from '../../engine/index.js';

t.test('join: one element per key, sorted, [] where an input lacks the key', async (t) => {
  const g = new Graph({ name: 'join', highWaterMark: 1 });
  const patients = g.source('P', async function* (): AsyncGenerator<KV<string, { id: string }>> {
    for (const id of ['p3', 'p1', 'p2']) yield [id, { id }];
  });
  const emb = g.source('E', async function* (): AsyncGenerator<KV<string, number>> {
    yield ['p1', 10];
    yield ['p4', 40];
    yield ['p1', 11];
  });
  const hist = g.source('H', async function* (): AsyncGenerator<KV<string, string>> {
    for (let i = 0; i < 50; i++) yield [`p${(i % 2) + 1}`, `h${i}`]; // more than the edge holds: needs concurrent reading
  });
  const got: unknown[] = [];
  g.join('J', { patient: patients, embeddings: emb, histograms: hist }).sink('S', async (s) => {
    for await (const [key, v] of s) got.push([key, v.patient.length, v.embeddings, v.histograms.length]);
  });
  await g.run();
  t.same(got, [
    ['p1', 1, [10, 11], 25],
    ['p2', 1, [], 25],
    ['p3', 1, [], 0],
    ['p4', 0, [40], 0],
  ]);
});

t.test('join: an input error ends the run naming the stage', async (t) => {
  const g = new Graph({ name: 'join' });
  const a = g.source('A', async function* (): AsyncGenerator<KV<string, number>> { yield ['k', 1]; });
  const b = g.source('B', async function* (): AsyncGenerator<KV<string, number>> {
    yield ['k', 2];
    throw new Error('B broke');
  });
  g.join('J', { a, b }).sink('S', async (s) => { for await (const _ of s); });
  await t.rejects(g.run(), { code: 'E_STAGE', stage: 'B', message: /B broke/ });
});

t.test('join: waiting on several inputs at once is not counted as negative busy time', async (t) => {
  const g = new Graph({ name: 'join-metrics', highWaterMark: 1 });
  // Two inputs that each yield slowly (on separate macrotask turns), so the join waits on both at once.
  const slow = (name: string) =>
    g.source(name, async function* (): AsyncGenerator<KV<string, number>> {
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setImmediate(r));
        yield [`k${i}`, i];
      }
    });
  g.join('J', { a: slow('A'), b: slow('B') }).sink('S', async (s) => { for await (const _ of s); });
  const result = await g.run();
  const j = result.metrics.find((m) => m.name === 'J')!;
  t.equal(j.elementsIn, 40);
  t.equal(j.elementsOut, 20);
  t.ok(j.busyMs >= 0, `busy time ${j.busyMs} ms is not negative`);
});
