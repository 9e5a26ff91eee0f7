import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { openSlide } from '../../stages/slides/open.js';
import { findLevels } from '../../stages/slides/reader.js';
import { openOpenSlide, argbToRgb } from '../../stages/slides/backend-openslide.js';
import { resolveSlidePath } from '../../stages/slides/resolve.js';
import { parseTiff } from '../../stages/slides/tiff-parse.js';
import { selectTiles } from '../../stages/slides/tile-select.js';
import { DEFAULT_TILE_PARAMS } from '../../stages/slides/tile-params.js';
import { produceTiles } from '../../stages/produce-tiles.js';
import { generateSlide } from '../../stages/slides/synthetic.js';
import type { SlideSummary } from '../../stages/types.js';
import { from, makeCtx } from '../helpers/ctx.js';

const data = fileURLToPath(new URL('../../../shared/testdata/slides', import.meta.url));
const have = existsSync(data);
const SKIP = have ? false : `test data not found at ${data}`;
const CMU = join(data, 'cmu-1-small-region.svs');
const openslidePresent = (() => {
  try {
    return ['/usr/lib/x86_64-linux-gnu/libopenslide.so.0', '/usr/lib/aarch64-linux-gnu/libopenslide.so.0', '/usr/lib/libopenslide.so.0'].some(existsSync);
  } catch {
    return false;
  }
})();
const tmp = mkdtempSync(join(tmpdir(), 'slide-test-'));

/** Region of a full sharp decode of page 0, for comparison. */
async function fullRegion(path: string, x: number, y: number, w: number, h: number): Promise<Buffer> {
  const { data: full, info } = await sharp(path, { page: 0 }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const out = Buffer.alloc(w * h * 3);
  for (let r = 0; r < h; r++) full.copy(out, r * w * 3, ((y + r) * info.width + x) * 3, ((y + r) * info.width + x + w) * 3);
  return out;
}

const maxDiff = (a: Uint8Array, b: Uint8Array): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

t.test('CMU SVS: one level, extra pages are not levels; thumbnail = level 0 box-shrunk; stable tile count', { skip: SKIP }, async (t) => {
  const fh = await open(CMU);
  const ifds = (await parseTiff(fh)).ifds;
  await fh.close();
  t.equal(ifds.length, 4, 'four pages: image, thumbnail, label, macro');
  t.same(findLevels(ifds.map((d) => ({ width: d.width, height: d.height, tiled: d.tileWidth !== undefined }))), [0], 'only page 0 is a level');
  const s = await openSlide(CMU, 'cmu');
  t.teardown(() => s.close());
  t.equal(s.backend, 'sharp');
  t.same([s.width, s.height], [2220, 2967]);
  t.same(s.levels.map((l) => l.downsample), [1]);
  const { image, level } = await s.thumbnail(16);
  t.equal(level, 0);
  t.same([image.width, image.height], [138, 185]);
  // Reference: decode level 0 and average 16x16 boxes in JS.
  const { data: full } = await sharp(CMU, { page: 0 }).raw().toBuffer({ resolveWithObject: true });
  let sum = 0;
  for (let y = 0; y < 185; y++)
    for (let x = 0; x < 138; x++)
      for (let c = 0; c < 3; c++) {
        let acc = 0;
        for (let j = 0; j < 16; j++) for (let i = 0; i < 16; i++) acc += full[((y * 16 + j) * 2220 + x * 16 + i) * 3 + c]!;
        sum += Math.abs(acc / 256 - image.data[(y * 138 + x) * 3 + c]!);
      }
  const mean = sum / (138 * 185 * 3);
  t.ok(mean < 3, `thumbnail agrees with a box-shrunk level 0 (mean abs diff ${mean.toFixed(2)})`);
  // 4 x 6 = 24 full 448 tiles on the grid. The section is a narrow strip of pale tissue, so with the
  // seed's rule (<= 10% background) only 5 tiles survive: (896,896..2240) down the middle and (1344,2240);
  // at 25% 6 survive, at 50% 11. Pinned so any change in decoding or selection shows.
  const sel = selectTiles(s.width, s.height, image, DEFAULT_TILE_PARAMS);
  t.equal(sel.total, 24);
  t.equal(sel.positions.length, CMU_TILES, `kept tiles: ${sel.positions.length}`);
  t.same(sel.positions, [[896, 896], [896, 1344], [896, 1792], [896, 2240], [1344, 2240]]);
  // A JPEG-tile region read agrees with libvips' decode of the same region.
  const region = await s.readRegion(0, 1000, 1200, 448, 448);
  t.equal(maxDiff(region, await fullRegion(CMU, 1000, 1200, 448, 448)), 0, 'region = full decode');
});
const CMU_TILES = Number(process.env.CMU_TILES ?? 5);

t.test('strip TIFF (kidney) and big-endian OME-TIFF read correctly', { skip: SKIP }, async (t) => {
  for (const [name, w, h] of [['kidney-48-5.tif', 1493, 901], ['OS-2-vsi.ome.tif', 1445, 1445]] as const) {
    const s = await openSlide(join(data, name), name);
    t.same([s.width, s.height, s.levels.length], [w, h, 1], name);
    const r = await s.readRegion(0, 333, 222, 500, 300);
    t.equal(maxDiff(r, await fullRegion(join(data, name), 333, 222, 500, 300)), 0, `${name}: region = full decode`);
    await s.close();
  }
});

t.test('small_HE_levels: four levels detected; thumbnail from the right level; too small for a tile', { skip: SKIP }, async (t) => {
  const p = join(data, 'small_HE_levels.tiff');
  const s = await openSlide(p, 'he');
  t.same(s.levels.map((l) => [l.width, l.height]), [[300, 250], [150, 125], [75, 62], [37, 31]]);
  t.equal((await s.thumbnail(4)).level, 2, '1/4 from level 2 (/4.02)');
  t.equal((await s.thumbnail(3)).level, 1, '1/3 from level 1 (/2), not the coarser /4');
  t.equal((await s.thumbnail(16)).level, 3);
  await s.close();
  const dir = mkdtempSync(join(tmpdir(), 'he-'));
  symlinkSync(p, join(dir, 'he.tiff'));
  await t.rejects(
    (async () => {
      for await (const _ of produceTiles(DEFAULT_TILE_PARAMS)(from([{ image_id: 'he', patient_id: 'p', image_num: 0, slidesDir: dir }]), makeCtx())) void _;
    })(),
    { code: 'E_SLIDE_TOO_SMALL', image_id: 'he' },
  );
});

t.test('OpenSlide backend reads the CMU SVS like sharp does', { skip: SKIP || (openslidePresent ? false : 'libopenslide0 not installed') }, async (t) => {
  const s = await openOpenSlide(CMU, 'cmu');
  t.equal(s.backend, 'openslide');
  t.same([s.width, s.height], [2220, 2967]);
  const a = await s.readRegion(0, 1000, 1200, 448, 448);
  const b = await fullRegion(CMU, 1000, 1200, 448, 448);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  t.ok(sum / a.length < 2, `OpenSlide and libvips decode agree (mean abs diff ${(sum / a.length).toFixed(2)})`);
  t.equal((await s.thumbnail(16)).image.width, 138);
  await s.close();
});

t.test('an OpenSlide-only extension goes to OpenSlide: tiles when installed', { skip: SKIP || (openslidePresent ? false : 'libopenslide0 not installed') }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'os-'));
  symlinkSync(CMU, join(dir, 'cmu.scn')); // OpenSlide detects the vendor by content
  const sums: SlideSummary[] = [];
  let n = 0;
  const ctx = makeCtx();
  for await (const tile of produceTiles(DEFAULT_TILE_PARAMS, { onSummary: (s) => sums.push(s) })(from([{ image_id: 'cmu', patient_id: 'p', image_num: 0, slidesDir: dir }]), ctx)) {
    t.equal(tile.pixels.length, 448 * 448 * 3);
    n++;
  }
  t.equal(sums[0]!.backend, 'openslide');
  t.equal(n, CMU_TILES, 'same tile count as the sharp backend');
});

t.test('OpenSlide absent: a clear error naming the apt package', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'os-'));
  writeFileSync(join(dir, 'x.ndpi'), 'not really');
  await t.rejects(openSlide(join(dir, 'x.ndpi'), 'x', { openslideLibrary: '/nonexistent/libopenslide.so.0' }), { code: 'E_OPENSLIDE_MISSING', image_id: 'x', message: /apt install libopenslide0/ });
});

t.test('argbToRgb: opaque copied, transparent white, partial un-premultiplied', async (t) => {
  const px = new Uint32Array([0xff102030, 0x00000000, 0x80400000]);
  t.same([...argbToRgb(px)], [0x10, 0x20, 0x30, 255, 255, 255, 128, 0, 0]);
});

t.test('errors: bad ids, missing, not an image, truncated', async (t) => {
  for (const bad of ['../x', '/etc/passwd', 'a/b', 'a\\b', 'a\0b', '..', '']) {
    await t.rejects(resolveSlidePath(tmp, bad), { code: 'E_BAD_IMAGE_ID' }, JSON.stringify(bad));
  }
  await t.rejects(resolveSlidePath(tmp, 'nothing'), { code: 'E_SLIDE_MISSING', image_id: 'nothing' });
  writeFileSync(join(tmp, 'exact.name.tif'), 'x');
  t.equal(await resolveSlidePath(tmp, 'exact.name.tif'), join(tmp, 'exact.name.tif'), 'an exact file name');
  t.equal(await resolveSlidePath(tmp, 'exact.name'), join(tmp, 'exact.name.tif'), 'stem + extension');
  writeFileSync(join(tmp, 'text.svs'), 'hello, not a slide');
  await t.rejects(openSlide(join(tmp, 'text.svs'), 'text', { openslideLibrary: '/nonexistent/lib.so' }), { code: 'E_SLIDE_FORMAT', image_id: 'text' });
  await t.rejects(openSlide(join(tmp, 'none.svs'), 'none'), { code: 'E_SLIDE_MISSING' });
  const good = join(tmp, 'good.tiff');
  await generateSlide({ path: good, width: 1024, height: 1024, seed: 3 });
  const bytes = readFileSync(good);
  writeFileSync(join(tmp, 'cut.tiff'), bytes.subarray(0, bytes.length - 200)); // directories are at the end
  // A directory cut short is a damaged TIFF: E_SLIDE_FORMAT naming the directory (tiff-parse checks every span against the file size).
  await t.rejects(openSlide(join(tmp, 'cut.tiff'), 'cut'), { code: 'E_SLIDE_FORMAT', image_id: 'cut', message: /TIFF directory 1 .*run past the end of the file .*truncated/ });
  // Tile data zeroed: opening works (directories intact), the region read fails with E_TILE_CORRUPT (the tile check),
  // or, unchecked, E_SLIDE_READ (libvips finds no JPEG).
  const fh = await open(good);
  const ifd0 = (await parseTiff(fh)).ifds[0]!;
  await fh.close();
  const broken = Buffer.from(bytes);
  broken.fill(0, ifd0.offsets[0]!, ifd0.offsets[0]! + ifd0.byteCounts[0]!);
  writeFileSync(join(tmp, 'broken.tiff'), broken);
  const s = await openSlide(join(tmp, 'broken.tiff'), 'broken');
  await t.rejects(s.readRegion(0, 0, 0, 64, 64), { code: 'E_TILE_CORRUPT', image_id: 'broken', tile: { level: 0, x: 0, y: 0 } });
  await s.close();
  const off = await openSlide(join(tmp, 'broken.tiff'), 'broken', { jpegCheck: 'off' });
  await t.rejects(off.readRegion(0, 0, 0, 64, 64), { code: 'E_SLIDE_READ', image_id: 'broken' });
  await off.close();
});
