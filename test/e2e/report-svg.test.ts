/**
 * The run report's pictures of the run, on a real run through the compiled CLI made to have a retried slide (its
 * worker killed once), a failed one (a file that is no TIFF) and, sharing being on, workers joining a running
 * slide: the timeline SVG has one lane per worker process and one bar per attempt or join, marked as report.json
 * says; the QC pictures are files in report-files/ listed in the manifest; and headless Chromium renders the page
 * at 1400 px and at phone width (390 px) with the timeline's colours drawn and nothing past the right edge.
 */
import t from 'tap';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { holderOf } from '../helpers/proc.js';
import { BAR_COLOURS, barKind, type BarKind } from '../../stages/report/timeline-svg.js';
import { barsOf } from '../../stages/report/timeline.js';
import { readManifest } from '../../stages/dataset/manifest.js';
import { chromiumPath, probeLayout, screenshot } from '../helpers/chromium.js';
import { e2eUnavailable, makeSlides, readReport, runCli, startCli, tempDir, TILE, TILE_FLAGS, waitFor, writeCsv } from '../helpers/e2e.js';

/** Pixels of the picture's columns [x0, x1) within `tol` of each channel of `hex`. */
function countColour(img: { data: Buffer; width: number; height: number; channels: number }, hex: string, x0: number, x1: number, tol = 6): number {
  const c = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  let n = 0;
  for (let y = 0; y < img.height; y++) {
    for (let x = x0; x < x1; x++) {
      const o = (y * img.width + x) * img.channels;
      if (Math.abs(img.data[o]! - c[0]!) <= tol && Math.abs(img.data[o + 1]! - c[1]!) <= tol && Math.abs(img.data[o + 2]! - c[2]!) <= tol) n++;
    }
  }
  return n;
}

/** Pixels of columns [x0, x1) that are not (near) white. */
function inked(img: { data: Buffer; width: number; height: number; channels: number }, x0: number, x1: number): number {
  let n = 0;
  for (let y = 0; y < img.height; y++) for (let x = x0; x < x1; x++) if (img.data[(y * img.width + x) * img.channels]! < 235) n++;
  return n;
}

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'e2e-report-svg-');
  const T = TILE.tileSize;
  const slidesDir = join(cwd, 'slides');
  const full = (n: number) => [{ kind: 'rect' as const, x: 0, y: 0, w: n * T, h: n * T }];
  await makeSlides(slidesDir, [
    { image_id: 'big', width: 14 * T, height: 14 * T, seed: 7, tissue: full(14) },
    { image_id: 'mid', width: 5 * T, height: 5 * T, seed: 8, tissue: full(5) },
    { image_id: 'small', width: 3 * T, height: 3 * T, seed: 9, tissue: full(3) },
  ]);
  await writeFile(join(slidesDir, 'bad.tiff'), 'this is not a TIFF file\n'.repeat(40));
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, ['big', 'mid', 'small', 'bad'].map((id, i) => ({ image_id: id, center_id: 0, patient_id: `p${i}`, image_num: 0, label: '1' })), true);
  const out = join(cwd, 'out');
  const run = startCli(['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--workers', '2', '--progress', 'none'], cwd);
  let ended = false;
  void run.done.then(() => (ended = true));
  const killed = await waitFor('a worker process reading the big slide', () => {
    if (ended) throw new Error('the run ended before its worker could be killed');
    return holderOf(run.child.pid!, join(slidesDir, 'big.tiff'));
  }, 300_000);
  process.kill(killed, 'SIGKILL');
  const result = await run.done;
  const report = await readReport(out);
  const html = await readFile(join(out, 'report.html'), 'utf8');
  const timeline = report.timeline!;

  t.test('the run: big retried, bad failed, the dataset committed with its report', async (t) => {
    t.equal(result.code, 1, `exit 1: a slide failed (stderr: ${result.stderr.slice(0, 500)})`);
    const bySlide = new Map(report.slides.map((s) => [s.image_id, s]));
    t.match(bySlide.get('big'), { status: 'ok', attempts: 2 });
    t.match(bySlide.get('bad'), { status: 'failed' });
    t.ok(timeline, 'report.json has a timeline');
  });

  t.test('the timeline SVG: a lane per worker process, a bar per attempt or join, marks as report.json says', async (t) => {
    const svg = /<svg class="chart timeline"[\s\S]*?<\/svg>/.exec(html)?.[0] ?? '';
    t.ok(svg, 'drawn');
    const lanes = [...svg.matchAll(/<g class="lane" data-pid="(\d+)">/g)].map((m) => Number(m[1]));
    t.same(lanes, timeline.lanes.map((l) => l.pid), 'one lane per worker process');
    t.ok(new Set(lanes).size >= 3, `${lanes.length} lanes: two workers and the one that replaced the killed one`);
    t.ok(lanes.includes(killed), 'the killed worker has its lane');
    t.equal(svg.match(/<path class="killed"/g)?.length, 1, 'one cross: the process that died running a slide (not those stopped at the end)');
    t.match(svg, new RegExp(`worker ${killed} died while running big \\(killed by SIGKILL\\)`));
    const drawn = [...svg.matchAll(/<rect class="bar (\w+)"/g)].map((m) => m[1] as BarKind);
    t.same(drawn, barsOf(timeline).map(barKind), 'one bar per kept bar, in order');
    for (const s of report.slides) {
      const bars = barsOf(timeline).filter((b) => b.slide === s.image_id);
      t.equal(bars.filter((b) => !b.join).length, s.attempts ?? 0, `${s.image_id}: a bar per attempt`);
      t.equal(bars.filter((b) => b.join && b.attempt === s.attempts).length, (s.workers ?? 1) - 1, `${s.image_id}: a join bar per worker that joined the last attempt`);
    }
    const big = barsOf(timeline).filter((b) => b.slide === 'big' && !b.join);
    t.same(big.map((b) => [b.attempt, b.outcome]), [[1, 'retried'], [2, 'ok']].sort(), 'big: attempt 1 retried, 2 ok');
    t.equal(timeline.lanes[big.find((b) => b.attempt === 1)!.lane]!.pid, killed, 'the retried attempt on the killed worker\'s lane');
    t.same(barsOf(timeline).filter((b) => b.slide === 'bad').map((b) => b.outcome), ['failed'], 'bad: a failed bar');
    t.ok(timeline.tiles.values.reduce((a, v) => a + v, 0) >= report.tiles_written, 'every written tile counted in the series (the retried attempt\'s too)');
    t.match(html, /<svg class="chart throughput"/);
    t.match(html, /<div class="stages-chart">[\s\S]*PerSlide\/EmbedTiles/);
  });

  t.test('the QC pictures are files in report-files/, listed in the manifest; the HTML has none inline', async (t) => {
    t.notMatch(html, 'data:image');
    const hrefs = [...html.matchAll(/<image href="(report-files\/[^"]+)"/g)].map((m) => m[1]!);
    t.equal(hrefs.length, 6, 'thumbnail and mask of the three slides that have a tile selection');
    const manifest = await readManifest(out);
    const listed = new Map(manifest!.files.map((f) => [f.file, f]));
    for (const h of hrefs) t.equal(listed.get(h)?.bytes, (await stat(join(out, h))).size, `${h} listed with its size`);
    const inspect = await runCli(['inspect', out], cwd);
    t.equal(inspect.code, 0, `inspect passes (${inspect.stdout.slice(-300)}${inspect.stderr})`);
    t.ok(html.length < 60_000, `report.html: ${html.length} characters`);
  });

  const chromium = chromiumPath();
  t.test('headless Chromium at 1400 px and at 390 px: drawn, the timeline\'s colours, nothing past the right edge', { skip: chromium === undefined ? 'chromium is not installed (apt-get install chromium); the structural tests above still ran' : false }, async (t) => {
    const page = join(out, 'report.html');
    const kinds = new Set(barsOf(timeline).map(barKind));
    for (const width of [1400, 390]) {
      const probe = await probeLayout(chromium!, page, html, width);
      t.equal(probe.clientWidth, width, `${width}: laid out ${width} px wide`);
      t.ok(probe.scrollWidth <= probe.clientWidth, `${width}: no horizontal overflow (content ${probe.scrollWidth} px)`);
      t.same(probe.overflowing, [], `${width}: no element past the right edge`);
      t.equal(probe.charts.length, 2, `${width}: timeline and throughput charts`);
      for (const w of probe.charts) t.ok(w > 0.8 * (Math.min(width, 1100 + 64) - 64) && w <= width, `${width}: a chart ${w} px wide fills the page`);

      const png = join(cwd, `shot-${width}.png`);
      await screenshot(chromium!, page, width, 1800, png);
      if (process.env.REPORT_SHOTS) await writeFile(join(process.env.REPORT_SHOTS, `shot-${width}.png`), await readFile(png));
      const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const img = { data, width: info.width, height: info.height, channels: info.channels };
      t.ok(inked(img, 0, width) > 0.02 * width * info.height, `${width}: not blank`);
      // Bars narrower than a few pixels at phone width are all edge (antialiased): count colours where bars are wide.
      const mustShow: BarKind[] = width >= 1000 ? [...kinds] : (['ok', 'retried'] as BarKind[]);
      for (const k of mustShow) t.ok(countColour(img, BAR_COLOURS[k], 0, width) >= 12, `${width}: the ${k} bars' colour ${BAR_COLOURS[k]} is drawn (${countColour(img, BAR_COLOURS[k], 0, width)} px)`);
      t.ok(inked(img, width - 5, width) <= 0.01 * 5 * info.height, `${width}: the page's right edge is not cut (its last 5 columns are blank)`);
      if (width < info.width) t.equal(inked(img, width, info.width), 0, `${width}: nothing drawn right of the page`);
    }
  });
}
