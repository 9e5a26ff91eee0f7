/**
 * `--precision int8` through the compiled CLI on two small generated slides: the run calibrates and gates
 * (report.json and the manifest record the precision, the sample and the figures); fp32 and int8 runs in one work
 * folder keep separate checkpoints; a deliberately bad calibration (ranges cut to 5%) is refused with exit 2 and
 * E_INT8_GATE before anything is written; report.html shows the precision section (int8: model sha256, samples, gate
 * figures, tensors kept in fp32; fp32 says so). Cache keys and the lowered gate: test/cli/precision.test.ts. The
 * normalizer is off here (calibration sees the tiles the embedder sees either way: NormalizeTiles' own output).
 */
import t from 'tap';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { e2eUnavailable, makeSlides, readReport, runCli, shardBytes, tempDir, TILE, TILE_FLAGS, writeCsv, type SlideSpec } from '../helpers/e2e.js';

/** What is calibrated and when it is reused is what this file tests: its own cache (cwd/.cache), not the run's shared one. */
const OWN_CACHE = { ownCache: true } as const;
import type { PrecisionRecord } from '../../stages/cli/precision.js';
import { precisionSection } from '../../stages/report/precision-section.js';

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

  t.test('report.html records the precision: the int8 model, the samples, the gate and its figures', async (t) => {
    const q = (await precisionOf(join(cwd, 'out-a'))).int8!;
    const html = await readFile(join(cwd, 'out-a', 'report.html'), 'utf8');
    const section = /<h2>Precision<\/h2>[\s\S]*?<\/table><\/div>/.exec(html)?.[0] ?? '';
    t.match(section, /data-precision="int8"/);
    t.match(section, new RegExp(`<th>int8 model</th><td>[^<]*<br>sha256 <code>${q.sha256}</code>`), 'the int8 model\'s sha256');
    t.match(section, new RegExp(`<th>made from \\(fp32\\)</th><td>sha256 <code>${q.fp32_sha256}</code>`));
    t.match(section, new RegExp(`<th>calibration sample</th><td>6 tiles from 2 slide\\(s\\); identity sha256 <code>${q.calibration.sample_sha256}</code>; ranges by percentile`), 'calibration size and identity');
    t.match(section, new RegExp(`<th>held-out sample</th><td>4 tiles; identity sha256 <code>${q.held_out.sample_sha256}</code>`));
    t.match(section, /<th>gate<\/th><td>mean cosine &ge; 0\.99, 1st percentile &ge; 0\.97/);
    const f = q.figures;
    t.match(section, `on 4 held-out tiles: mean cosine <b>${f.mean_cosine.toFixed(5)}</b>, 1st percentile <b>${f.p1_cosine.toFixed(5)}</b>, min ${f.min_cosine.toFixed(5)}, max abs error ${f.max_abs_error.toPrecision(3)}`);
    t.match(section, q.kept_float.length === 0 ? /<th>kept in fp32<\/th><td>none<\/td>/ : new RegExp(`<th>kept in fp32</th><td>${q.kept_float.length} tensor`));
    // The same record with tensors kept in fp32 by the fallback: listed with their errors, and the figures before it.
    const kept = { ...q, kept_float: [{ tensor: 'x<1>', label: 'Sigmoid output after blocks.1.0', error: 0.0512 }], first_figures: { ...f, mean_cosine: 0.98 } };
    const withKept = precisionSection({ precision: { precision: 'int8', int8: kept } }, (s) => s.replace(/</g, '&lt;').replace(/>/g, '&gt;'));
    t.match(withKept, /<th>kept in fp32<\/th><td>1 tensor\(s\):<br>Sigmoid output after blocks\.1\.0 \(x&lt;1&gt;; relative error 0\.0512\)<br>with every tensor quantized: mean cosine 0\.98000/);
  });

  t.test('fp32 and int8 in one work folder: separate checkpoints, different embeddings', async (t) => {
    const out = join(cwd, 'out-fp32');
    const r = await runCli([...common, '--out', out, '--work-dir', workDir], cwd, OWN_CACHE);
    t.equal(r.code, 0, r.stderr);
    t.equal((await precisionOf(out)).precision, 'fp32');
    const html = await readFile(join(out, 'report.html'), 'utf8');
    t.match(html, /<h2>Precision<\/h2>\n<p class="precision" data-precision="fp32">Embedder precision: <b>fp32<\/b>/, 'report.html says fp32');
    t.notMatch(html, /data-precision="int8"|calibration sample/, 'and nothing of int8');
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
