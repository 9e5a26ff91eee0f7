import t from 'tap';
import { releaseTiles } from '../stages/release-tiles.js';
import type { SlideResult } from '../stages/types.js';
import { makeCtx } from './helpers/ctx.js';

const emb = (x: number): SlideResult => ({ kind: 'embedding', image_id: 's', patient_id: 'p', image_num: 0, x, y: 0, avg: new Float32Array(1), max: new Float32Array(1) });
const hist = (x: number): SlideResult => ({ kind: 'histogram', image_id: 's', patient_id: 'p', x, y: 0, histogram: new Float32Array(1) });

t.test('a tile goes back to the budget once both its embedding and its histogram have passed', async (t) => {
  const ctx = makeCtx({ limit: 10 });
  await ctx.tiles.acquire(3);
  const seen: number[] = [];
  const input = [emb(0), emb(1), hist(0), emb(2), hist(1), hist(2)];
  for await (const _ of releaseTiles()((async function* () { yield* input; })(), ctx)) seen.push(ctx.tiles.inUse);
  // After emb0, emb1: nothing finished; hist0: tile 0 done; emb2: no; hist1: tile 1; hist2: tile 2.
  t.same(seen, [3, 3, 2, 2, 1, 0]);
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
