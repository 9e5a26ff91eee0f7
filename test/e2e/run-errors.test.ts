/**
 * Errors during a run, through the compiled CLI: a worker killed once shows in the report as a slide that took two
 * attempts, with the first one's cause; thousands of missing slides give a short stderr summary (counts by code,
 * the first few in full), a lean report.json that still lists every slide, and a report.html of bounded size.
 */
import t from 'tap';
import { statSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import sharp from 'sharp';
import { parseTiff } from '../../stages/slides/tiff-parse.js';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { holderOf } from '../helpers/proc.js';
import { e2eUnavailable, makeSlides, readReport, runCli, startCli, tempDir, TILE, TILE_FLAGS, waitFor, writeCsv } from '../helpers/e2e.js';

/**
 * Overwrites the entropy-coded data of JPEG tile / strip `index` of the first page, from 100 bytes past its start of
 * scan up to its end-of-image marker, with zeros: libjpeg reads it as "Corrupt JPEG data: premature end of data segment".
 */
async function corruptJpeg(file: string, index: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const ifd = (await parseTiff(fh)).ifds[0]!;
    const offset = ifd.offsets[index]!;
    const jpeg = Buffer.alloc(ifd.byteCounts[index]!);
    await fh.read(jpeg, 0, jpeg.length, offset);
    const sos = jpeg.indexOf(Buffer.from([0xff, 0xda]));
    if (sos < 0) throw new Error(`no start of scan in JPEG ${index} of ${file}`);
    jpeg.fill(0, sos + 2 + jpeg.readUInt16BE(sos + 2) + 100, jpeg.length - 2);
    await fh.write(jpeg, 0, jpeg.length, offset);
  } finally {
    await fh.close();
  }
}

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  // One working directory for the file: the demo models and the LUT are built once, in its .cache.
  const cwd = await tempDir(t, 'e2e-run-errors-');
  const T = TILE.tileSize;

  t.test('a slide whose worker is killed once succeeds on the retry: 2 attempts, the first one\'s cause in the report', async (t) => {
    const slidesDir = join(cwd, 'slides-kill');
    // 16 x 16 kept tiles: seconds of work, so the kill lands while the slide is read.
    await makeSlides(slidesDir, [{ image_id: 'big', width: 16 * T, height: 16 * T, seed: 7, tissue: [{ kind: 'rect', x: 0, y: 0, w: 16 * T, h: 16 * T }] }]);
    const csv = join(cwd, 'kill.csv');
    await writeCsv(csv, [{ image_id: 'big', center_id: 0, patient_id: 'p0', image_num: 0, label: '1' }], true);
    const out = join(cwd, 'out-kill');
    const run = startCli(['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--workers', '1', '--no-share', '--progress', 'none'], cwd);
    const slideFile = join(slidesDir, 'big.tiff');
    let ended = false;
    void run.done.then(() => (ended = true));
    const worker = await waitFor('a worker process reading the slide', () => {
      if (ended) throw new Error('the run ended before its worker could be killed');
      return holderOf(run.child.pid!, slideFile);
    });
    process.kill(worker, 'SIGKILL');
    const r = await run.done;
    t.equal(r.code, 0, r.stderr);
    const s = (await readReport(out)).slides[0]!;
    t.equal(s.status, 'ok');
    t.equal(s.attempts, 2, 'two attempts');
    t.equal(s.failed_attempts?.length, 1, 'one failed attempt');
    t.equal(s.failed_attempts?.[0]?.attempt, 1);
    t.equal(s.failed_attempts?.[0]?.code, 'E_WORKER_CRASH');
    t.match(s.failed_attempts?.[0]?.error, new RegExp(`worker process ${worker} died .*SIGKILL`), 'the first attempt\'s cause: its process was killed');
    t.match(r.stderr, /slide big: ok after 2 attempt\(s\) \(attempt 1: E_WORKER_CRASH worker process \d+ died/, 'stderr says so too');
  });

  t.test('thousands of missing slides: stderr summarised, report.json lean and complete, report.html bounded', async (t) => {
    const n = 3000;
    const csv = join(cwd, 'missing.csv');
    const lines = ['image_id,center_id,patient_id,image_num,label', ...Array.from({ length: n }, (_, i) => `gone-${i},0,p${i},0,1`)];
    await writeFile(csv, lines.join('\n') + '\n');
    const slidesDir = join(cwd, 'slides-none');
    await makeSlides(slidesDir, []);
    const out = join(cwd, 'out-missing');
    const r = await runCli(['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--progress', 'none'], cwd);
    t.equal(r.code, 1, 'failed slides: exit code 1');
    t.ok(Buffer.byteLength(r.stderr) < 4096, `stderr stays short (${Buffer.byteLength(r.stderr)} bytes for ${n} failures)`);
    t.match(r.stderr, `${n} slide(s) failed: ${n} E_SLIDE_MISSING`, 'counts by code');
    t.equal(r.stderr.match(/^ {2}slide gone-\d+ \(patient p\d+\) failed: E_SLIDE_MISSING: slide "gone-\d+" \(.+\): no slide file \(tried .+\)$/gm)?.length, 5, 'the first five in full');
    // No patient written: the dataset folder is left as it was and the run's report goes to the work folder.
    const reports = join(out, '.work');
    t.match(r.stderr, `... and ${n - 5} more E_SLIDE_MISSING; see ${join(reports, 'report.json')}`);
    t.ok(Buffer.byteLength(r.stdout) < 2048, `stdout stays short too (${Buffer.byteLength(r.stdout)} bytes)`);

    const jsonBytes = statSync(join(reports, 'report.json')).size;
    // Before: ~670 bytes per slide (each slide's nested error text, every field on its own line).
    t.ok(jsonBytes < 400 * n, `report.json is lean: ${(jsonBytes / n).toFixed(0)} bytes per slide (its row and its dropped patient)`);
    const report = await readReport(reports);
    t.equal(report.slides.length, n, 'every slide is in report.json');
    t.ok(report.slides.every((s, i) => s.image_id === `gone-${i}` && s.status === 'failed' && s.code === 'E_SLIDE_MISSING' && s.error === `gone-${i}: no slide file`), 'each with its code and a short message');
    t.equal(report.failures?.length, 1);
    t.equal(report.failures?.[0]?.count, n);
    t.match(report.failures?.[0]?.first[0]?.error, /^E_SLIDE_MISSING: slide "gone-\d+" \(.+\): no slide file \(tried \.svs, /, 'the full message, once per code');

    const htmlBytes = statSync(join(reports, 'report.html')).size;
    t.ok(htmlBytes < 200_000, `report.html is bounded (${htmlBytes} bytes)`);
    const html = await import('node:fs/promises').then((fs) => fs.readFile(join(reports, 'report.html'), 'utf8'));
    t.match(html, `<h3>E_SLIDE_MISSING: ${n} slide(s)</h3>`, 'failed slides summarised by code');
    t.match(html, `${n - 500} more slide(s) not listed`, 'the slide table is capped, with a note');
    t.match(html, `<h2>Dropped patients (${n})</h2>`);
  });

  t.test('corrupt JPEG data: the slide fails naming the slide and the tile (tiled: E_TILE_CORRUPT; strips: the decoder\'s words)', async (t) => {
    const slidesDir = join(cwd, 'slides-corrupt');
    const tissue = [{ kind: 'rect' as const, x: 0, y: 0, w: 8 * T, h: 8 * T }];
    await makeSlides(slidesDir, [{ image_id: 'tiled', width: 8 * T, height: 8 * T, seed: 3, tissue }, { image_id: 'clean', width: 8 * T, height: 8 * T, seed: 3, tissue }]);
    // A tiled JPEG TIFF (the generator's, 256 px tiles, 7 across): level-0 tile 5 (x 1280, y 0) corrupted.
    await corruptJpeg(join(slidesDir, 'tiled.tiff'), 5);
    // A strip JPEG TIFF (one level, 256-row strips): one strip corrupted.
    const w = 8 * T;
    const pixels = Buffer.alloc(w * w * 3);
    for (let i = 0; i < pixels.length; i++) pixels[i] = 60 + ((i * 7 + (i >> 11)) % 120);
    await sharp(pixels, { raw: { width: w, height: w, channels: 3 } }).tiff({ compression: 'jpeg', quality: 85, tile: false }).toFile(join(slidesDir, 'strips.tiff'));
    await corruptJpeg(join(slidesDir, 'strips.tiff'), 2);
    const csv = join(cwd, 'corrupt.csv');
    await writeCsv(csv, ['tiled', 'clean', 'strips'].map((id, i) => ({ image_id: id, center_id: 0, patient_id: `p${i}`, image_num: 0, label: '1' })), true);
    const out = join(cwd, 'out-corrupt');
    const r = await runCli(['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--workers', '2', '--progress', 'none'], cwd);
    t.equal(r.code, 1, 'failed slides: exit code 1');
    const slides = new Map((await readReport(out)).slides.map((s) => [s.image_id, s]));
    // libvips 8.17 (sharp 0.34) decodes a JPEG tile of a tiled TIFF itself and says nothing of corrupt entropy data;
    // the tile check (--jpeg-check, default quick) finds it before the decode.
    const tiled = slides.get('tiled')!;
    t.equal(tiled.status, 'failed', 'the tiled slide fails');
    t.equal(tiled.code, 'E_TILE_CORRUPT');
    t.match(tiled.error, /^tiled\.tiff: tile at level-0 x 1280, y 0 \(256x256 px; JPEG tile 5 of TIFF page 0\) is corrupt: Corrupt JPEG data: premature end of data segment$/, 'the slide, the tile, what is wrong');
    t.equal(slides.get('clean')!.status, 'ok', 'its clean twin is read');
    // Strips go through libtiff's JPEG codec, whose warning sharp turns into an error (failOn 'warning').
    const strips = slides.get('strips')!;
    t.equal(strips.status, 'failed');
    t.equal(strips.code, 'E_SLIDE_READ');
    t.match(strips.error, /^strips\.tiff: .*Corrupt JPEG data: premature end of data segment/, 'the decoder\'s words, on one line');
    t.match(r.stderr, /^2 slide\(s\) failed: 1 E_SLIDE_READ, 1 E_TILE_CORRUPT$/m, 'counted by code');
    t.match(r.stderr, /^ {2}slide tiled \(patient p0\) failed: E_TILE_CORRUPT: slide "tiled" \(.+tiled\.tiff\): tile at level-0 x 1280, y 0 .*is corrupt: Corrupt JPEG data/m, 'stderr names the slide and the tile');
    t.match(r.stderr, /^ {2}slide strips \(patient p2\) failed: E_SLIDE_READ: slide "strips" \(.+strips\.tiff\): .*Corrupt JPEG data/m, 'stderr names the slide');
    const unattributed = r.stderr.split('\n').filter((l) => /Corrupt JPEG|VipsJpeg/.test(l) && !/slide (strips|tiled)\b/.test(l));
    t.same(unattributed, [], 'no decoder line without its slide');

    // --jpeg-check off (libvips' silent decode) is tested on the reader: test/slides/tile-check.test.ts.
    const usage = await runCli(['--csv', csv, '--slides', slidesDir, '--out', join(cwd, 'out-corrupt-usage'), '--jpeg-check', 'some'], cwd);
    t.equal(usage.code, 2, 'a bad --jpeg-check is a usage error');
    t.match(usage.stderr, '--jpeg-check must be quick, full or off, got "some"');
  });

  t.test('--workers above the cores and a small --tile-budget: warned before the run; below one tile per worker: exit 2', async (t) => {
    const csv = join(cwd, 'one-missing.csv');
    await writeCsv(csv, [{ image_id: 'nowhere', center_id: 0, patient_id: 'p0', image_num: 0, label: '1' }], true);
    const workers = availableParallelism() + 1;
    const base = ['--csv', csv, '--slides', join(cwd, 'slides-none'), ...TILE_FLAGS, '--progress', 'none', '--workers', String(workers)];
    const r = await runCli([...base, '--out', join(cwd, 'out-warn'), '--tile-budget', String(workers)], cwd);
    t.equal(r.code, 1, 'the run ran (its one slide is missing)');
    t.match(r.stderr, `warning: --workers ${workers} is more than the ${availableParallelism()} core(s) of this machine`);
    t.match(r.stderr, `warning: --tile-budget ${workers} leaves each of the ${workers} worker(s) 1 tile(s), fewer than a group (--group-size 8)`);
    t.equal((await readReport(join(cwd, 'out-warn', '.work'))).warnings?.length, 2, 'report.json keeps them (in the work folder: no patient was written)');
    const usage = await runCli([...base, '--out', join(cwd, 'out-usage'), '--tile-budget', String(workers - 1)], cwd);
    t.equal(usage.code, 2, 'a usage error');
    t.match(usage.stderr, `--tile-budget ${workers - 1} is below --workers ${workers}: each worker holds at least 1 tile, so the run needs --tile-budget ${workers} or more`);
  });
}
