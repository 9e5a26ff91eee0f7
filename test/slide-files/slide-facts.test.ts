/** CombineSlideFacts: a slide's summary and its histogram parts become one SlideFacts (mean histogram), merges add up, a part twice is an error. */
import t from 'tap';
import { combineSlideFacts } from '../../stages/slide-files/slide-facts.js';
import type { SlideHistogram, SlideSummary } from '../../stages/types.js';

const ctx = (key: string) => ({ key, spillDir: '/nonexistent', signal: new AbortController().signal });
const summary = (image_id: string, extra: Partial<SlideSummary> = {}): SlideSummary => ({
  kind: 'summary',
  image_id,
  patient_id: 'p',
  path: `/slides/${image_id}.svs`,
  backend: 'sharp',
  width: 1000,
  height: 800,
  levels: [1, 4],
  thumbnailLevel: 1,
  tileLevel: 0,
  format: 'svs',
  tiles_total: 4,
  tiles_kept: 3,
  positions: [],
  thumbnailPng: new Uint8Array(10),
  maskPng: new Uint8Array(10),
  ...extra,
});
const part = (image_id: string, p: number, tiles: number, bin: number): SlideHistogram => {
  const sum = new Float64Array(4096);
  sum[bin] = tiles;
  return { kind: 'slide-histogram', image_id, patient_id: 'p', part: p, tiles, sum };
};

t.test('summary and parts: one SlideFacts per slide, sorted, with the mean histogram; no pictures kept', async (t) => {
  const fn = combineSlideFacts();
  let acc = await fn.createAccumulator(ctx('p'));
  acc = await fn.addInput(acc, part('s1', 0, 2, 7));
  acc = await fn.addInput(acc, summary('s1', { mppX: 0.5, mppY: 0.5, magnification: 20, scaleSource: 'aperio' }));
  acc = await fn.addInput(acc, part('s1', 1, 1, 9));
  acc = await fn.addInput(acc, summary('s0'));
  acc = await fn.addInput(acc, part('s0', 0, 4, 0));
  const out = await fn.extractOutput(acc);
  t.same(out.map((f) => f.image_id), ['s0', 's1']);
  const s1 = out[1]!;
  t.match(s1, { width: 1000, height: 800, levels: [1, 4], tileLevel: 0, mppX: 0.5, magnification: 20, scaleSource: 'aperio', format: 'svs', histogramTiles: 3 });
  t.equal(s1.histogram![7], Math.fround(2 / 3));
  t.equal(s1.histogram![9], Math.fround(1 / 3));
  t.notOk('thumbnailPng' in s1 || 'positions' in s1, 'the pictures and positions are not kept');
  t.notOk('mppX' in out[0]!, 'no scale when the file states none');
});

t.test('merged accumulators add up; a histogram part twice is E_DUPLICATE_TILE', async (t) => {
  const fn = combineSlideFacts();
  const a = await fn.addInput(await fn.createAccumulator(ctx('p')), part('s0', 0, 1, 1));
  const b = await fn.addInput(await fn.addInput(await fn.createAccumulator(ctx('p')), summary('s0')), part('s0', 1, 3, 1));
  const merged = await fn.mergeAccumulators([a, b], ctx('p'));
  const [s0] = await fn.extractOutput(merged);
  t.equal(s0!.histogramTiles, 4);
  t.equal(s0!.histogram![1], 1);
  t.throws(() => fn.addInput(merged, part('s0', 1, 1, 1)), { code: 'E_DUPLICATE_TILE', message: /slide s0: histogram part 1 arrived twice/ });
  await t.rejects(async () => fn.mergeAccumulators([merged, b], ctx('p')), { code: 'E_DUPLICATE_TILE' });
});

t.test('a slide whose summary never came is left out (its tiles are reported by the writers)', async (t) => {
  const fn = combineSlideFacts();
  const acc = await fn.addInput(await fn.createAccumulator(ctx('p')), part('s9', 0, 1, 1));
  t.same(await fn.extractOutput(acc), []);
});
