import t from 'tap';
import { sumHistograms } from '../../stages/sum-histograms.js';
import type { TileHistogram } from '../../stages/types.js';
import { makeCtx } from '../helpers/ctx.js';

const hist = (x: number, bin: number): TileHistogram => {
  const h = new Float32Array(4096);
  h[bin] = 0.75;
  h[4095] = 0.25;
  return { kind: 'histogram', image_id: 's1', patient_id: 'p1', x, y: 0, histogram: h };
};

t.test('a tick per tile, then the slide sum in float64', async (t) => {
  const out = [];
  for await (const r of sumHistograms()((async function* () { yield* [hist(0, 1), hist(448, 2), hist(896, 1)]; })(), makeCtx())) out.push(r);
  t.same(out.slice(0, 3).map((r) => r.kind), ['histogram-tick', 'histogram-tick', 'histogram-tick']);
  const last = out[3]!;
  if (last.kind !== 'slide-histogram') throw new Error('expected the slide sum last');
  t.match(last, { image_id: 's1', patient_id: 'p1', part: 0, tiles: 3 });
  t.ok(last.sum instanceof Float64Array);
  t.same([last.sum[1], last.sum[2], last.sum[4095], last.sum[0]], [1.5, 0.75, 0.75, 0]);
  t.equal(out.length, 4);
});

t.test('a shared slide: the sum names its part', async (t) => {
  const out = [];
  for await (const r of sumHistograms({ part: 2 })((async function* () { yield hist(0, 1); })(), makeCtx())) out.push(r);
  t.match(out[1], { kind: 'slide-histogram', part: 2, tiles: 1 });
});

t.test('a slide without tiles gives no sum', async (t) => {
  const out = [];
  for await (const r of sumHistograms()((async function* () {})(), makeCtx())) out.push(r);
  t.same(out, []);
});

t.test('backpressure: one tile pulled per tick handed out', async (t) => {
  let pulled = 0;
  const src = (async function* () {
    for (let i = 0; i < 50; i++) {
      pulled++;
      yield hist(i, 3);
    }
  })();
  const it = sumHistograms()(src, makeCtx())[Symbol.asyncIterator]();
  await it.next();
  await it.next();
  t.equal(pulled, 2);
  await it.return?.();
});

t.test('cleanup: returning early returns the upstream and yields no partial sum', async (t) => {
  let closed = false;
  const src = (async function* () {
    try {
      for (let i = 0; ; i++) yield hist(i, 3);
    } finally {
      closed = true;
    }
  })();
  const kinds: string[] = [];
  for await (const r of sumHistograms()(src, makeCtx())) {
    kinds.push(r.kind);
    break;
  }
  t.ok(closed);
  t.same(kinds, ['histogram-tick']);
});
