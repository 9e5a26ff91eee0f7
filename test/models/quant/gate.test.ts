/**
 * The accuracy gate: cosine figures on known vectors, range collection (minmax, percentile), each tensor's own
 * quantization error, and on the demo EfficientNet-B0: a deliberately bad calibration (one tensor's range cut to
 * 2%) fails the gate, and the fallback keeps exactly that tensor in float and passes.
 */
import t from 'tap';
import { buildEfficientNetB0 } from '../../../models/build.js';
import { compareEmbeddings, passes, TensorErrors } from '../../../models/quant/gate.js';
import { buildGated, calibrate } from '../../../models/quant/int8-embedder.js';
import { RangeCollector } from '../../../models/quant/ranges.js';
import { structuredTiles } from '../../helpers/effnet-random.js';

t.test('compareEmbeddings: mean, 1st percentile, min cosine and max abs error', async (t) => {
  // 3 tiles of width 2: identical, orthogonal, opposite-scaled.
  const ref = Float32Array.of(1, 0, 0, 1, 2, 2);
  const got = Float32Array.of(1, 0, 1, 0, 1, 1);
  const f = compareEmbeddings(ref, got, 2);
  t.equal(f.tiles, 3);
  t.ok(Math.abs(f.mean_cosine - 2 / 3) < 1e-9, `mean ${f.mean_cosine}`);
  t.equal(f.p1_cosine, 0, 'p1 of 3 tiles is the lowest');
  t.equal(f.min_cosine, 0);
  t.equal(f.max_abs_error, 1);
  t.equal(compareEmbeddings(Float32Array.of(0, 0), Float32Array.of(0, 0), 2).mean_cosine, 1, 'two zero vectors agree');
  t.equal(compareEmbeddings(Float32Array.of(0, 0), Float32Array.of(1, 0), 2).mean_cosine, 0, 'a zero vector against another does not');
  t.ok(passes({ ...f, mean_cosine: 0.99, p1_cosine: 0.97 }, { mean: 0.99, p1: 0.97 }), 'at the thresholds passes');
  t.notOk(passes({ ...f, mean_cosine: 0.995, p1_cosine: 0.969 }, { mean: 0.99, p1: 0.97 }), 'p1 alone fails it');
});

t.test('RangeCollector: minmax keeps the extremes, percentile cuts outliers of large tensors', async (t) => {
  const big = new Float32Array(100_000).map((_, i) => (i % 1000) / 1000);
  big[5] = 50; // one outlier
  const mm = new RangeCollector('minmax');
  const pc = new RangeCollector('percentile', 99.9);
  for (const c of [mm, pc]) {
    c.add('big', big);
    c.add('small', Float32Array.of(-3, 1, 2));
  }
  t.same(mm.ranges().big, { min: 0, max: 50 });
  const p = pc.ranges().big!;
  t.ok(p.max < 1.1 && p.max > 0.9, `percentile max ${p.max} ignores the outlier`);
  t.ok(p.min >= 0 && p.min < 0.05, `percentile min ${p.min}`);
  t.same(pc.ranges().small, { min: -3, max: 2 }, 'a small tensor uses its extremes');
});

t.test('TensorErrors: a clipped range errs more than a fitting one', async (t) => {
  const e = new TensorErrors();
  const x = new Float32Array(1000).map((_, i) => i / 100);
  e.add('fits', x, { min: 0, max: 10 });
  e.add('clipped', x, { min: 0, max: 1 });
  const r = e.ranked();
  t.same(r.map((x) => x.tensor), ['clipped', 'fits']);
  t.ok(r[1]!.error < 0.01, `fitting range: ${r[1]!.error}`);
  t.ok(r[0]!.error > 0.5, `clipped range: ${r[0]!.error}`);
});

t.test('a deliberately bad calibration fails the gate; the fallback keeps the culprit in float and passes', async (t) => {
  const fp32 = buildEfficientNetB0();
  const S = 64;
  async function* once(x: Uint8Array[]): AsyncIterable<Uint8Array[]> {
    yield x;
  }
  const ranges = await calibrate(fp32, S, once(structuredTiles(8, S, 5)), { method: 'percentile', batch: 4 });
  // A tensor four fifths through the network, its range cut to 2%: most of its values clip.
  const names = Object.keys(ranges);
  const culprit = names[Math.floor(names.length * 0.8)]!;
  const bad = { ...ranges, [culprit]: { min: ranges[culprit]!.min * 0.02, max: ranges[culprit]!.max * 0.02 } };
  const held = { size: S, pixels: structuredTiles(8, S, 6) };
  const gate = { mean: 0.99, p1: 0.97 };
  const refused = await buildGated(fp32, bad, held, { gate, maxFallback: 0 });
  t.comment(`bad calibration of ${culprit}: mean ${refused.figures.mean_cosine.toFixed(5)}, p1 ${refused.figures.p1_cosine.toFixed(5)}`);
  t.notOk(refused.passed, 'refused');
  t.equal(refused.worst[0]!.tensor, culprit, 'the culprit errs most');
  const rescued = await buildGated(fp32, bad, held, { gate, maxFallback: 3 });
  t.ok(rescued.passed, `passes with the fallback (mean ${rescued.figures.mean_cosine})`);
  t.same(rescued.keptFloat.map((k) => k.tensor), [culprit], 'exactly the culprit kept in float');
  t.same(rescued.firstFigures, refused.figures, 'the first figures are the all-int8 ones');
  t.equal(rescued.quantizedTensors, names.length - 1);
});
