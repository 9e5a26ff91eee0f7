/**
 * Issue 20, items 3-5: non-brightfield images refused (E_SLIDE_NOT_BRIGHTFIELD) or mapped (allowNonRgb) the same
 * way for thumbnail and tiles; OME-TIFF SubIFD pyramids used as levels; the thumbnail of a level needing a
 * non-power-of-two stretch made in bands within a counted limit; format, levels and stated scale per slide.
 * Test files are written by test/helpers/tiff-pages.ts (uncompressed, every tag as the test says) and dcmjs.
 */
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { openSlide, type OpenSlideOptions } from '../../stages/slides/open.js';
import { resolveSlidePath } from '../../stages/slides/resolve.js';
import { thumbnailBands, thumbnailPlan, type ThumbnailOptions, type ThumbnailStats } from '../../stages/slides/thumbnail-bands.js';
import { DEFAULT_TILE_PARAMS } from '../../stages/slides/tile-params.js';
import { produceTiles } from '../../stages/produce-tiles.js';
import type { SlideSummary, Tile } from '../../stages/types.js';
import { from, makeCtx } from '../helpers/ctx.js';
import { omeXml, writeTiffPages, type PageSpec } from '../helpers/tiff-pages.js';
import { writeInstance, JPEG_BASELINE, EXPLICIT_LE } from '../helpers/dicom.js';

const dir = mkdtempSync(join(tmpdir(), 'formats-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const CMU = fileURLToPath(new URL('../../../shared/testdata/slides/cmu-1-small-region.svs', import.meta.url));

// 2400 x 1804: the /16 thumbnail is 150 x 112; a /16 level of floor(1804/16) = 112 rows covers 111.3 thumbnail rows
// (thumbnailSource: 111), so it is stretched 111 -> 112: the non-power-of-two case.
const W = 2400;
const H = 1804;
const DS = [1, 2, 4, 16];

/** Level-0 grey in 16 bits: 512-px checks of tissue (dark) and background (light), with a ramp inside each. */
function grey16(x: number, y: number): number {
  const tissue = ((x >> 9) + (y >> 9)) % 2 === 0;
  return tissue ? 20000 + ((x * 7 + y * 3) % 12000) : 60000 + ((x + y) % 4000);
}

/** Level-0 RGB: the same checks in H&E-like colours. */
function rgb8(x: number, y: number, s: number): number {
  const tissue = ((x >> 9) + (y >> 9)) % 2 === 0;
  return tissue ? [170, 90, 160][s]! + ((x + y) % 20) : [242, 240, 244][s]!;
}

/** A level of a pyramid: the level-0 function sampled at every ds-th pixel. */
function level(ds: number, samples: number, bits: 8 | 16, f: (x: number, y: number, s: number) => number, extra: Partial<PageSpec> = {}): PageSpec {
  return { width: Math.floor(W / ds), height: Math.floor(H / ds), samples, bits, tile: 128, sample: (x, y, s) => f(x * ds, y * ds, s), ...extra };
}

async function run(slidesDir: string, image_id: string, slide: OpenSlideOptions = {}, thumbnail: ThumbnailOptions = {}): Promise<{ tiles: Tile[]; summary: SlideSummary }> {
  const summaries: SlideSummary[] = [];
  const tiles: Tile[] = [];
  const stage = produceTiles(DEFAULT_TILE_PARAMS, { slide, thumbnail, onSummary: (s) => summaries.push(s) });
  for await (const tile of stage(from([{ image_id, patient_id: 'P', image_num: 0, slidesDir }]), makeCtx())) tiles.push({ ...tile, pixels: Uint8Array.from(tile.pixels) });
  return { tiles, summary: summaries[0]! };
}

/** Same selection and the same tile pixels. */
function sameSlide(t: Tap.Test, a: { tiles: Tile[]; summary: SlideSummary }, b: { tiles: Tile[]; summary: SlideSummary }, what: string): void {
  t.ok(b.summary.tiles_kept > 0 && b.summary.tiles_kept < b.summary.tiles_total, `${what}: kept and dropped tiles (${b.summary.tiles_kept} of ${b.summary.tiles_total})`);
  t.same([a.summary.tiles_total, a.summary.tiles_kept, a.summary.thumbnailLevel], [b.summary.tiles_total, b.summary.tiles_kept, b.summary.thumbnailLevel], `${what}: same totals, kept tiles and thumbnail level`);
  t.same(a.summary.positions, b.summary.positions, `${what}: same positions`);
  t.ok(Buffer.from(a.summary.maskPng).equals(Buffer.from(b.summary.maskPng)), `${what}: same tissue mask`);
  t.ok(a.tiles.length === b.tiles.length && a.tiles.every((x, i) => Buffer.from(x.pixels).equals(Buffer.from(b.tiles[i]!.pixels))), `${what}: the same tile pixels`);
}

const slides = join(dir, 'slides');
mkdirSync(slides);
// Brightfield RGB: an OME-TIFF whose levels are page 0's SubIFDs, and the same pixels as a plain main-chain pyramid.
const rgbLevels = DS.map((ds) => level(ds, 3, 8, rgb8));
writeTiffPages(join(slides, 'sub.ome.tiff'), [{ ...rgbLevels[0]!, description: omeXml(W, H, ['RGB'], { samples: 3, type: 'uint8', mpp: 0.25, magnification: 40 }), subIfds: rgbLevels.slice(1) }]);
writeTiffPages(join(slides, 'plain.tiff'), rgbLevels);
// 16-bit grey, single level; and the 8-bit RGB it maps to (v >> 8, replicated).
writeTiffPages(join(slides, 'grey16.tiff'), [level(1, 1, 16, grey16)]);
const mapped = (x: number, y: number): number => grey16(x, y) >> 8;
writeTiffPages(join(slides, 'grey16-as-rgb.tiff'), [level(1, 3, 8, mapped)]);
// A 4-channel 16-bit multiplex OME-TIFF (channels as pages, each with its SubIFD pyramid); channel c is grey16 + c.
const CHANNELS = ['DAPI', 'CD3', 'CD8', 'PanCK'];
const channel = (c: number) => (x: number, y: number): number => Math.min(65535, grey16(x, y) + c * 97);
writeTiffPages(join(slides, 'multiplex.ome.tif'), CHANNELS.map((_, c) => {
  const lv = DS.map((ds) => level(ds, 1, 16, channel(c)));
  return { ...lv[0]!, ...(c === 0 && { description: omeXml(W, H, CHANNELS) }), subIfds: lv.slice(1) };
}));
writeTiffPages(join(slides, 'multiplex-as-rgb.tiff'), DS.map((ds) => level(ds, 3, 8, (x, y) => channel(0)(x, y) >> 8)));

t.test('OME-TIFF SubIFDs are the levels: same levels, thumbnail level and tiles as the same pixels in a plain pyramid', async (t) => {
  const ome = await openSlide(join(slides, 'sub.ome.tiff'), 'sub');
  const plain = await openSlide(join(slides, 'plain.tiff'), 'plain');
  t.teardown(async () => {
    await ome.close();
    await plain.close();
  });
  t.same(ome.levels.map((l) => [l.width, l.height]), DS.map((ds) => [Math.floor(W / ds), Math.floor(H / ds)]), 'page 0 and its three SubIFDs');
  t.same(ome.levels, plain.levels);
  const plan = thumbnailPlan(ome, 16);
  t.same([plan.level, plan.method, plan.source.height, plan.height], [3, 'stretch', 111, 112], 'the 1/16 thumbnail: from the /16 SubIFD, 111 rows stretched to 112');
  for (const lv of [1, 3]) t.ok(Buffer.from(await ome.readRegion(lv, 5, 7, 40, 30)).equals(Buffer.from(await plain.readRegion(lv, 5, 7, 40, 30))), `level ${lv}: the same pixels`);
  t.match(ome.facts, { format: 'ome-tiff', mppX: 0.25, mppY: 0.25, magnification: 40, scaleSource: 'ome' });
  t.match(plain.facts, { format: 'tiff' });
  t.equal(plain.facts?.mppX, undefined, 'no scale stated, none reported');
  const a = await run(slides, 'sub');
  const b = await run(slides, 'plain');
  t.equal(a.summary.thumbnailLevel, 3);
  sameSlide(t, a, b, 'SubIFD vs plain pyramid');
  t.match(a.summary, { format: 'ome-tiff', tileLevel: 0, backend: 'sharp', mppX: 0.25, magnification: 40, scaleSource: 'ome' });
});

t.test('the stretched thumbnail is banded within a counted limit; a limit too small for one column is refused', async (t) => {
  const s = await openSlide(join(slides, 'sub.ome.tiff'), 'sub');
  t.teardown(() => s.close());
  const bands = async (opts: ThumbnailOptions, cuts: number[]): Promise<{ data: Buffer; stats: ThumbnailStats }> => {
    const plan = thumbnailPlan(s, 16, opts);
    const stats = { maxReadBytes: 0, maxBandBytes: 0 };
    const parts: Uint8Array[] = [];
    for await (const band of thumbnailBands(s, 16, cuts, plan, stats)) parts.push(band.image.data);
    return { data: Buffer.concat(parts), stats };
  };
  const whole = await bands({}, [0, 112]);
  const limit = 8 * 1024;
  const small = await bands({ bandBytes: limit }, [0, 5, 29, 30, 57, 112]);
  t.ok(small.data.equals(whole.data), 'bands of 1-55 rows in column chunks = one band of the whole width');
  t.ok(small.stats.maxReadBytes > 0 && small.stats.maxReadBytes <= limit, `largest source read ${small.stats.maxReadBytes} bytes, within the ${limit}-byte limit`);
  t.ok(whole.stats.maxReadBytes > limit, `without the small limit one read is bigger (${whole.stats.maxReadBytes} bytes): the limit is what bounds it`);
  await t.rejects(bands({ bandBytes: 100 }, [0, 112]), { code: 'E_SLIDE_TOO_LARGE', message: /over the 100-byte band limit/ });
});

t.test('a 16-bit grayscale TIFF: refused before any tile; with allowNonRgb mapped (>> 8, replicated) for thumbnail and tiles alike', async (t) => {
  const path = join(slides, 'grey16.tiff');
  await t.rejects(run(slides, 'grey16'), { code: 'E_SLIDE_NOT_BRIGHTFIELD', image_id: 'grey16', path, message: /grey16\.tiff.*not an 8-bit RGB brightfield image: TIFF with 1 sample per pixel, 16-bit samples, photometric MinIsBlack.*--allow-non-rgb/ });
  const s = await openSlide(path, 'grey16', { allowNonRgb: true });
  t.teardown(() => s.close());
  t.equal(s.facts?.channelMapping, '16-bit samples scaled to 8 bits (value >> 8); grayscale replicated to R, G and B');
  const px = await s.readRegion(0, 1000, 700, 2, 1);
  t.same([...px], [mapped(1000, 700), mapped(1000, 700), mapped(1000, 700), mapped(1001, 700), mapped(1001, 700), mapped(1001, 700)], 'a region: v >> 8 in R, G and B');
  const a = await run(slides, 'grey16', { allowNonRgb: true });
  const b = await run(slides, 'grey16-as-rgb');
  t.equal(a.summary.channelMapping, s.facts?.channelMapping, 'the summary states the mapping');
  t.equal(b.summary.channelMapping, undefined, 'an RGB slide has no mapping');
  sameSlide(t, a, b, '16-bit mapped vs the 8-bit RGB it maps to');
});

t.test('a multiplex OME-TIFF (4 channels, 16-bit): refused naming its channels; forced: channel 1 from its SubIFD pyramid', async (t) => {
  await t.rejects(openSlide(join(slides, 'multiplex.ome.tif'), 'multiplex'), { code: 'E_SLIDE_NOT_BRIGHTFIELD', message: /OME-TIFF with 4 channels \(DAPI, CD3, CD8, PanCK\), 1 sample per pixel, 16-bit samples/ });
  const s = await openSlide(join(slides, 'multiplex.ome.tif'), 'multiplex', { allowNonRgb: true });
  t.teardown(() => s.close());
  t.equal(s.levels.length, 4, 'levels from channel 1 (page 0) and its SubIFDs');
  t.equal(s.facts?.channelMapping, '16-bit samples scaled to 8 bits (value >> 8); channel 1 of 4 (DAPI) only; grayscale replicated to R, G and B');
  const a = await run(slides, 'multiplex', { allowNonRgb: true });
  const b = await run(slides, 'multiplex-as-rgb');
  t.equal(a.summary.thumbnailLevel, 3, 'thumbnail from the /16 SubIFD');
  sameSlide(t, a, b, 'multiplex mapped vs its channel 1 as RGB');
});

t.test('float, signed and QPTIFF images: what was found is named; signed samples have no mapping even when forced', async (t) => {
  const f = join(dir, 'float.tif');
  writeTiffPages(f, [{ width: 64, height: 48, samples: 1, bits: 32, sampleFormat: 3, tile: 16, sample: (x, y) => (x - 8) / 48 + y / 1000 }]);
  await t.rejects(openSlide(f, 'float'), { code: 'E_SLIDE_NOT_BRIGHTFIELD', message: /1 sample per pixel, 32-bit samples, floating-point samples/ });
  const s = await openSlide(f, 'float', { allowNonRgb: true });
  t.teardown(() => s.close());
  t.match(s.facts?.channelMapping, /32-bit floating-point samples clamped to 0\.\.1 and scaled to 0\.\.255/);
  const px = await s.readRegion(0, 0, 10, 64, 1);
  t.same([px[0], px[20 * 3], px[63 * 3]], [0, Math.round(((20 - 8) / 48 + 0.01) * 255), 255], 'clamped below 0 and above 1, scaled between');
  const i16 = join(dir, 'signed.tif');
  writeTiffPages(i16, [{ width: 32, height: 32, samples: 1, bits: 16, sampleFormat: 2, sample: (x) => x - 16 }]);
  await t.rejects(openSlide(i16, 'signed', { allowNonRgb: true }), { code: 'E_SLIDE_NOT_BRIGHTFIELD', message: /signed samples.*even with --allow-non-rgb: signed samples have no stated mapping/ });
  // A PerkinElmer QPTIFF: one 8-bit page per fluorophore, found by the slide's name and read, then refused.
  const q = join(dir, 'qp');
  mkdirSync(q);
  const qpXml = (name: string): string => `<?xml version="1.0" encoding="utf-8"?><PerkinElmer-QPI-ImageDescription><DescriptionVersion>2</DescriptionVersion><ImageType>FullResolution</ImageType><Name>${name}</Name></PerkinElmer-QPI-ImageDescription>`;
  writeTiffPages(join(q, 'case.qptiff'), ['DAPI', 'FITC', 'Cy5'].map((name, c) => ({ width: 64, height: 64, samples: 1, bits: 8, tile: 32, description: qpXml(name), sample: (x: number) => (x * 4 + c) & 255 })));
  const path = await resolveSlidePath(q, 'case');
  t.equal(path, join(q, 'case.qptiff'), 'a .qptiff is a slide file (a TIFF)');
  await t.rejects(openSlide(path, 'case'), { code: 'E_SLIDE_NOT_BRIGHTFIELD', path, message: /PerkinElmer QPTIFF with 3 channels \(DAPI, FITC, Cy5\), 1 sample per pixel/ });
});

t.test('stated scale: Aperio MPP/AppMag, TIFF resolution in cm, a 72-dpi default ignored, OpenSlide properties', async (t) => {
  const page = (extra: Partial<PageSpec>): PageSpec[] => [{ width: 64, height: 64, samples: 3, bits: 8, tile: 32, sample: (x, y, s) => (x + y + s) & 255, ...extra }];
  const cases: Array<[string, Partial<PageSpec>, Record<string, unknown>]> = [
    ['aperio.svs', { description: 'Aperio Image Library v12.0.5\r\n64x64 [0,0 64x64] (32x32) JPEG/RGB Q=70|AppMag = 20|StripeWidth = 2040|MPP = 0.4990|Filename = x' }, { format: 'svs', mppX: 0.499, mppY: 0.499, magnification: 20, scaleSource: 'aperio' }],
    ['cm.tif', { resolution: { perUnit: 40000, unit: 3 } }, { format: 'tiff', mppX: 0.25, mppY: 0.25, scaleSource: 'tiff-resolution' }],
    ['dpi.tif', { resolution: { perUnit: 72, unit: 2 } }, { format: 'tiff' }],
  ];
  for (const [name, extra, want] of cases) {
    const p = join(dir, name);
    writeTiffPages(p, page(extra));
    const s = await openSlide(p, name);
    t.match(s.facts, want, name);
    if (name === 'dpi.tif') t.equal(s.facts?.mppX, undefined, '72 dpi (353 µm/px) is a writer default, not a scale');
    await s.close();
  }
  if (!existsSync(CMU)) return t.skip('test data missing: ../shared/testdata/slides/cmu-1-small-region.svs');
  let os;
  try {
    os = await openSlide(CMU, 'cmu', { backend: 'openslide' });
  } catch (err) {
    return t.skip(`OpenSlide not available: ${(err as Error).message}`);
  }
  const sh = await openSlide(CMU, 'cmu');
  t.teardown(async () => {
    await os.close();
    await sh.close();
  });
  t.match(os.facts, { format: 'svs', scaleSource: 'openslide' });
  t.ok(os.facts?.mppX !== undefined && Math.abs(os.facts.mppX - sh.facts!.mppX!) < 1e-9, `OpenSlide's openslide.mpp-x (${os.facts?.mppX}) = the Aperio description's MPP (${sh.facts?.mppX})`);
  t.equal(os.facts?.magnification, sh.facts?.magnification, 'objective power = AppMag');
});

t.test('DICOM: PixelSpacing and objective power; MONOCHROME2 refused or, forced, replicated; 16-bit uncompressed refused', async (t) => {
  const grey = Buffer.alloc(64 * 64);
  for (let i = 0; i < grey.length; i++) grey[i] = (i * 5) & 255;
  const frame = await sharp(grey, { raw: { width: 64, height: 64, channels: 1 } }).jpeg({ quality: 95 }).toBuffer();
  const mono = join(dir, 'mono.dcm');
  const scale = {
    SharedFunctionalGroupsSequence: [{ PixelMeasuresSequence: [{ PixelSpacing: ['0.00025', '0.0005'] }] }],
    OpticalPathSequence: [{ OpticalPathIdentifier: '1', ObjectiveLensPower: '40' }],
  };
  writeInstance({ path: mono, width: 64, height: 64, frameWidth: 64, frameHeight: 64, frames: [frame], transferSyntax: JPEG_BASELINE, photometric: 'MONOCHROME2', extra: { SamplesPerPixel: 1, ...scale } });
  await t.rejects(openSlide(mono, 'mono'), { code: 'E_SLIDE_NOT_BRIGHTFIELD', message: /DICOM with 1 sample per pixel, photometric MONOCHROME2/ });
  const s = await openSlide(mono, 'mono', { allowNonRgb: true });
  t.teardown(() => s.close());
  t.match(s.facts, { format: 'dicom', mppX: 0.5, mppY: 0.25, magnification: 40, scaleSource: 'dicom', channelMapping: 'grayscale replicated to R, G and B' });
  const px = await s.readRegion(0, 10, 10, 1, 1);
  t.ok(px[0] === px[1] && px[1] === px[2], `grey replicated (${[...px]})`);
  const raw16 = join(dir, 'raw16.dcm');
  writeInstance({ path: raw16, width: 16, height: 16, frameWidth: 16, frameHeight: 16, frames: [Buffer.alloc(16 * 16 * 2)], transferSyntax: EXPLICIT_LE, photometric: 'MONOCHROME2', extra: { SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, HighBit: 15 } });
  await t.rejects(openSlide(raw16, 'raw16'), { code: 'E_SLIDE_NOT_BRIGHTFIELD', message: /1 sample\(s\) of 16 bits, MONOCHROME2/ });
  await t.rejects(openSlide(raw16, 'raw16', { allowNonRgb: true }), { code: 'E_SLIDE_NOT_BRIGHTFIELD', message: /--allow-non-rgb maps only JPEG-baseline DICOM/ });
});
