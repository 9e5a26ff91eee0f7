/**
 * A corrupt JPEG tile through the sharp backend (tile-check.ts): every read that decodes it (a level-0 region, the
 * pyramid thumbnail, the single-level 'jpeg' thumbnail) fails with E_TILE_CORRUPT naming the slide and the tile's
 * level-0 box; each tile is checked once; --jpeg-check off gives libvips' silent decode (wrong pixels, no error).
 * Also the shared Aperio SVS with one tile byte-mutated in a temporary copy, and a DICOM instance with one corrupt
 * JPEG frame (the DICOM backend checks each frame before sharp decodes it).
 */
import t from 'tap';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openSlide } from '../../stages/slides/open.js';
import { SlideError } from '../../stages/slides/errors.js';
import { generateSlide } from '../../stages/slides/synthetic.js';
import { parseTiff } from '../../stages/slides/tiff-parse.js';
import { thumbnailBands, thumbnailPlan } from '../../stages/slides/thumbnail-bands.js';
import { BandSelector } from '../../stages/slides/tile-select.js';
import { DEFAULT_TILE_PARAMS } from '../../stages/slides/tile-params.js';
import type { SlideReader } from '../../stages/slides/reader.js';
import type { TileCheck } from '../../stages/slides/tile-check.js';
import { cutFrames, JPEG_BASELINE, writeInstance } from '../helpers/dicom.js';

const dir = mkdtempSync(join(tmpdir(), 'tile-check-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const CMU = fileURLToPath(new URL('../../../shared/testdata/slides/cmu-1-small-region.svs', import.meta.url));

/** Zeroes the entropy data of JPEG tile `index` of TIFF page `page` from 100 bytes past its scan's start to its EOI. */
async function corruptTile(file: string, page: number, index: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const ifd = (await parseTiff(fh)).ifds[page]!;
    const jpeg = Buffer.alloc(ifd.byteCounts[index]!);
    await fh.read(jpeg, 0, jpeg.length, ifd.offsets[index]!);
    const sos = jpeg.indexOf(Buffer.from([0xff, 0xda]));
    const from = sos + 2 + jpeg.readUInt16BE(sos + 2) + 100;
    if (sos < 0 || from >= jpeg.length - 2) throw new Error(`tile ${index} of page ${page} of ${file} has too little entropy data to damage`);
    jpeg.fill(0, from, jpeg.length - 2);
    await fh.write(jpeg, 0, jpeg.length, ifd.offsets[index]!);
  } finally {
    await fh.close();
  }
}

/** The SlideError a promise rejects with (a test failure when it resolves). */
async function rejection(p: Promise<unknown>): Promise<SlideError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof SlideError) return err;
    throw err;
  }
  throw new Error('expected a SlideError');
}

/** Every band of the slide's thumbnail at 1/16, read to the end. */
async function readThumbnail(s: SlideReader): Promise<string> {
  const plan = thumbnailPlan(s, 16);
  for await (const band of thumbnailBands(s, 16, new BandSelector(s.width, s.height, DEFAULT_TILE_PARAMS).cuts(), plan)) void band;
  return plan.method;
}

const tissue = [{ kind: 'rect' as const, x: 0, y: 0, w: 2048, h: 2048 }];
const clean = join(dir, 'clean.tiff');
await generateSlide({ path: clean, width: 2048, height: 2048, seed: 3, tissue });
// Level-0 tile 13: column 5, row 1 of 8 x 8 tiles of 256 px.
const level0 = join(dir, 'level0.tiff');
copyFileSync(clean, level0);
await corruptTile(level0, 0, 13);

t.test('a corrupt level-0 tile: E_TILE_CORRUPT for the regions over it, naming its level-0 box; the others read', async (t) => {
  const s = await openSlide(level0, 'c0');
  t.teardown(() => s.close());
  const err = await rejection(s.readRegion(0, 1200, 200, 224, 224));
  t.equal(err.code, 'E_TILE_CORRUPT');
  t.same(err.tile, { level: 0, x: 1280, y: 256, width: 256, height: 256 });
  t.match(err.message, /^E_TILE_CORRUPT: slide "c0" \(.+level0\.tiff\): tile at level-0 x 1280, y 256 \(256x256 px; JPEG tile 13 of TIFF page 0\) is corrupt: Corrupt JPEG data: /);
  const ref = await openSlide(clean, 'ref');
  t.teardown(() => ref.close());
  t.same(await s.readRegion(0, 0, 0, 1024, 256), await ref.readRegion(0, 0, 0, 1024, 256), 'a region beside it reads, the same pixels as the clean slide');
  t.equal((await rejection(s.readRegion(0, 1300, 300, 10, 10))).code, 'E_TILE_CORRUPT', 'again: a corrupt tile is never marked checked');
});

t.test('each tile is checked once, however many regions read it', async (t) => {
  const s = await openSlide(clean, 'c');
  t.teardown(() => s.close());
  const check = (s as unknown as { tileCheck(level: number): TileCheck | undefined }).tileCheck(0)!;
  await s.readRegion(0, 0, 0, 224, 224);
  t.equal(check.checked, 1, 'one tile under the first region');
  await s.readRegion(0, 224, 0, 224, 224);
  t.equal(check.checked, 2, 'the next region spans tiles 0 and 1: only tile 1 is new');
  await s.readRegion(0, 0, 0, 448, 448);
  t.equal(check.checked, 4);
  t.equal(check.mode, 'quick', 'quick by default');
});

t.test('--jpeg-check off: libvips decodes the corrupt tile without a word, wrong pixels (why the check exists)', async (t) => {
  const s = await openSlide(level0, 'c0', { jpegCheck: 'off' });
  t.teardown(() => s.close());
  const ref = await openSlide(clean, 'ref');
  t.teardown(() => ref.close());
  const got = Buffer.from(await s.readRegion(0, 1280, 256, 256, 256));
  t.not(got.equals(Buffer.from(await ref.readRegion(0, 1280, 256, 256, 256))), 'read, with pixels that differ from the clean slide');
  t.equal((s as unknown as { tileCheck(level: number): TileCheck | undefined }).tileCheck(0), undefined, 'no check');
});

t.test('--jpeg-check full finds the same tile', async (t) => {
  const s = await openSlide(level0, 'c0', { jpegCheck: 'full' });
  t.teardown(() => s.close());
  const err = await rejection(s.readRegion(0, 1280, 256, 224, 224));
  t.equal(err.code, 'E_TILE_CORRUPT');
  t.match(err.message, /is corrupt: Corrupt JPEG data: (premature end of data segment|\d+ extraneous bytes before marker 0xd9)$/);
});

t.test('the thumbnail paths: a corrupt tile of the pyramid level it reads, and of a single-level slide', async (t) => {
  // The 1/16 thumbnail of a 2048 px pyramid (levels 1, 1/4, 1/16) comes from its 128 px level (page 2, one tile).
  const pyramid = join(dir, 'thumb.tiff');
  copyFileSync(clean, pyramid);
  await corruptTile(pyramid, 2, 0);
  const p = await openSlide(pyramid, 'p');
  t.teardown(() => p.close());
  const banded = await rejection(readThumbnail(p));
  t.equal(banded.code, 'E_TILE_CORRUPT', 'the banded thumbnail');
  t.same(banded.tile, { level: 2, x: 0, y: 0, width: 2048, height: 2048 }, 'its box in level-0 pixels (cut to the slide)');
  t.match(banded.message, /tile at level-0 x 0, y 0 \(2048x2048 px, level 2; JPEG tile 0 of TIFF page 2\) is corrupt/);
  t.equal((await rejection(p.thumbnail(16))).code, 'E_TILE_CORRUPT', 'SlideReader.thumbnail (libvips reads the page itself: its tiles are checked first)');

  // A single-level slide: the thumbnail is made from level 0's compressed tiles ('jpeg'), one of them corrupt.
  const single = join(dir, 'single.tiff');
  await generateSlide({ path: single, width: 2048, height: 2048, seed: 3, tissue, levels: 'single' });
  await corruptTile(single, 0, 13);
  const s = await openSlide(single, 's');
  t.teardown(() => s.close());
  t.equal(thumbnailPlan(s, 16).method, 'jpeg');
  const jpeg = await rejection(readThumbnail(s));
  t.equal(jpeg.code, 'E_TILE_CORRUPT', 'the \'jpeg\' thumbnail');
  t.same(jpeg.tile, { level: 0, x: 1280, y: 256, width: 256, height: 256 });
});

t.test('the shared Aperio SVS with one tile damaged in a copy: E_TILE_CORRUPT at its position', async (t) => {
  if (!existsSync(CMU)) return t.skip('test data missing: ../shared/testdata/slides/cmu-1-small-region.svs');
  const copy = join(dir, 'cmu.svs');
  copyFileSync(CMU, copy);
  const fh = await open(copy, 'r');
  const ifd = (await parseTiff(fh)).ifds[0]!;
  await fh.close();
  const across = Math.ceil(ifd.width / ifd.tileWidth!);
  // The first tile past the middle with enough entropy data to damage (tissue, not background).
  let index = Math.floor(ifd.offsets.length / 2);
  while (ifd.byteCounts[index]! < 2000) index++;
  await corruptTile(copy, 0, index);
  const x = (index % across) * ifd.tileWidth!;
  const y = Math.floor(index / across) * ifd.tileHeight!;
  const s = await openSlide(copy, 'cmu');
  t.teardown(() => s.close());
  t.equal(s.backend, 'sharp');
  const err = await rejection(s.readRegion(0, x + 10, y + 10, 100, 100));
  t.equal(err.code, 'E_TILE_CORRUPT');
  t.same(err.tile, { level: 0, x, y, width: ifd.tileWidth, height: ifd.tileHeight });
  t.match(err.message, new RegExp(`tile at level-0 x ${x}, y ${y} \\(240x240 px; JPEG tile ${index} of TIFF page 0\\) is corrupt: Corrupt JPEG data: `));
  const ref = await openSlide(CMU, 'ref');
  t.teardown(() => ref.close());
  t.same(await s.readRegion(0, 0, 0, 480, 240), await ref.readRegion(0, 0, 0, 480, 240), 'clean tiles read as in the original');
});

t.test('a DICOM instance with one corrupt JPEG frame: E_TILE_CORRUPT naming the frame and its level-0 box', async (t) => {
  const src = await openSlide(clean, 'src');
  const frames = await cutFrames(src, 0, 256, 256, 90);
  await src.close();
  // Frame 10 (index 9: column 1, row 1 of 8 x 8): its entropy data zeroed from 100 bytes past the scan start.
  const jpeg = Buffer.from(frames[9]!);
  const sos = jpeg.indexOf(Buffer.from([0xff, 0xda]));
  jpeg.fill(0, sos + 2 + jpeg.readUInt16BE(sos + 2) + 100, jpeg.length - 2);
  frames[9] = jpeg;
  const path = join(dir, 'corrupt.dcm');
  writeInstance({ path, width: 2048, height: 2048, frameWidth: 256, frameHeight: 256, frames, transferSyntax: JPEG_BASELINE, oneFragment: true });
  const s = await openSlide(path, 'dcm');
  t.teardown(() => s.close());
  t.equal(s.backend, 'dicom');
  const err = await rejection(s.readRegion(0, 300, 300, 100, 100));
  t.equal(err.code, 'E_TILE_CORRUPT');
  t.same(err.tile, { level: 0, x: 256, y: 256, width: 256, height: 256 });
  t.match(err.message, /tile at level-0 x 256, y 256 \(256x256 px; frame 10 of corrupt\.dcm\) is corrupt: Corrupt JPEG data: /);
  t.equal((await s.readRegion(0, 0, 0, 256, 256)).length, 256 * 256 * 3, 'a clean frame reads');
});
