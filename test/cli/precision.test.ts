/**
 * The job's precision step (stages/cli/precision.ts) called directly on generated slides: the cache is keyed by
 * the fp32 model and the calibration sample (same inputs reuse both files; another sample or model recalibrates),
 * a deliberately bad calibration is refused with E_INT8_GATE and its figures, and fp32 passes the model through.
 */
import t from 'tap';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildEfficientNetB0, demoEffNetWeights } from '../../models/build.js';
import { closeSessions } from '../../models/runtime/session.js';
import { sha256File } from '../../stages/dataset/manifest.js';
import { preparePrecision, type PrecisionInputs } from '../../stages/cli/precision.js';
import { parsePrecision } from '../../stages/cli/precision-options.js';
import type { CsvRow } from '../../stages/types.js';
import type { SlideConfig } from '../../graph.js';
import { makeSlides, tempDir, TILE, type SlideSpec } from '../helpers/e2e.js';

t.teardown(closeSessions);
const T = TILE.tileSize;
const SLIDES: SlideSpec[] = [
  { image_id: 'c0', width: 1024, height: 1024, seed: 51, tissue: [{ kind: 'rect', x: T, y: T, w: 3 * T, h: 2 * T }] },
  { image_id: 'c1', width: 1024, height: 1024, seed: 52, tissue: [{ kind: 'rect', x: 0, y: T, w: 4 * T, h: 2 * T }] },
];
const cwd = await tempDir(t, 'precision-');
const slidesDir = join(cwd, 'slides');
await makeSlides(slidesDir, SLIDES);
const rows: CsvRow[] = SLIDES.map((s, i) => ({ file: 'in.csv', line: i + 2, image_id: s.image_id, center_id: '0', patient_id: `p${i}`, image_num: 0, raw: [] }));
const modelA = join(cwd, 'a.onnx');
const modelB = join(cwd, 'b.onnx');
await writeFile(modelA, buildEfficientNetB0());
await writeFile(modelB, buildEfficientNetB0(demoEffNetWeights(3)));
const slide = (embedder: string): SlideConfig => ({ tile: { ...TILE }, batchSize: 1, groupSize: 8, batchMaxWaitMs: 50, normalizer: 'none', embedder, lutCacheDir: join(cwd, 'lut'), threads: 1 });
const inputs = async (embedder: string, cal: number, extra: Record<string, string> = {}): Promise<PrecisionInputs> => ({
  ...parsePrecision({ precision: 'int8', 'int8-calibration-tiles': String(cal), 'int8-holdout-tiles': '2', ...extra }),
  rows, slidesDir, slide: slide(embedder), embedderSha256: await sha256File(embedder), normalizerSha256: 'none', cacheDir: join(cwd, 'cache'), log: () => undefined,
});

t.test('fp32 passes the model through', async (t) => {
  const r = await preparePrecision({ ...(await inputs(modelA, 4)), precision: 'fp32' });
  t.same(r, { embedder: modelA, record: { precision: 'fp32' } });
});

t.test('cache keys: same inputs reuse, another sample or model recalibrates', async (t) => {
  const a = (await preparePrecision(await inputs(modelA, 4))).record.int8!;
  t.same([a.calibration.tiles, a.calibration.slides, a.held_out.tiles, a.calibration.reused, a.reused], [4, 2, 2, false, false]);
  t.ok(a.figures.mean_cosine >= 0.99, `demo model passes: ${a.figures.mean_cosine}`);
  const mtime = (await stat(a.calibration.ranges_file)).mtimeMs;
  const again = await preparePrecision(await inputs(modelA, 4));
  t.same([again.record.int8!.calibration.reused, again.record.int8!.reused, again.record.int8!.sha256], [true, true, a.sha256]);
  t.equal(again.embedder, a.model);
  t.equal((await stat(a.calibration.ranges_file)).mtimeMs, mtime, 'not rewritten');
  const other = (await preparePrecision(await inputs(modelA, 3))).record.int8!;
  t.equal(other.calibration.reused, false, 'another calibration sample recalibrates');
  t.not(other.calibration.ranges_file, a.calibration.ranges_file);
  t.equal(other.held_out.sample_sha256, a.held_out.sample_sha256, 'the held-out sample does not depend on the calibration size');
  const b = (await preparePrecision(await inputs(modelB, 4))).record.int8!;
  t.equal(b.calibration.reused, false, 'another model recalibrates');
  t.not(join(b.calibration.ranges_file, '..'), join(a.calibration.ranges_file, '..'), 'under its own sha256');
  t.equal(b.calibration.sample_sha256, a.calibration.sample_sha256, 'same sample identity');
});

t.test('a deliberately bad calibration: E_INT8_GATE with the figures and the worst tensors; a lowered gate runs', async (t) => {
  const a = (await preparePrecision(await inputs(modelA, 4))).record.int8!;
  const cached = JSON.parse(await readFile(a.calibration.ranges_file, 'utf8')) as { ranges: Record<string, { min: number; max: number }> };
  for (const r of Object.values(cached.ranges)) {
    r.min *= 0.05;
    r.max *= 0.05;
  }
  await writeFile(a.calibration.ranges_file, JSON.stringify(cached));
  await t.rejects(preparePrecision(await inputs(modelA, 4, { 'int8-fallback': '0' })), {
    code: 'E_INT8_GATE',
    message: /refused \(E_INT8_GATE\): on 2 held-out tiles .* mean cosine [-0-9.]+ and 1st percentile [-0-9.]+ \(gate: 0.99 \/ 0.97; max abs error .*The tensors whose quantization errs most:\n {2}\w+ output after/s,
  });
  const lowered = (await preparePrecision(await inputs(modelA, 4, { 'int8-fallback': '0', 'int8-gate': '-1,-1' }))).record.int8!;
  t.same(lowered.gate, { mean: -1, p1: -1 });
  t.ok(lowered.figures.mean_cosine < 0.99, `recorded figures below the default gate: ${lowered.figures.mean_cosine}`);
});
