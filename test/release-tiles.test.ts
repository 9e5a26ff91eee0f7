import t from 'tap';
import { releaseTiles } from '../stages/release-tiles.js';
import type { HistogramTick, SlideResult } from '../stages/types.js';
import { makeCtx } from './helpers/ctx.js';

const emb = (x: number): SlideResult => ({ kind: 'embedding', image_id: 's', patient_id: 'p', image_num: 0, x, y: 0, avg: new Float32Array(1), max: new Float32Array(1) });
const tick = (): HistogramTick => ({ kind: 'histogram-tick' });

t.test('a tile goes back to the budget once both its embedding and its histogram have passed; ticks stay behind', async (t) => {
  const ctx = makeCtx({ limit: 10 });
  await ctx.tiles.acquire(3);
  const seen: Array<[string, number]> = [];
  const input = [emb(0), emb(1), tick(), emb(2), tick(), tick()];
  for await (const r of releaseTiles()((async function* () { yield* input; })(), ctx)) seen.push([r.kind, ctx.tiles.inUse]);
  // Only embeddings come out; after emb0, emb1: nothing finished; tick: tile 0 done; emb2; tick: tile 1; tick: tile 2.
  t.same(seen, [['embedding', 3], ['embedding', 3], ['embedding', 2]]);
  t.equal(ctx.tiles.inUse, 0, 'every tile given back at the end');
});

t.test('backpressure: results are passed one at a time, as they are pulled', async (t) => {
  const ctx = makeCtx({ limit: 10 });
  let pulled = 0;
  const src = (async function* () {
    for (let i = 0; i < 50; i++) {
      pulled++;
      yield emb(i);
    }
  })();
  const it = releaseTiles()(src, ctx)[Symbol.asyncIterator]();
  await it.next();
  t.equal(pulled, 1);
  await it.return?.();
});

t.test('cleanup: returning early returns the upstream', async (t) => {
  let closed = false;
  const src = (async function* () {
    try {
      for (let i = 0; ; i++) yield emb(i);
    } finally {
      closed = true;
    }
  })();
  for await (const _ of releaseTiles()(src, makeCtx())) break;
  t.ok(closed);
});
