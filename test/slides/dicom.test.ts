import t from 'tap';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSlide } from '../../stages/slides/open.js';
import { openDicomSlide } from '../../stages/slides/backend-dicom.js';
import { resolveSlidePath, slideFileStamp } from '../../stages/slides/resolve.js';
import { generateSlide } from '../../stages/slides/synthetic.js';
import { DEFAULT_TILE_PARAMS } from '../../stages/slides/tile-params.js';
import { produceTiles } from '../../stages/produce-tiles.js';
import type { SlideReader } from '../../stages/slides/reader.js';
import type { SlideSummary, Tile } from '../../stages/types.js';
import { from, makeCtx } from '../helpers/ctx.js';
import { e2eUnavailable, readExamples, readReport, runCli, tempDir, TILE_FLAGS, writeCsv } from '../helpers/e2e.js';
import { cutFrames, EXPLICIT_LE, IMPLICIT_LE, JPEG_BASELINE, tiffLevels, writeInstance, type InstanceSpec } from '../helpers/dicom.js';

const dir = mkdtempSync(join(tmpdir(), 'dicom-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

// The real file the reader must handle: 42 frames of 500 x 500 over a 3236 x 2638 total pixel matrix.
const REAL_W = 3236;
const REAL_H = 2638;
const LONG_MANUFACTURER = `Generated-Scanner-Company ${'x'.repeat(100)}`; // LO allows 64 characters
const LONG_STATION = 'station-name-longer-than-sixteen'; // SH allows 16
const LONG_FRAMES = '+00000000000042'; // NumberOfFrames is IS: 12 characters at most

async function withSlide<T>(path: string, id: string, f: (s: SlideReader) => Promise<T>): Promise<T> {
  const s = await openSlide(path, id);
  try {
    return await f(s);
  } finally {
    await s.close();
  }
}

/** Largest per-byte difference between two regions, and the mean. */
function diff(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    if (d > max) max = d;
  }
  return { max, mean: sum / a.length };
}

/** Replaces a short-length explicit-VR string element's value in a file (no group lengths in dcmjs's data sets). */
function setExplicitString(path: string, group: number, element: number, value: string): void {
  const b = readFileSync(path);
  const tag = Buffer.alloc(4);
  tag.writeUInt16LE(group, 0);
  tag.writeUInt16LE(element, 2);
  const at = b.indexOf(tag, 132);
  if (at < 0) throw new Error('element not found');
  const v = Buffer.from(value.length % 2 === 1 ? `${value} ` : value, 'latin1');
  const head = Buffer.from(b.subarray(at, at + 8));
  head.writeUInt16LE(v.length, 6);
  writeFileSync(path, Buffer.concat([b.subarray(0, at), head, v, b.subarray(at + 8 + b.readUInt16LE(at + 6))]));
}

/** The empty-BOT variant of an encapsulated file: the Basic Offset Table's contents cut out (length 0). */
function withoutOffsetTable(src: string, dst: string): void {
  const b = readFileSync(src);
  const pd = b.indexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42])); // (7FE0,0010) OB
  const item = pd + 12; // tag 4, VR 2, reserved 2, length 4
  if (pd < 0 || b.readUInt16LE(item) !== 0xfffe || b.readUInt16LE(item + 2) !== 0xe000) throw new Error('no Basic Offset Table item found');
  const n = b.readUInt32LE(item + 4);
  const out = Buffer.concat([b.subarray(0, item + 4), Buffer.alloc(4), b.subarray(item + 8 + n)]);
  writeFileSync(dst, out);
}

const tiffReal = join(dir, 'real.tiff');
const tiffMulti = join(dir, 'multi.tiff');
const spec = (over: Partial<InstanceSpec> & Pick<InstanceSpec, 'path' | 'frames'>): InstanceSpec => ({
  width: REAL_W, height: REAL_H, frameWidth: 500, frameHeight: 500, transferSyntax: JPEG_BASELINE, ...over,
});

t.before(async () => {
  await generateSlide({ path: tiffReal, width: REAL_W, height: REAL_H, seed: 11 });
  // Tissue over some tiles of the 5 x 3 grid of 448-px tiles, none on others, edges partly covered.
  await generateSlide({ path: tiffMulti, width: 2340, height: 1400, seed: 5, tissue: [{ kind: 'ellipse', cx: 900, cy: 650, rx: 760, ry: 520 }, { kind: 'rect', x: 1900, y: 0, w: 300, h: 700 }] });
});

t.test('one file like the real one: JPEG baseline RGB, 42 frames of 500x500, no DimensionOrganizationType, values longer than their VR', async (t) => {
  const frames = await withSlide(tiffReal, 'tiff', (s) => cutFrames(s, 0, 500, 500, 95));
  t.equal(frames.length, 42, '7 x 6 frames');
  const path = join(dir, 'real.dcm');
  writeInstance(spec({ path, frames, organisation: undefined, oneFragment: true, extra: { Manufacturer: LONG_MANUFACTURER, StationName: LONG_STATION } }));
  setExplicitString(path, 0x0028, 0x0008, LONG_FRAMES); // dcmjs trims IS values, so the long one is set here
  const bytes = readFileSync(path);
  t.ok(bytes.includes(LONG_MANUFACTURER) && bytes.includes(LONG_STATION) && bytes.includes(LONG_FRAMES), 'the file really holds the over-long values');
  t.notOk(bytes.includes('TILED_FULL'), 'no DimensionOrganizationType in the file');
  withoutOffsetTable(path, join(dir, 'real-nobot.dcm'));
  for (const file of ['real.dcm', 'real-nobot.dcm']) {
    await withSlide(join(dir, file), 'real', async (s) => {
      t.equal(s.backend, 'dicom');
      t.same([s.width, s.height, s.levels.length], [REAL_W, REAL_H, 1], `${file}: one level of 3236 x 2638`);
      // Regions across frame corners (499/500) and in the partial last column and row, against the TIFF.
      for (const [x, y, w, h] of [[480, 480, 40, 40], [0, 0, 700, 300], [3000, 2400, 236, 238], [1490, 990, 30, 1100]] as const) {
        const dcm = await s.readRegion(0, x, y, w, h);
        const tif = await withSlide(tiffReal, 'tiff', (r) => r.readRegion(0, x, y, w, h));
        const d = diff(dcm, tif);
        t.ok(d.max <= 24 && d.mean < 1.5, `${file} region ${x},${y} ${w}x${h} matches the source pixels within JPEG error (max ${d.max}, mean ${d.mean.toFixed(2)})`);
      }
      const th = await s.thumbnail(16);
      t.same([th.image.width, th.image.height, th.level], [Math.floor(REAL_W / 16), Math.floor(REAL_H / 16), 0], 'thumbnail from level 0');
    });
  }
  // A big thumbnail source is resized in bands: the same size, nearly the same pixels as one resize.
  const banded = await openDicomSlide(join(dir, 'real.dcm'), 'b', { thumbnailWholePixels: 1000 });
  t.teardown(() => banded.close());
  for (const ds of [10, 7.3]) {
    const whole = await withSlide(join(dir, 'real.dcm'), 'w', (s) => s.thumbnail(ds));
    const band = await banded.thumbnail(ds);
    t.same([band.image.width, band.image.height], [whole.image.width, whole.image.height], `1/${ds}: same size`);
    const d = diff(band.image.data, whole.image.data);
    t.ok(d.max <= 8 && d.mean < 0.2, `1/${ds}: banded thumbnail within a few levels of the whole one (max ${d.max}, mean ${d.mean.toFixed(3)})`);
  }
  // Both frame-finding paths (offset table, fragment walk) give the same pixels.
  const a = await withSlide(join(dir, 'real.dcm'), 'a', (s) => s.readRegion(0, 0, 0, REAL_W, 600));
  const b = await withSlide(join(dir, 'real-nobot.dcm'), 'b', (s) => s.readRegion(0, 0, 0, REAL_W, 600));
  t.ok(Buffer.from(a).equals(Buffer.from(b)), 'Basic Offset Table and fragment walk agree');
});

/** Writes the synthetic TIFF's levels (its own JPEG tiles) as a series folder, plus a label and an overview. */
async function writeSeries(folder: string, opts: { oneFragment?: boolean; seriesOf?: (level: number) => string } = {}): Promise<number> {
  mkdirSync(folder, { recursive: true });
  const levels = await tiffLevels(tiffMulti);
  levels.forEach(({ ifd, frames }, i) => {
    writeInstance({
      path: join(folder, `level-${i}.dcm`), width: ifd.width, height: ifd.height, frameWidth: 256, frameHeight: 256, frames,
      transferSyntax: JPEG_BASELINE, photometric: 'YBR_FULL_422', instanceNumber: i + 1, oneFragment: opts.oneFragment, seriesUid: opts.seriesOf?.(i),
    });
  });
  const small = levels[levels.length - 1]!;
  for (const [n, kind] of [['label', 'LABEL'], ['overview', 'OVERVIEW']] as const) {
    writeInstance({ path: join(folder, `${n}.dcm`), width: 256, height: 256, frameWidth: 256, frameHeight: 256, frames: [small.frames[0]!], transferSyntax: JPEG_BASELINE, imageType: `DERIVED\\PRIMARY\\${kind}\\NONE`, instanceNumber: 90 });
  }
  return levels.length;
}

t.test('a multi-level series folder: levels by TotalPixelMatrix size, label and overview skipped, same pixels as the TIFF', async (t) => {
  const slides = join(dir, 'series');
  const nLevels = await writeSeries(join(slides, 'multi'));
  const path = await resolveSlidePath(slides, 'multi');
  t.equal(path, join(slides, 'multi'), 'the folder <image_id> is the slide');
  const tif = await openSlide(tiffMulti, 'tiff');
  t.teardown(() => tif.close());
  await withSlide(path, 'multi', async (s) => {
    t.equal(s.levels.length, nLevels);
    t.same(s.levels, tif.levels, 'the same levels as the TIFF');
    for (let l = 0; l < s.levels.length; l++) {
      const { width, height } = s.levels[l]!;
      const [x, y, w, h] = [Math.floor(width / 3), Math.floor(height / 3), Math.min(600, width - Math.floor(width / 3)), Math.min(300, height - Math.floor(height / 3))];
      const d = diff(await s.readRegion(l, x, y, w, h), await tif.readRegion(l, x, y, w, h));
      t.ok(d.max <= 2, `level ${l}: the TIFF's JPEG tiles decode to the same pixels (max difference ${d.max})`);
    }
  });
  // Also as `<image_id>.dcm` (a folder with the extension).
  const slides2 = join(dir, 'series2');
  await writeSeries(join(slides2, 'other.dcm'), { oneFragment: true });
  t.equal(await resolveSlidePath(slides2, 'other'), join(slides2, 'other.dcm'));
  await withSlide(join(slides2, 'other.dcm'), 'other', async (s) => t.equal(s.levels.length, nLevels));
});

async function collect(stage: AsyncIterable<Tile>): Promise<Tile[]> {
  const out: Tile[] = [];
  for await (const tile of stage) out.push(tile);
  return out;
}

t.test('tile counts of the DICOM slide equal those of the same pixels as a pyramidal TIFF (real ProduceTiles)', async (t) => {
  const slides = join(dir, 'tiles');
  await writeSeries(join(slides, 'as-dicom'));
  copyFileSync(tiffMulti, join(slides, 'as-tiff.tiff'));
  const run = async (image_id: string): Promise<{ tiles: Tile[]; summary: SlideSummary }> => {
    const summaries: SlideSummary[] = [];
    const tiles = await collect(produceTiles(DEFAULT_TILE_PARAMS, { onSummary: (s) => summaries.push(s) })(from([{ image_id, patient_id: 'P', image_num: 0, slidesDir: slides }]), makeCtx()));
    return { tiles, summary: summaries[0]! };
  };
  const dcm = await run('as-dicom');
  const tif = await run('as-tiff');
  t.equal(dcm.summary.backend, 'dicom');
  t.ok(tif.summary.tiles_kept > 0 && tif.summary.tiles_kept < tif.summary.tiles_total, `the slide has kept and dropped tiles (${tif.summary.tiles_kept} of ${tif.summary.tiles_total})`);
  t.same([dcm.summary.tiles_total, dcm.summary.tiles_kept, dcm.summary.thumbnailLevel], [tif.summary.tiles_total, tif.summary.tiles_kept, tif.summary.thumbnailLevel], 'same totals, kept tiles and thumbnail level');
  t.same(dcm.tiles.map((x) => [x.x, x.y]), tif.tiles.map((x) => [x.x, x.y]), 'the same tiles');
  t.ok(Buffer.from(dcm.summary.maskPng).equals(Buffer.from(tif.summary.maskPng)), 'the same tissue mask');
});

t.test('uncompressed frames, explicit and implicit little endian: exactly the source pixels', async (t) => {
  const src = await openSlide(tiffMulti, 'tiff');
  t.teardown(() => src.close());
  const frames = await cutFrames(src, 0, 512, 256);
  const { width, height } = src.levels[0]!;
  for (const [name, ts] of [['explicit', EXPLICIT_LE], ['implicit', IMPLICIT_LE]] as const) {
    const path = join(dir, `raw-${name}.dcm`);
    writeInstance({ path, width, height, frameWidth: 512, frameHeight: 256, frames, transferSyntax: ts });
    await withSlide(path, name, async (s) => {
      t.same([s.width, s.height], [width, height]);
      for (const [x, y, w, h] of [[0, 0, width, 300], [500, 250, 30, 20], [width - 100, height - 90, 100, 90]] as const) {
        t.ok(Buffer.from(await s.readRegion(0, x, y, w, h)).equals(Buffer.from(await src.readRegion(0, x, y, w, h))), `${name}: region ${x},${y} ${w}x${h} byte-identical`);
      }
    });
  }
});

t.test('TILED_SPARSE: frames placed by their per-frame positions, gaps white; off-grid positions refused', async (t) => {
  const src = await openSlide(tiffMulti, 'tiff');
  t.teardown(() => src.close());
  const { width, height } = src.levels[0]!;
  const all = await cutFrames(src, 0, 500, 500);
  const across = Math.ceil(width / 500);
  // Frames in reverse order, the second one left out.
  const order = all.map((_, i) => i).reverse().filter((i) => i !== 1);
  const pos = (i: number, dx = 0) => ({ PlanePositionSlideSequence: [{ ColumnPositionInTotalImagePixelMatrix: (i % across) * 500 + 1 + dx, RowPositionInTotalImagePixelMatrix: Math.floor(i / across) * 500 + 1 }] });
  const path = join(dir, 'sparse.dcm');
  writeInstance({ path, width, height, frameWidth: 500, frameHeight: 500, frames: order.map((i) => all[i]!), transferSyntax: EXPLICIT_LE, organisation: 'TILED_SPARSE', extra: { PerFrameFunctionalGroupsSequence: order.map((i) => pos(i)) } });
  await withSlide(path, 'sparse', async (s) => {
    t.ok(Buffer.from(await s.readRegion(0, 0, 0, 500, 500)).equals(Buffer.from(await src.readRegion(0, 0, 0, 500, 500))), 'frame (0,0) in place');
    t.ok(Buffer.from(await s.readRegion(0, 1000, 500, 500, 500)).equals(Buffer.from(await src.readRegion(0, 1000, 500, 500, 500))), 'frame (2,1) in place');
    t.ok((await s.readRegion(0, 500, 0, 500, 500)).every((v) => v === 255), 'the missing frame reads white');
  });
  const bad = join(dir, 'sparse-bad.dcm');
  writeInstance({ path: bad, width, height, frameWidth: 500, frameHeight: 500, frames: order.map((i) => all[i]!), transferSyntax: EXPLICIT_LE, organisation: 'TILED_SPARSE', extra: { PerFrameFunctionalGroupsSequence: order.map((i, k) => pos(i, k === 3 ? 7 : 0)) } });
  await t.rejects(openSlide(bad, 'bad'), { code: 'E_SLIDE_FORMAT', path: bad, message: /TILED_SPARSE frame 4 at column \d+, row \d+ is not on the 500x500 frame grid/ });
});

t.test('refused and damaged files: clear E_SLIDE_FORMAT naming the file', async (t) => {
  const levels = await tiffLevels(tiffMulti);
  const l0 = levels[0]!;
  const base = { width: l0.ifd.width, height: l0.ifd.height, frameWidth: 256, frameHeight: 256, frames: l0.frames };
  const j2k = join(dir, 'j2k.dcm');
  writeInstance({ ...base, path: j2k, transferSyntax: '1.2.840.10008.1.2.4.91' });
  await t.rejects(openSlide(j2k, 'j2k'), { code: 'E_SLIDE_FORMAT', path: j2k, message: /transfer syntax 1\.2\.840\.10008\.1\.2\.4\.91 \(JPEG 2000\) is not read/ });
  // A header bigger than the first read (256 KiB): the prefix grows until Pixel Data is reached.
  const bigHeader = join(dir, 'big-header.dcm');
  writeInstance({ ...base, path: bigHeader, transferSyntax: JPEG_BASELINE, extra: { ImageComments: 'c'.repeat(700_000) } });
  t.ok(readFileSync(bigHeader).indexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00])) > 700_000, 'Pixel Data starts past 700 kB');
  await withSlide(bigHeader, 'big-header', async (s) => t.same([s.width, s.height], [base.width, base.height], 'a 700 kB header is read'));
  const few = join(dir, 'few.dcm');
  writeInstance({ ...base, path: few, frames: l0.frames.slice(0, 5), transferSyntax: JPEG_BASELINE });
  await t.rejects(openSlide(few, 'few'), { code: 'E_SLIDE_FORMAT', path: few, message: /TILED_FULL needs 10x6 = 60 frames .* found 5/ });
  const notDicom = join(dir, 'not.dcm');
  writeFileSync(notDicom, Buffer.alloc(4096, 7));
  await t.rejects(openSlide(notDicom, 'not'), { code: 'E_SLIDE_FORMAT', path: notDicom, message: /not a DICOM Part 10 file/ });
  // Truncated in the pixel data: found at open (the last frame's fragments run past the end).
  const good = join(dir, 'good.dcm');
  writeInstance({ ...base, path: good, transferSyntax: JPEG_BASELINE });
  const cut = join(dir, 'cut.dcm');
  const bytes = readFileSync(good);
  writeFileSync(cut, bytes.subarray(0, bytes.length - 3000));
  await t.rejects(openSlide(cut, 'cut'), { code: 'E_SLIDE_FORMAT', path: cut, message: /runs past the end of the file \(truncated\?\)/ });
  // Frames are read one at a time: a damaged frame fails only the regions that need it.
  const broken = join(dir, 'broken.dcm');
  writeInstance({ ...base, path: broken, transferSyntax: JPEG_BASELINE, oneFragment: true });
  const copy = readFileSync(broken);
  // A frame whose bytes occur once (background tiles repeat), its JPEG header zeroed, the item structure intact.
  const k = l0.frames.findIndex((f, i) => i > 0 && copy.indexOf(f) === copy.lastIndexOf(f));
  const at = copy.indexOf(l0.frames[k]!);
  copy.fill(0, at + 2, at + 400);
  writeFileSync(broken, copy);
  const across = Math.ceil(base.width / 256);
  await withSlide(broken, 'broken', async (s) => {
    t.equal((await s.readRegion(0, 0, 0, 256, 256)).length, 256 * 256 * 3, 'frame 1 still reads');
    // The frame check (--jpeg-check) finds it before sharp: E_TILE_CORRUPT naming the frame and its level-0 box.
    const x = (k % across) * 256;
    const y = Math.floor(k / across) * 256;
    await t.rejects(s.readRegion(0, x, y, 256, 256), { code: 'E_TILE_CORRUPT', path: broken, tile: { level: 0, x, y }, message: new RegExp(`tile at level-0 x ${x}, y ${y} .*frame ${k + 1} of broken\\.dcm\\) is corrupt: `) });
  });
  // Unchecked, sharp refuses the frame: E_SLIDE_READ naming it.
  const unchecked = await openDicomSlide(broken, 'broken', { jpegCheck: 'off' });
  t.teardown(() => unchecked.close());
  await t.rejects(unchecked.readRegion(0, (k % across) * 256, Math.floor(k / across) * 256, 256, 256), { code: 'E_SLIDE_READ', path: broken, message: new RegExp(`level 0 frame ${k + 1}: `) });
  const onlyLabel = join(dir, 'label-only');
  mkdirSync(onlyLabel);
  writeInstance({ ...base, path: join(onlyLabel, 'label.dcm'), imageType: 'DERIVED\\PRIMARY\\LABEL\\NONE', transferSyntax: JPEG_BASELINE });
  await t.rejects(openSlide(onlyLabel, 'label-only'), { code: 'E_SLIDE_FORMAT', message: /no VOLUME image .*LABEL/ });
  const twoSeries = join(dir, 'two-series');
  await writeSeries(twoSeries, { seriesOf: (i) => `1.2.3.${i % 2}` });
  await t.rejects(openSlide(twoSeries, 'two'), { code: 'E_SLIDE_FORMAT', message: /the folder holds 2 series/ });
  const empty = join(dir, 'empty-folder');
  mkdirSync(empty);
  await t.rejects(openSlide(empty, 'empty'), { code: 'E_SLIDE_FORMAT', message: /holds no \.dcm files/ });
});

t.test('a file with the slide name in a format we do not read: E_SLIDE_UNSUPPORTED naming the file and the format', async (t) => {
  const slides = join(dir, 'unsupported');
  mkdirSync(slides);
  writeFileSync(join(slides, 'slide.isyntax'), Buffer.from('<iSyntax'));
  writeFileSync(join(slides, 'zeiss.czi'), Buffer.from('ZISRAWFILE'));
  copyFileSync(tiffMulti, join(slides, 'renamed.scan'));
  await t.rejects(resolveSlidePath(slides, 'slide'), { code: 'E_SLIDE_UNSUPPORTED', path: join(slides, 'slide.isyntax'), message: /found slide\.isyntax, Philips iSyntax.*not supported/ });
  await t.rejects(resolveSlidePath(slides, 'zeiss'), { code: 'E_SLIDE_UNSUPPORTED', message: /found zeiss\.czi, Zeiss CZI/ });
  await t.rejects(resolveSlidePath(slides, 'renamed'), { code: 'E_SLIDE_UNSUPPORTED', message: /found renamed\.scan, a BigTIFF with an extension we do not read/ });
  await t.rejects(resolveSlidePath(slides, 'absent'), { code: 'E_SLIDE_MISSING', message: /no slide file/ });
  writeFileSync(join(slides, 'case.7.svs'), Buffer.from('II*\0'));
  writeFileSync(join(slides, 'case.notes.txt'), 'x');
  await t.rejects(resolveSlidePath(slides, 'case'), { code: 'E_SLIDE_MISSING' }, "other slides' files (case.7.svs, case.notes.txt) are not slide case's");
  writeFileSync(join(slides, 'odd.v2'), 'not a slide');
  await t.rejects(resolveSlidePath(slides, 'odd'), { code: 'E_SLIDE_UNSUPPORTED', message: /found odd\.v2, '\.v2' files: this format is not supported/ });
  // Through the real stage, before any work on the slide.
  const stage = produceTiles(DEFAULT_TILE_PARAMS)(from([{ image_id: 'slide', patient_id: 'P', image_num: 0, slidesDir: slides }]), makeCtx());
  await t.rejects(collect(stage), { code: 'E_SLIDE_UNSUPPORTED', image_id: 'slide' });
});

t.test('a series folder is stamped by its .dcm files (checkpoint key), size first', async (t) => {
  const folder = join(dir, 'stamp');
  await writeSeries(join(folder, 's'));
  const a = await slideFileStamp(join(folder, 's'));
  const total = readdirSync(join(folder, 's')).reduce((n, f) => n + statSync(join(folder, 's', f)).size, 0);
  t.equal(Number(a.split(':')[0]), total, 'first field: the total size (largest-first orders by it)');
  writeFileSync(join(folder, 's', 'level-2.dcm'), Buffer.concat([readFileSync(join(folder, 's', 'level-2.dcm')), Buffer.alloc(2)]));
  t.not(await slideFileStamp(join(folder, 's')), a, 'a changed level changes the stamp');
  t.equal(await slideFileStamp(tiffMulti), `${statSync(tiffMulti).size}:${statSync(tiffMulti).mtimeMs}`, 'a file keeps its size:mtime stamp');
});

t.test('through the real job (compiled CLI): a DICOM series gives the records of the same pixels as a TIFF; a .czi fails alone with E_SLIDE_UNSUPPORTED', async (t) => {
  const unavailable = e2eUnavailable();
  if (unavailable !== undefined) return t.skip(unavailable);
  const cwd = await tempDir(t, 'dicom-e2e-');
  const slides = join(cwd, 'slides');
  await writeSeries(join(slides, 'dcm'));
  copyFileSync(tiffMulti, join(slides, 'tif.tiff'));
  writeFileSync(join(slides, 'bad.czi'), Buffer.from('ZISRAWFILE'));
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, [
    { image_id: 'tif', center_id: 0, patient_id: 'pt', image_num: 0, label: '1' },
    { image_id: 'dcm', center_id: 0, patient_id: 'pd', image_num: 0, label: '1' },
    { image_id: 'bad', center_id: 0, patient_id: 'pq', image_num: 0, label: '1' },
  ], true);
  const out = join(cwd, 'out');
  const r = await runCli(['--csv', csv, '--slides', slides, '--out', out, ...TILE_FLAGS, '--progress', 'none', '--workers', '1'], cwd);
  t.equal(r.code, 1, 'one slide failed: exit code 1');
  const report = await readReport(out);
  const by = new Map(report.slides.map((s) => [s.image_id, s]));
  t.match(by.get('dcm'), { status: 'ok', backend: 'dicom' });
  t.ok(by.get('tif')!.tiles_kept! > 0, `the TIFF keeps tiles (${by.get('tif')!.tiles_kept})`);
  t.same([by.get('dcm')!.tiles_total, by.get('dcm')!.tiles_kept], [by.get('tif')!.tiles_total, by.get('tif')!.tiles_kept], 'same tile counts as the TIFF');
  t.match(by.get('bad'), { status: 'failed', code: 'E_SLIDE_UNSUPPORTED', error: /bad\.czi, Zeiss CZI/ });
  t.match(by.get('dcm'), { format: 'dicom', tile_level: 0 });
  t.match(by.get('tif'), { format: 'bigtiff', backend: 'sharp', tile_level: 0 });
  const examples = await readExamples(out);
  t.equal(examples.length, 2, 'one record per written patient');
  const [a, b] = examples;
  const features = a!.names.filter((n) => a!.floats[n] !== undefined);
  t.ok(features.length > 0, `float features compared: ${features.join(', ')}`);
  for (const n of features) t.same(a!.floats[n], b!.floats[n], `${n}: the same values from the DICOM and the TIFF`);
});
