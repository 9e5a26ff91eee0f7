import t from 'tap';
import { Graph, type KV } from '../engine/index.js';

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
