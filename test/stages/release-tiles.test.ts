import t from 'tap';
import { releaseTiles } from '../../stages/release-tiles.js';
import type { HistogramTick, SlideResult } from '../../stages/types.js';
import { makeCtx } from '../helpers/ctx.js';

/** Embeddings of a group of `n` tiles starting at x. */
const emb = (x: number, n = 1): SlideResult => ({ kind: 'embeddings', image_id: 's', patient_id: 'p', image_num: 0, x: Array.from({ length: n }, (_, i) => x + i), y: new Array<number>(n).fill(0), outputs: [{ name: 'avg', dim: 1, rows: new Float32Array(n) }, { name: 'max', dim: 1, rows: new Float32Array(n) }] });
const tick = (): HistogramTick => ({ kind: 'histogram-tick' });

t.test('a tile goes back to the budget once both its embedding and its histogram have passed; ticks stay behind', async (t) => {
  const ctx = makeCtx({ limit: 10 });
  await ctx.tiles.acquire(3);
  const seen: Array<[string, number]> = [];
  const input = [emb(0), emb(1), tick(), emb(2), tick(), tick()];
  for await (const r of releaseTiles()((async function* () { yield* input; })(), ctx)) seen.push([r.kind, ctx.tiles.inUse]);
  // Only embeddings come out; after emb0, emb1: nothing finished; tick: tile 0 done; emb2; tick: tile 1; tick: tile 2.
  t.same(seen, [['embeddings', 3], ['embeddings', 3], ['embeddings', 2]]);
  t.equal(ctx.tiles.inUse, 0, 'every tile given back at the end');
});

t.test('a packed group of embeddings counts each of its tiles', async (t) => {
  const ctx = makeCtx({ limit: 10 });
  await ctx.tiles.acquire(5);
  const inUse: number[] = [];
  const input = [tick(), tick(), emb(0, 3), tick(), emb(3, 2), tick(), tick()];
  for await (const _ of releaseTiles()((async function* () { yield* input; })(), ctx)) inUse.push(ctx.tiles.inUse); // only the groups come out
  // 2 ticks, then a group of 3: tiles 0 and 1 done; a tick: tile 2; a group of 2 (no ticks for them yet).
  t.same(inUse, [3, 2]);
  t.equal(ctx.tiles.inUse, 0, 'the last two ticks give back the group of 2');
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
