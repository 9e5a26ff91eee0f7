import t from 'tap';
import { combineHistograms } from '../stages/combine-histograms.js';
import type { TileHistogram } from '../stages/types.js';

const ctx = { key: 'P1', spillDir: '/nonexistent', signal: new AbortController().signal };

function hist(i: number): TileHistogram {
  // A normalized histogram with a few non-zero bins that depend on i.
  const h = new Float32Array(4096);
  const bins = [i % 4096, (i * 37) % 4096, (i * 101 + 5) % 4096];
  for (const [k, b] of bins.entries()) h[b]! += (k + 1) / 6;
  return { kind: 'histogram', image_id: 'img', patient_id: 'P1', x: i, y: 0, histogram: h };
}

t.test('mean histogram sums to 1 and equals the float64 mean', async (t) => {
  const fn = combineHistograms();
  let acc = fn.createAccumulator(ctx);
  const n = 5000;
  for (let i = 0; i < n; i++) acc = fn.addInput(acc, hist(i));
  const out = fn.extractOutput(acc);
  t.equal(out.tiles, n);
  t.equal(out.patient_id, 'P1');
  t.equal(out.histogram.length, 4096);
  const sum = out.histogram.reduce((s, v) => s + v, 0);
  t.ok(Math.abs(sum - 1) < 1e-5, `sum ${sum}`);
  const expected = new Float64Array(4096);
  for (let i = 0; i < n; i++) hist(i).histogram.forEach((v, b) => (expected[b]! += v / n));
  let worst = 0;
  out.histogram.forEach((v, b) => (worst = Math.max(worst, Math.abs(v - expected[b]!))));
  t.ok(worst < 1e-7, `max bin error ${worst}`);
});

t.test('merging equals adding all', async (t) => {
  const fn = combineHistograms();
  const a = fn.createAccumulator(ctx);
  const b = fn.createAccumulator(ctx);
  const all = fn.createAccumulator(ctx);
  for (let i = 0; i < 30; i++) {
    fn.addInput(i < 11 ? a : b, hist(i));
    fn.addInput(all, hist(i));
  }
  const merged = fn.extractOutput(fn.mergeAccumulators([a, b], ctx));
  const direct = fn.extractOutput(all);
  t.equal(merged.tiles, 30);
  t.same(Array.from(merged.histogram), Array.from(direct.histogram));
});

t.test('no tiles: zero count, zero histogram; wrong size: error', async (t) => {
  const fn = combineHistograms();
  const out = fn.extractOutput(fn.createAccumulator(ctx));
  t.equal(out.tiles, 0);
  t.equal(out.histogram.reduce((s, v) => s + v, 0), 0);
  t.throws(() => fn.addInput(fn.createAccumulator(ctx), { ...hist(1), histogram: new Float32Array(10) }), { code: 'E_HISTOGRAM_SIZE', message: /10 bins/ });
});

t.test('the mean is bit-identical whatever order the slides arrive in', async (t) => {
  // Crafted so that float sums in arrival order round differently: slide A's tiles put 1 and 2^-24 in
  // bin 0, slide B's two tiles 2^-53 each. A first: 1 + 2^-24 absorbs each 2^-53 (a float64 tie, rounded
  // to even) and the mean lands exactly on a float32 tie (rounded down); B first: the 2^-53s add up to
  // 2^-52 and survive, and the mean rounds up. Per-slide partials added in image_id order give one answer.
  const tile = (image_id: string, v: number, x: number): TileHistogram => {
    const h = new Float32Array(4096);
    h[0] = v;
    return { kind: 'histogram', image_id, patient_id: 'P1', x, y: 0, histogram: h };
  };
  const a = [tile('A', 1, 0), tile('A', 2 ** -24, 1)];
  const b = [tile('B', 2 ** -53, 0), tile('B', 2 ** -53, 1)];
  const meanOf = (tiles: TileHistogram[]): number => {
    const fn = combineHistograms();
    let acc = fn.createAccumulator(ctx);
    for (const x of tiles) acc = fn.addInput(acc, x);
    return fn.extractOutput(acc).histogram[0]!;
  };
  const aFirst = meanOf([...a, ...b]);
  t.equal(meanOf([...b, ...a]), aFirst, 'B first');
  t.equal(meanOf([a[0]!, b[0]!, a[1]!, b[1]!]), aFirst, 'interleaved');
  t.equal(aFirst, Math.fround(0.25 + 2 ** -25), 'the exact total (1 + 2^-24 + 2^-52) / 4, rounded once');
});
