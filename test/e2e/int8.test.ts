/**
 * `--precision int8` through the compiled CLI on two small generated slides: the run calibrates and gates
 * (report.json and the manifest record the precision, the sample and the figures); fp32 and int8 runs in one work
 * folder keep separate checkpoints; a deliberately bad calibration (ranges cut to 5%) is refused with exit 2 and
 * E_INT8_GATE before anything is written. Cache keys and the lowered gate: test/cli/precision.test.ts. The
 * normalizer is off here (calibration sees the tiles the embedder sees either way: NormalizeTiles' own output).
 */
import t from 'tap';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { e2eUnavailable, makeSlides, readReport, runCli, shardBytes, tempDir, TILE, TILE_FLAGS, writeCsv, type SlideSpec } from '../helpers/e2e.js';

/** What is calibrated and when it is reused is what this file tests: its own cache (cwd/.cache), not the run's shared one. */
const OWN_CACHE = { ownCache: true } as const;
import type { PrecisionRecord } from '../../stages/cli/precision.js';

const T = TILE.tileSize;
const SLIDES: SlideSpec[] = [
  { image_id: 'q0', width: 1024, height: 1024, seed: 41, tissue: [{ kind: 'rect', x: T, y: T, w: 3 * T, h: 2 * T }] },
  { image_id: 'q1', width: 1024, height: 1024, seed: 42, tissue: [{ kind: 'rect', x: 0, y: T, w: 4 * T, h: 2 * T }] },
];

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'e2e-int8-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, SLIDES);
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, SLIDES.map((s, i) => ({ image_id: s.image_id, center_id: 0, patient_id: `p${i}`, image_num: 0, label: '1' })), true);
  const common = ['--csv', csv, '--slides', slidesDir, ...TILE_FLAGS, '--normalizer', 'none', '--workers', '1', '--progress', 'none'];
  const int8 = ['--precision', 'int8', '--int8-calibration-tiles', '6', '--int8-holdout-tiles', '4'];
  const precisionOf = async (out: string): Promise<PrecisionRecord> => (await readReport(out)).params.precision as PrecisionRecord;
  const workDir = join(cwd, 'work');

  t.test('an int8 run: calibrated, gated and recorded in report.json and the manifest', async (t) => {
    const out = join(cwd, 'out-a');
    const r = await runCli([...common, ...int8, '--out', out, '--work-dir', workDir], cwd, OWN_CACHE);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stderr, /int8: calibrating on 6 tiles from 2 slide\(s\) \(percentile\)/);
    const p = await precisionOf(out);
    t.equal(p.precision, 'int8');
    const q = p.int8!;
    t.same([q.calibration.tiles, q.calibration.slides, q.held_out.tiles, q.calibration.reused, q.reused], [6, 2, 4, false, false]);
    t.ok(q.figures.mean_cosine >= 0.99 && q.figures.p1_cosine >= 0.97, `figures ${JSON.stringify(q.figures)}`);
    t.same(q.gate, { mean: 0.99, p1: 0.97 });
    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { params: { precision: PrecisionRecord }; models: Record<string, { sha256: string }> };
    t.equal(manifest.params.precision.int8?.sha256, q.sha256, 'the manifest records the int8 model');
    t.equal(manifest.models.embedder_int8?.sha256, q.sha256);
    t.equal(manifest.models.embedder?.sha256, q.fp32_sha256, 'and the fp32 model it was made from');
    t.ok((await stat(q.model)).size > 0);
  });

  t.test('fp32 and int8 in one work folder: separate checkpoints, different embeddings', async (t) => {
    const out = join(cwd, 'out-fp32');
    const r = await runCli([...common, '--out', out, '--work-dir', workDir], cwd, OWN_CACHE);
    t.equal(r.code, 0, r.stderr);
    t.equal((await precisionOf(out)).precision, 'fp32');
    t.equal((await readdir(join(workDir, 'checkpoints'))).length, 2, 'one checkpoint folder per precision');
    const [fp32] = [...(await shardBytes(out)).values()];
    const [q] = [...(await shardBytes(join(cwd, 'out-a'))).values()];
    t.ok(fp32 && q && !fp32.equals(q), 'int8 records are not the fp32 ones');
  });

  t.test('a deliberately bad calibration is refused (exit 2, E_INT8_GATE) before anything is written', async (t) => {
    const a = (await precisionOf(join(cwd, 'out-a'))).int8!;
    const cached = JSON.parse(await readFile(a.calibration.ranges_file, 'utf8')) as { ranges: Record<string, { min: number; max: number }> };
    for (const r of Object.values(cached.ranges)) {
      r.min *= 0.05;
      r.max *= 0.05;
    }
    await writeFile(a.calibration.ranges_file, JSON.stringify(cached));
    const out = join(cwd, 'out-bad');
    const r = await runCli([...common, ...int8, '--int8-fallback', '0', '--out', out], cwd, OWN_CACHE);
    t.equal(r.code, 2, r.stderr);
    t.match(r.stderr, /--precision int8 refused \(E_INT8_GATE\): on 4 held-out tiles the int8 embedder agrees with fp32 at mean cosine [-0-9.]+ and 1st percentile/);
    t.match(r.stderr, /The tensors whose quantization errs most:\n {2}\w+ output after/);
    t.match(r.stderr, /--int8-gate MEAN,P1/);
    await t.rejects(stat(join(out, 'manifest.json')), 'nothing written');
  });
}
