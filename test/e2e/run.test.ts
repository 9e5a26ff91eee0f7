/**
 * End to end through the compiled CLI on generated slides with known tissue: the records written match
 * the inputs exactly (tiles kept by the selection rule, their order, labels, centers, embeddings,
 * histograms); a slide without tissue drops its patient, a corrupt slide fails alone (exit code 1);
 * the run report says so; output bytes do not depend on the number of workers; no label column means no
 * `label` feature; `inspect` and `split` work through the CLI.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  e2eUnavailable,
  expectedPositions,
  makeSlides,
  readExamples,
  readReport,
  runCli,
  shardBytes,
  shardFiles,
  tempDir,
  TILE,
  TILE_FLAGS,
  writeCsv,
  type CsvLine,
  type SlideSpec,
} from '../helpers/e2e.js';
import { TEST_CACHE } from '../helpers/test-cache.js';

const T = TILE.tileSize;
const SLIDES: SlideSpec[] = [
  // Patient pa: two slides; a rectangle on the tile grid (exact count) and one straddling tiles by half.
  { image_id: 'a0', width: 2240, height: 1792, seed: 11, tissue: [{ kind: 'rect', x: 2 * T, y: 2 * T, w: 4 * T, h: 3 * T }] },
  { image_id: 'a1', width: 1792, height: 2240, seed: 12, tissue: [{ kind: 'rect', x: T, y: T, w: 3 * T, h: 2 * T }, { kind: 'rect', x: T / 2, y: 6 * T, w: 2 * T, h: T }] },
  // Patient pb: no tissue at all -> dropped.
  { image_id: 'b0', width: 2048, height: 2048, seed: 13, tissue: [] },
  // Patient pd: an ellipse; some kept tiles on its edge are partly background, the dropped ones >= 19%.
  { image_id: 'd0', width: 2240, height: 2240, seed: 14, tissue: [{ kind: 'ellipse', cx: 1010, cy: 1010, rx: 720, ry: 500 }] },
];
const ROWS: CsvLine[] = [
  // a1 comes first in the CSV but has image_num 1: the record lists a0 first.
  { image_id: 'a1', center_id: 0, patient_id: 'pa', image_num: 1, label: '1' },
  { image_id: 'a0', center_id: 0, patient_id: 'pa', image_num: 0, label: '1' },
  { image_id: 'b0', center_id: 1, patient_id: 'pb', image_num: 0, label: '0' },
  { image_id: 'c0', center_id: 1, patient_id: 'pc', image_num: 0, label: '1' },
  { image_id: 'd0', center_id: 2, patient_id: 'pd', image_num: 0, label: '0' },
];

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  // One working directory for the whole file; the demo models and the LUT go to the run's shared cache (WSI_CACHE_DIR).
  const cwd = await tempDir(t, 'e2e-run-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, SLIDES);
  // A corrupt slide: a TIFF header followed by garbage.
  await writeFile(join(slidesDir, 'c0.tif'), Buffer.concat([Buffer.from('II*\0'), Buffer.alloc(200, 0xab)]));
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, ROWS, true);
  const common = ['--csv', csv, '--slides', slidesDir, ...TILE_FLAGS, '--progress', 'none'];
  const out2 = join(cwd, 'out-w2');
  const run2 = await runCli([...common, '--out', out2, '--workers', '2'], cwd);

  t.test('WSI_CACHE_DIR: the models and the lookup table are there, nothing in the working directory', async (t) => {
    const lut = await readdir(join(TEST_CACHE, 'lut'));
    t.ok(lut.some((f) => /^stain-lut-[0-9a-f]{64}\.rgb$/.test(f)), `the table in ${TEST_CACHE}/lut: ${lut.join(', ')}`);
    t.same((await readdir(join(TEST_CACHE, 'models'))).filter((f) => f.endsWith('.onnx')).sort(), ['efficientnet_b0.onnx', 'stainnet.onnx']);
    t.notOk(existsSync(join(cwd, '.cache')), 'no ./.cache');
    const report = await readReport(out2);
    t.equal(report.models.embedder?.path, join(TEST_CACHE, 'models', 'efficientnet_b0.onnx'), 'the report names the model in the cache folder');
    t.equal(report.models.embedder?.weights, 'demo-untrained', 'known as the demo model there');
  });

  t.test('exit code 1, the corrupt slide named on stderr', async (t) => {
    t.equal(run2.code, 1, run2.stderr);
    t.match(run2.stderr, /slide c0 \(patient pc\) failed: .*c0\.tif/);
    t.notMatch(run2.stderr, /slide (a0|a1|b0|d0) /, 'only the corrupt slide is reported failed');
  });

  t.test('records match the inputs: tiles, order, labels, centers, embeddings, histograms', async (t) => {
    const examples = await readExamples(out2);
    t.same(examples.map((e) => e.bytes['patient_id']![0]!.toString()).sort(), ['pa', 'pd'], 'patients with tiles only');
    const spec = (id: string): SlideSpec => SLIDES.find((s) => s.image_id === id)!;
    for (const ex of examples) {
      const pid = ex.bytes['patient_id']![0]!.toString();
      const rows = ROWS.filter((r) => r.patient_id === pid).sort((a, b) => a.image_num - b.image_num);
      t.same(ex.bytes['image_ids']!.map(String), rows.map((r) => r.image_id), `${pid}: image_ids in image_num order`);
      t.same(ex.ints['center_id'], [rows[0]!.center_id], `${pid}: center`);
      t.same(ex.bytes['label']!.map(String), [rows[0]!.label], `${pid}: label`);
      // Expected tiles, in (image_num, y, x) order: the generator emits positions row-major (y, then x).
      const expected = rows.flatMap((r, i) => expectedPositions(spec(r.image_id)).map(([x, y]) => [i, x, y] as const));
      t.ok(expected.length > 0);
      const n = expected.length;
      t.same(ex.ints['num_tiles'], [n], `${pid}: ${n} tiles`);
      t.same(ex.ints['tile_image_index'], expected.map((e) => e[0]), `${pid}: tile_image_index`);
      t.same(ex.ints['tile_x'], expected.map((e) => e[1]), `${pid}: tile_x`);
      t.same(ex.ints['tile_y'], expected.map((e) => e[2]), `${pid}: tile_y`);
      for (const name of ['avg_embedding', 'max_embedding']) {
        const v = ex.floats[name]!;
        t.equal(v.length, n * 1280, `${pid}: ${name} is n*1280`);
        t.ok(v.every(Number.isFinite), `${pid}: ${name} finite`);
      }
      // Max pooling is never below average pooling.
      const avg = ex.floats['avg_embedding']!;
      t.ok(ex.floats['max_embedding']!.every((m, i) => m >= avg[i]! - 1e-4), `${pid}: max >= avg`);
      const hist = ex.floats['color_histogram']!;
      t.equal(hist.length, 4096);
      t.ok(Math.abs(hist.reduce((a, b) => a + b, 0) - 1) < 1e-3, `${pid}: histogram sums to 1`);
      t.ok(hist.every((h) => h >= 0));
    }
  });

  t.test('report.json: per-slide facts, the dropped patients and why', async (t) => {
    const report = await readReport(out2);
    t.equal(report.exit_code, 1);
    t.same(report.slides.map((s) => s.image_id).sort(), ['a0', 'a1', 'b0', 'c0', 'd0']);
    for (const s of report.slides) {
      const row = ROWS.find((r) => r.image_id === s.image_id)!;
      t.equal(s.patient_id, row.patient_id);
      const spec = SLIDES.find((x) => x.image_id === s.image_id);
      if (!spec) {
        t.equal(s.status, 'failed', 'c0 failed');
        t.match(s.error, /c0/, 'the error names the corrupt slide');
        continue;
      }
      t.equal(s.status, 'ok', `${s.image_id} ok`);
      t.equal(s.error, null);
      t.same([s.width, s.height], [spec.width, spec.height], `${s.image_id}: size`);
      t.equal(s.tiles_total, Math.floor(spec.width / T) * Math.floor(spec.height / T), `${s.image_id}: grid`);
      t.equal(s.tiles_kept, expectedPositions(spec).length, `${s.image_id}: kept`);
      t.ok(typeof s.seconds === 'number' && s.seconds >= 0, `${s.image_id}: seconds`);
    }
    t.equal(report.patients.written, 2);
    const dropped = new Map(report.patients.dropped.map((d) => [d.patient_id, d.reason]));
    t.same([...dropped.keys()].sort(), ['pb', 'pc']);
    t.match(dropped.get('pb'), /no tissue/);
    t.match(dropped.get('pc'), /failed: c0/);
    t.same(report.shards.map((s) => s.file).sort(), await shardFiles(out2));
    t.equal(report.shards.reduce((n, s) => n + s.records, 0), 2);
  });

  t.test('report.html exists and mentions every slide', async (t) => {
    const html = await readFile(join(out2, 'report.html'), 'utf8');
    for (const r of ROWS) t.match(html, `<td>${r.image_id}</td>`, r.image_id);
    t.match(html, /<svg class="slide"/);
  });

  t.test('identical bytes with 1 worker and with 2', async (t) => {
    const out1 = join(cwd, 'out-w1');
    const run1 = await runCli([...common, '--out', out1, '--workers', '1'], cwd);
    t.equal(run1.code, 1, run1.stderr);
    const a = await shardBytes(out1);
    const b = await shardBytes(out2);
    t.ok(a.size > 0);
    t.same([...a.keys()], [...b.keys()], 'same shard files');
    for (const [f, bytes] of a) t.ok(bytes.equals(b.get(f)!), `${f} byte-identical`);
  });

  t.test('a slide alone on 2 workers is read by both (shared), with the same bytes as --no-share', async (t) => {
    // 16 x 16 tiles of tissue: 32 runs of tiles (8 tiles each), far more than the 8 runs a joining worker needs left.
    const big = join(cwd, 'big');
    await makeSlides(join(big, 'slides'), [{ image_id: 'big', width: 16 * T, height: 16 * T, seed: 15, tissue: [{ kind: 'rect', x: 0, y: 0, w: 16 * T, h: 16 * T }] }]);
    await writeCsv(join(big, 'in.csv'), [{ image_id: 'big', center_id: 0, patient_id: 'pz', image_num: 0, label: '1' }], true);
    const args = ['--csv', join(big, 'in.csv'), '--slides', join(big, 'slides'), ...TILE_FLAGS, '--progress', 'none', '--workers', '2'];
    const shared = await runCli([...args, '--out', join(big, 'shared')], cwd);
    const alone = await runCli([...args, '--out', join(big, 'alone'), '--no-share'], cwd);
    t.equal(shared.code, 0, shared.stderr);
    t.equal(alone.code, 0, alone.stderr);
    t.match((await readReport(join(big, 'shared'))).slides, [{ image_id: 'big', status: 'ok', tiles_kept: 256, workers: 2 }], 'both workers read it');
    t.match((await readReport(join(big, 'alone'))).slides, [{ image_id: 'big', tiles_kept: 256, workers: 1 }]);
    const a = await shardBytes(join(big, 'shared'));
    const b = await shardBytes(join(big, 'alone'));
    t.same([...a.keys()], [...b.keys()], 'same shard files');
    for (const [f, bytes] of a) t.ok(bytes.equals(b.get(f)!), `${f} byte-identical`);
  });

  t.test('no label column: examples without a label feature; --max-tiles keeps the first tiles row-major', async (t) => {
    const rows = ROWS.filter((r) => r.image_id === 'a0' || r.image_id === 'd0');
    const csvNoLabel = join(cwd, 'nolabel.csv');
    await writeCsv(csvNoLabel, rows, false);
    const out = join(cwd, 'out-nolabel');
    const r = await runCli(['--csv', csvNoLabel, '--slides', slidesDir, ...TILE_FLAGS, '--progress', 'none', '--out', out, '--workers', '2', '--max-tiles', '7'], cwd);
    t.equal(r.code, 0, r.stderr);
    const examples = await readExamples(out);
    t.equal(examples.length, 2);
    for (const ex of examples) {
      t.notOk(ex.names.includes('label'), 'no label feature');
      t.ok(ex.names.includes('avg_embedding') && ex.names.includes('center_id'));
      const id = ex.bytes['image_ids']![0]!.toString();
      const first = expectedPositions(SLIDES.find((s) => s.image_id === id)!).slice(0, 7);
      t.same(ex.ints['num_tiles'], [7], `${id}: cut to 7 tiles`);
      t.same(ex.ints['tile_x'], first.map((p) => p[0]), `${id}: the first 7 (x)`);
      t.same(ex.ints['tile_y'], first.map((p) => p[1]), `${id}: the first 7 (y)`);
    }
  });

  t.test('--fail-fast: stops at the corrupt slide, exit 1, nothing written', async (t) => {
    const out = join(cwd, 'out-failfast');
    const r = await runCli([...common, '--out', out, '--workers', '1', '--fail-fast'], cwd);
    t.equal(r.code, 1, r.stderr);
    t.match(r.stderr, /slide c0 \(patient pc\) failed: .*E_SLIDE_FORMAT/);
    t.notMatch(r.stderr, /failed: not processed/, 'slides the stop left undone are counted, not listed as failures');
    t.match(r.stderr, /\d of 5 slide\(s\) finished and checkpointed/);
    t.equal(r.stderr.split('E_SLIDE_FORMAT').length, 2, 'the failure is said once');
    t.same(await shardFiles(out), [], 'no shards from a stopped run');
    t.match(r.stderr, `was left as it was (the run did not finish); this run's report: ${join(out, '.work', 'report.html')}`);
    t.equal((await readReport(join(out, '.work'))).exit_code, 1, 'the report of a run that did not finish: in the work folder');
  });

  t.test('inspect through the CLI: passes on the output, fails with file and offset on a flipped byte', async (t) => {
    const ok = await runCli(['inspect', out2], cwd);
    t.equal(ok.code, 0, ok.stderr);
    t.match(ok.stdout, /pa: tiles \d+/);
    const bad = join(cwd, 'out-flipped');
    await mkdir(bad);
    const [file] = await shardFiles(out2);
    await copyFile(join(out2, file!), join(bad, file!));
    const bytes = await readFile(join(bad, file!));
    const offset = 12 + 100; // inside the first record's data
    bytes[offset]! ^= 0x10;
    await writeFile(join(bad, file!), bytes);
    const r = await runCli(['inspect', bad], cwd);
    t.equal(r.code, 1);
    t.match(r.stderr, `${join(bad, file!)}: byte offset 12: data CRC mismatch`);
    const usage = await runCli(['inspect'], cwd);
    t.equal(usage.code, 2, 'inspect without a folder is a usage error');
  });

  t.test('split through the CLI', async (t) => {
    const splitOut = join(cwd, 'splits');
    const r = await runCli(['split', '--csv', csv, '--out', splitOut, '--fractions', '0.5,0.25,0.25', '--seed', '3'], cwd);
    t.equal(r.code, 0, r.stderr);
    const written = await Promise.all(['train', 'validation', 'evaluation'].map(async (n) => (await readFile(join(splitOut, `${n}.csv`), 'utf8').catch(() => '')).trim().split('\n')));
    const ids = written.flatMap((lines) => lines.slice(1).map((l) => l.split(',')[0]));
    t.same(ids.sort(), ROWS.map((r) => r.image_id).sort(), 'every row in exactly one split');
    for (const lines of written) t.equal(lines[0], 'image_id,center_id,patient_id,image_num,label', 'header kept');
    // A patient's slides stay together.
    const where = (id: string): number => written.findIndex((lines) => lines.some((l) => l.startsWith(`${id},`)));
    t.equal(where('a0'), where('a1'));
    const bad = await runCli(['split', '--csv', csv, '--out', splitOut, '--fractions', 'x'], cwd);
    t.equal(bad.code, 2, bad.stderr);
  });
}
