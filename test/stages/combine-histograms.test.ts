import t from 'tap';
import { combineHistograms } from '../../stages/combine-histograms.js';
import { sumHistograms } from '../../stages/sum-histograms.js';
import type { SlideHistogram, TileHistogram } from '../../stages/types.js';

const ctx = { key: 'P1', spillDir: '/nonexistent', signal: new AbortController().signal };

function hist(i: number, image_id = 'img'): TileHistogram {
  // A normalized histogram with a few non-zero bins that depend on i.
  const h = new Float32Array(4096);
  const bins = [i % 4096, (i * 37) % 4096, (i * 101 + 5) % 4096];
  for (const [k, b] of bins.entries()) h[b]! += (k + 1) / 6;
  return { kind: 'histogram', image_id, patient_id: 'P1', x: i, y: 0, histogram: h };
}

/** A slide's sum, made by the worker-side stage itself. */
async function slideSum(tiles: TileHistogram[]): Promise<SlideHistogram> {
  let out: SlideHistogram | undefined;
  for await (const r of sumHistograms()((async function* () { yield* tiles; })(), ctx as never)) if (r.kind === 'slide-histogram') out = r;
  return out!;
}

t.test('mean histogram over slides sums to 1 and equals the float64 mean of the tiles', async (t) => {
  const fn = combineHistograms();
  let acc = fn.createAccumulator(ctx);
  const slides = [[0, 2000], [2000, 3500], [3500, 5000]] as const;
  for (const [from, to] of slides) {
    acc = fn.addInput(acc, await slideSum(Array.from({ length: to - from }, (_, k) => hist(from + k, `img-${from}`))));
  }
  const n = 5000;
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
  for (let s = 0; s < 5; s++) {
    const slide = await slideSum(Array.from({ length: 6 }, (_, k) => hist(s * 6 + k, `img-${s}`)));
    fn.addInput(s < 2 ? a : b, slide);
    fn.addInput(all, slide);
  }
  const merged = fn.extractOutput(fn.mergeAccumulators([a, b], ctx));
  const direct = fn.extractOutput(all);
  t.equal(merged.tiles, 30);
  t.same(Array.from(merged.histogram), Array.from(direct.histogram));
});

t.test('no tiles: zero count, zero histogram; wrong size and a slide received twice: errors', async (t) => {
  const fn = combineHistograms();
  const out = fn.extractOutput(fn.createAccumulator(ctx));
  t.equal(out.tiles, 0);
  t.equal(out.histogram.reduce((s, v) => s + v, 0), 0);
  const slide = await slideSum([hist(1)]);
  t.throws(() => fn.addInput(fn.createAccumulator(ctx), { ...slide, sum: new Float64Array(10) }), { code: 'E_HISTOGRAM_SIZE', message: /10 bins/ });
  const acc = fn.addInput(fn.createAccumulator(ctx), slide);
  t.throws(() => fn.addInput(acc, slide), { code: 'E_DUPLICATE_TILE', message: /image img: its colour histograms were received twice/ });
});

t.test('a shared slide: each worker\'s part is added; the same part twice is an error', async (t) => {
  const fn = combineHistograms();
  const whole = await slideSum([hist(1), hist(2), hist(3)]);
  const p0 = { ...(await slideSum([hist(1), hist(3)])), part: 0 };
  const p1 = { ...(await slideSum([hist(2)])), part: 1 };
  let acc = fn.createAccumulator(ctx);
  acc = fn.addInput(acc, p1);
  acc = fn.addInput(acc, p0);
  const split = fn.extractOutput(acc);
  const one = fn.extractOutput(fn.addInput(fn.createAccumulator(ctx), whole));
  t.equal(split.tiles, 3);
  let maxDiff = 0;
  for (let i = 0; i < 4096; i++) maxDiff = Math.max(maxDiff, Math.abs(split.histogram[i]! - one.histogram[i]!));
  t.ok(maxDiff < 1e-7, `same mean as the slide read by one worker (max difference ${maxDiff})`);
  t.throws(() => fn.addInput(acc, p1), { code: 'E_DUPLICATE_TILE', message: /image img \(part 1\): its colour histograms were received twice/ });
});

t.test('the mean is bit-identical whatever order the slides arrive in', async (t) => {
  // Crafted so that float sums in arrival order round differently: slide A sums to 1 + 2^-24 in bin 0,
  // slides B and C to 2^-53 each. A first: 1 + 2^-24 absorbs each 2^-53 (a float64 tie, rounded to even)
  // and the mean lands exactly on a float32 tie (rounded down); B and C first: they add up to 2^-52 and
  // survive, and the mean rounds up. Adding the slides in image_id order gives one answer.
  const slide = (image_id: string, v: number, tiles: number): SlideHistogram => {
    const sum = new Float64Array(4096);
    sum[0] = v;
    return { kind: 'slide-histogram', image_id, patient_id: 'P1', part: 0, tiles, sum };
  };
  const A = slide('A', 1 + 2 ** -24, 2);
  const B = slide('B', 2 ** -53, 1);
  const C = slide('C', 2 ** -53, 1);
  const meanOf = (slides: SlideHistogram[]): number => {
    const fn = combineHistograms();
    let acc = fn.createAccumulator(ctx);
    for (const s of slides) acc = fn.addInput(acc, s);
    return fn.extractOutput(acc).histogram[0]!;
  };
  const aFirst = meanOf([A, B, C]);
  t.equal(meanOf([B, C, A]), aFirst, 'B and C first');
  t.equal(meanOf([B, A, C]), aFirst, 'A in the middle');
  t.equal(aFirst, Math.fround((1 + 2 ** -24) / 4), 'A + B + C in image_id order, divided once');
});
