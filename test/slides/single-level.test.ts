import t from 'tap';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { generateRepeatedTileSlide, generateSlide } from '../../stages/slides/synthetic.js';
import { openSlide } from '../../stages/slides/open.js';
import { parseTiff } from '../../stages/slides/tiff-parse.js';
import type { SlideReader } from '../../stages/slides/reader.js';
import { THUMBNAIL_LIMITS, thumbnailBands, thumbnailPlan, type ThumbnailOptions, type ThumbnailStats } from '../../stages/slides/thumbnail-bands.js';
import { BandSelector } from '../../stages/slides/tile-select.js';
import { DEFAULT_TILE_PARAMS } from '../../stages/slides/tile-params.js';
import { produceTiles } from '../../stages/produce-tiles.js';
import type { SlideError } from '../../stages/slides/errors.js';
import type { StageContext } from '../../engine/types.js';
import type { Tile } from '../../stages/types.js';

const dir = mkdtempSync(join(tmpdir(), 'single-level-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** All bands of the thumbnail joined, at the selector's cuts (or at `cuts`). */
async function bands(s: SlideReader, opts: ThumbnailOptions, cuts?: number[], stats?: ThumbnailStats): Promise<{ data: Buffer; method: string }> {
  const plan = thumbnailPlan(s, 16, opts);
  const out = Buffer.alloc(plan.width * plan.height * 3);
  for await (const b of thumbnailBands(s, 16, cuts ?? new BandSelector(s.width, s.height, DEFAULT_TILE_PARAMS).cuts(), plan, stats)) Buffer.from(b.image.data).copy(out, b.y * plan.width * 3);
  return { data: out, method: plan.method };
}

/** The error `fn` throws (a test failure when it does not throw). */
function thrown(fn: () => unknown): SlideError {
  try {
    fn();
  } catch (err) {
    return err as SlideError;
  }
  throw new Error('expected an error');
}

function ctx(): StageContext {
  return {
    signal: new AbortController().signal,
    name: 'produce',
    metrics: { name: 'produce', elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} },
    tiles: { limit: 64, inUse: 0, maxInUse: 0, acquire: async () => undefined, release: () => undefined },
  };
}

t.test('a 100,000 x 4,096 single-level slide (tiny file) goes through ProduceTiles with a bounded thumbnail', async (t) => {
  const path = join(dir, 'wide.tiff');
  // Tissue: a band across the middle third of the width.
  await generateRepeatedTileSlide({ path, width: 100_000, height: 4096, tissue: [{ kind: 'rect', x: 33_000, y: 1000, w: 34_000, h: 2000 }] });
  t.ok(statSync(path).size < 200_000, `file is ${statSync(path).size} bytes`);
  for (const exact of [false, true]) {
    const stats = { maxReadBytes: 0, maxBandBytes: 0 };
    const summaries: number[] = [];
    let n = 0;
    const task = { image_id: 'wide', patient_id: 'p', image_num: 0, slidesDir: dir };
    // The report's pictures need every band; the exact run skips them (selection stops at the 20th tile): shorter.
    const onSummary = exact ? undefined : (s: { tiles_kept: number }): number => summaries.push(s.tiles_kept);
    const stage = produceTiles({ ...DEFAULT_TILE_PARAMS, maxTiles: 20 }, { thumbnail: { exact }, thumbnailStats: stats, onSummary });
    for await (const tile of stage((async function* () { yield task; })(), ctx()) as AsyncIterable<Tile>) {
      n++;
      t.ok(tile.x >= 33_000 - 448 && tile.x < 67_000, `tile at ${tile.x},${tile.y} is in the tissue`);
    }
    t.equal(n, 20, `${exact ? 'exact' : 'jpeg'}: 20 tiles`);
    t.same(summaries, exact ? [] : [20]);
    // Counted bound: no read of the thumbnail path holds more than its stated limit, whatever the width
    // (the old full-width band of level 0 was 100,000 x 704 rows x 3 = 211 MB).
    const limit = exact ? THUMBNAIL_LIMITS.bandBytes : THUMBNAIL_LIMITS.rowsBytes;
    t.ok(stats.maxReadBytes > 0 && stats.maxReadBytes <= limit, `${exact ? 'exact' : 'jpeg'}: largest read ${stats.maxReadBytes} bytes <= ${limit}`);
    t.ok(stats.maxBandBytes <= 6250 * 30 * 3, `largest band ${stats.maxBandBytes} bytes: one tile row of thumbnail`);
  }
});

t.test('exact column chunks are bit-identical to the full-width band path and the whole thumbnail', async (t) => {
  const path = join(dir, 'single-2000.tiff');
  await generateSlide({ path, width: 2000, height: 1500, seed: 5, levels: 'single', tileSize: 256 });
  const s = await openSlide(path, 'single');
  t.teardown(() => s.close());
  t.equal(s.levels.length, 1);
  const { image } = await s.thumbnail(16);
  const whole = Buffer.from(image.data);
  const rows = await bands(s, { exact: true });
  t.equal(rows.method, 'resize');
  t.ok(rows.data.equals(whole), 'full-width bands = whole thumbnail');
  // A band limit that forces chunks of ~40 thumbnail columns (125 wide), with the halo on both sides.
  const chunked = await bands(s, { exact: true, bandBytes: 3 * 16 * 16 * (29 + 16) * 56 });
  t.equal(chunked.method, 'chunked');
  t.ok(chunked.data.equals(whole), 'column chunks = whole thumbnail, bit for bit');
});

t.test('the JPEG path: bands at any cuts are the same thumbnail, close to the exact one', async (t) => {
  const path = join(dir, 'single-jpeg.tiff');
  await generateSlide({ path, width: 3000, height: 9000, seed: 9, levels: 'single', tileSize: 256, optimiseCoding: false });
  const s = await openSlide(path, 'single');
  t.teardown(() => s.close());
  const stats = { maxReadBytes: 0, maxBandBytes: 0 };
  const a = await bands(s, {}, undefined, stats);
  t.equal(a.method, 'jpeg');
  const h = Math.floor(9000 / 16);
  const b = await bands(s, { threads: 1 }, [0, 1, 7, 255, 256, 257, 300, h]);
  t.ok(a.data.equals(b.data), 'cuts and threads do not change the JPEG-path thumbnail');
  // 4096-row groups: two groups of 256 thumbnail rows, then the rest.
  t.ok(stats.maxReadBytes <= 2 * 187 * 256 * 3 + 16 * 4096 * 3, `largest held ${stats.maxReadBytes} bytes: two groups and one decoded stack`);
  const exact = Buffer.from((await s.thumbnail(16)).image.data);
  let far = 0;
  for (let i = 0; i < exact.length; i++) if (Math.abs(exact[i]! - a.data[i]!) > 24) far++;
  t.ok(far < exact.length * 0.01, `${far} of ${exact.length} channel values differ by more than 24 from the exact thumbnail`);
});

t.test('a JPEG tile that cannot be stacked is decoded on its own', async (t) => {
  // Per-tile optimised Huffman tables (generateSlide's default): no two tiles stack; the result is the same thumbnail.
  const p1 = join(dir, 'opt.tiff');
  const p2 = join(dir, 'std.tiff');
  await generateSlide({ path: p1, width: 1024, height: 1024, seed: 3, levels: 'single', tileSize: 256, chroma: '4:4:4' });
  await generateSlide({ path: p2, width: 1024, height: 1024, seed: 3, levels: 'single', tileSize: 256, chroma: '4:4:4', optimiseCoding: false });
  const s1 = await openSlide(p1, 'opt');
  const s2 = await openSlide(p2, 'std');
  t.teardown(async () => {
    await s1.close();
    await s2.close();
  });
  const a = await bands(s1, {});
  const b = await bands(s2, {});
  t.equal(a.method, 'jpeg');
  // Same pixels (Huffman coding is lossless, 4:4:4 has no chroma upsampling across tiles), except near each tile's
  // top and bottom: a stack is resized as one column, a lone tile on its own (lanczos3 reaches ~3 thumbnail rows).
  let diff = 0;
  let edge = 0;
  const W = 1024 / 16;
  for (let i = 0; i < a.data.length; i++) {
    const row = Math.floor(i / (W * 3)) % 16; // 256-px tiles: 16 thumbnail rows each
    const d = Math.abs(a.data[i]! - b.data[i]!);
    if (row >= 3 && row <= 12) diff = Math.max(diff, d);
    else edge = Math.max(edge, d);
  }
  t.ok(diff <= 1, `per-tile and stacked decodes agree away from tile tops and bottoms (max difference ${diff}; at the edges ${edge})`);
});

t.test('a strip TIFF 40,000 px wide is read in bounded column chunks', async (t) => {
  const path = join(dir, 'strip.tif');
  const w = 40_000;
  const h = 1024;
  await sharp({ create: { width: w, height: h, channels: 3, background: { r: 245, g: 243, b: 246 } } })
    .composite([{ input: { create: { width: 10_000, height: 900, channels: 3, background: { r: 150, g: 70, b: 160 } } }, left: 20_000, top: 0 }])
    .tiff({ compression: 'lzw' })
    .toFile(path);
  const s = await openSlide(path, 'strip');
  t.teardown(() => s.close());
  const kept: string[][] = [];
  // Default: full-width rows read once, box-averaged; exact: libvips' resize in column chunks (strips re-read per chunk).
  for (const [exact, method] of [[false, 'box'], [true, 'chunked']] as const) {
    const stats = { maxReadBytes: 0, maxBandBytes: 0 };
    const sel = new BandSelector(w, h, DEFAULT_TILE_PARAMS);
    const plan = thumbnailPlan(s, 16, { bandRows: 29, exact });
    t.equal(plan.method, method);
    for await (const b of thumbnailBands(s, 16, sel.cuts(), plan, stats)) if (!sel.done) sel.addBand(b.y, b.image);
    const limit = exact ? THUMBNAIL_LIMITS.bandBytes : THUMBNAIL_LIMITS.rowsBytes + 2 * stats.maxBandBytes;
    t.ok(stats.maxReadBytes > 0 && stats.maxReadBytes <= limit, `${method}: largest read ${stats.maxReadBytes} bytes <= ${limit}`);
    const xs = sel.positions.map((p) => p[0]);
    t.ok(xs.length > 0 && Math.min(...xs) >= 20_000 - 448 && Math.max(...xs) < 30_000, `${method}: kept ${xs.length} tiles, in the tissue`);
    kept.push(sel.positions.map((p) => p.join(',')));
  }
  t.same(kept[0], kept[1], 'box and exact keep the same tiles here');
});

t.test('too large: refused with E_SLIDE_TOO_LARGE naming the slide and the limit', async (t) => {
  // 8,000,000 px wide: a 30-row band of its 500,000 px thumbnail is 45 MB, over the 64 MiB limit with the halo.
  const path = join(dir, 'huge.tiff');
  await generateRepeatedTileSlide({ path, width: 8_000_000, height: 1024, tissue: [] });
  const s = await openSlide(path, 'huge');
  t.teardown(() => s.close());
  const err = thrown(() => thumbnailPlan(s, 16, { bandRows: 29 }));
  t.equal(err.code, 'E_SLIDE_TOO_LARGE');
  t.match(err.message, /"huge".*64 MiB limit of thumbnail rows/);
  // Through ProduceTiles: the stage fails with the same error, before any tile.
  const stage = produceTiles(DEFAULT_TILE_PARAMS);
  await t.rejects(async () => {
    for await (const _ of stage((async function* () { yield { image_id: 'huge', patient_id: 'p', image_num: 0, slidesDir: dir }; })(), ctx())) void _;
  }, { code: 'E_SLIDE_TOO_LARGE' });
  // Downsample 12 (not a power of two) of a 30,000 px single-level slide: once a whole read (2.1 GB, refused), now
  // area-averaged in column chunks within the band limit (thumbnail-stretch.ts); the first band is enough to see it.
  const p2 = join(dir, 'whole.tiff');
  await generateRepeatedTileSlide({ path: p2, width: 30_000, height: 30_000, tileSize: 256, tissue: [] });
  const s2 = await openSlide(p2, 'whole');
  t.teardown(() => s2.close());
  const plan2 = thumbnailPlan(s2, 12, { exact: true });
  t.equal(plan2.method, 'stretch');
  const stats = { maxReadBytes: 0, maxBandBytes: 0 };
  for await (const band of thumbnailBands(s2, 12, [0, 2, plan2.height], plan2, stats)) {
    t.equal(band.image.data.length, 2500 * 2 * 3, 'the first band');
    break;
  }
  t.ok(stats.maxReadBytes > 0 && stats.maxReadBytes <= THUMBNAIL_LIMITS.bandBytes, `its largest read (${stats.maxReadBytes} bytes) is within the ${THUMBNAIL_LIMITS.bandBytes}-byte band limit`);
});

t.test('a strip TIFF stored as one huge strip is refused (its decoder unit is over the limit)', async (t) => {
  // A classic TIFF, 20,000 x 10,000 RGB, uncompressed, declared as ONE strip (600 MB decoded); the pixels are absent.
  const w = 20_000;
  const h = 10_000;
  const tags: Array<[number, number, number]> = [
    [256, 4, w], [257, 4, h], [258, 3, 8], [259, 3, 1], [262, 3, 2], [273, 4, 8], [277, 3, 3], [278, 4, h], [279, 4, w * h * 3], [284, 3, 1],
  ];
  const ifdAt = 8 + 64;
  const buf = Buffer.alloc(ifdAt + 2 + tags.length * 12 + 4);
  buf.write('II', 0, 'latin1');
  buf.writeUInt16LE(42, 2);
  buf.writeUInt32LE(ifdAt, 4);
  buf.writeUInt16LE(tags.length, ifdAt);
  tags.forEach(([tag, type, v], i) => {
    const o = ifdAt + 2 + i * 12;
    buf.writeUInt16LE(tag, o);
    buf.writeUInt16LE(type, o + 2);
    buf.writeUInt32LE(1, o + 4);
    if (type === 3) buf.writeUInt16LE(v, o + 8);
    else buf.writeUInt32LE(v, o + 8);
  });
  const path = join(dir, 'onestrip.tif');
  writeFileSync(path, buf);
  let s: SlideReader;
  try {
    s = await openSlide(path, 'onestrip');
  } catch (err) {
    // libvips may refuse the truncated file at open: then it never reaches the thumbnail either.
    t.match((err as SlideError).code, /^E_SLIDE_/);
    return;
  }
  t.teardown(() => s.close());
  t.equal(s.storage!(0)!.unitBytes, w * h * 3);
  const err = thrown(() => thumbnailPlan(s, 16, { bandRows: 29 }));
  t.equal(err.code, 'E_SLIDE_TOO_LARGE');
  t.match(err.message, /"onestrip".*one strip\/tile of level 0 decodes to 572 MiB, over the 512 MiB limit/);
});

t.test('shared slides read as level 0 only: the JPEG path decodes them, selection close to the exact path', async (t) => {
  const CMU = new URL('../../../shared/testdata/slides/cmu-1-small-region.svs', import.meta.url).pathname;
  if (!existsSync(CMU)) {
    t.skip('test data missing: ../shared/testdata/slides/cmu-1-small-region.svs');
    return;
  }
  const s = await openSlide(CMU, 'cmu');
  t.teardown(() => s.close());
  const pick = async (opts: ThumbnailOptions): Promise<{ method: string; keys: Set<string> }> => {
    const sel = new BandSelector(s.width, s.height, DEFAULT_TILE_PARAMS);
    const plan = thumbnailPlan(s, 16, opts);
    for await (const b of thumbnailBands(s, 16, sel.cuts(), plan)) if (!sel.done) sel.addBand(b.y, b.image);
    return { method: plan.method, keys: new Set(sel.positions.map((p) => p.join(','))) };
  };
  const fast = await pick({});
  const exact = await pick({ exact: true });
  t.equal(fast.method, 'jpeg');
  t.equal(exact.method, 'resize');
  const differ = [...fast.keys].filter((k) => !exact.keys.has(k)).length + [...exact.keys].filter((k) => !fast.keys.has(k)).length;
  t.ok(exact.keys.size > 0 && differ <= Math.max(2, exact.keys.size * 0.05), `${differ} tiles differ in keep/drop (exact keeps ${exact.keys.size})`);
});

t.test('a damaged JPEG tile fails the thumbnail naming the slide and the tile: E_TILE_CORRUPT (the check), E_SLIDE_READ (unchecked)', async (t) => {
  const path = join(dir, 'damaged.tiff');
  await generateRepeatedTileSlide({ path, width: 2048, height: 2048, tissue: [] });
  const fh = await open(path, 'r+');
  try {
    const ifd = (await parseTiff(fh)).ifds[0]!;
    await fh.write(Buffer.from([0, 0]), 0, 2, ifd.offsets[0]!); // every tile shares this stream: its SOI is gone
  } finally {
    await fh.close();
  }
  const s = await openSlide(path, 'damaged');
  t.teardown(() => s.close());
  // Every tile is damaged and columns are read concurrently: whichever is found first, its name must be consistent.
  const err = await bands(s, {}).then(() => undefined, (e: unknown) => e as { code?: string; message?: string; tile?: { x: number; y: number } });
  t.match(err, { code: 'E_TILE_CORRUPT', message: /"damaged".*tile at level-0 x \d+, y \d+ \(512x512 px; JPEG tile \d+ of TIFF page 0\) is corrupt: Not a JPEG file: no SOI marker/ });
  const [, x, y, index] = /x (\d+), y (\d+) .*JPEG tile (\d+) of/.exec(err?.message ?? '')?.map(Number) ?? [];
  t.equal(index, (y! / 512) * 4 + x! / 512, `the tile's index matches its position (${x}, ${y})`);
  t.same(err?.tile && [err.tile.x, err.tile.y], [x, y], 'and the error carries that tile');
  // Unchecked (--jpeg-check off), the stacking of the 'jpeg' thumbnail finds it too.
  const off = await openSlide(path, 'damaged', { jpegCheck: 'off' });
  t.teardown(() => off.close());
  await t.rejects(bands(off, {}), { code: 'E_SLIDE_READ', message: /"damaged".*JPEG tile \d+ \(column \d+, row \d+\): JPEG tile does not start with SOI/ });
});

t.test('a chunked band taller than its limit allows is refused, not read', async (t) => {
  const path = join(dir, 'single-2000.tiff');
  const s = await openSlide(path, 'tall');
  t.teardown(() => s.close());
  // Chunks of one thumbnail column for 29-row bands; one band of the whole height (93 rows) cannot fit.
  const plan = thumbnailPlan(s, 16, { exact: true, bandRows: 29, bandBytes: 3 * 16 * 16 * (29 + 16) * 17 });
  t.equal(plan.method, 'chunked');
  await t.rejects(async () => {
    for await (const _ of thumbnailBands(s, 16, [0, plan.height], plan)) void _;
  }, { code: 'E_SLIDE_TOO_LARGE', message: /"tall".*band 0-93/ });
});
