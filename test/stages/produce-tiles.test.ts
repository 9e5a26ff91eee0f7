import t from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { columnRuns, produceTiles, REPORT_PICTURE_PX } from '../../stages/produce-tiles.js';
import { generateSlide, type TissueShape } from '../../stages/slides/synthetic.js';
import { DEFAULT_TILE_PARAMS } from '../../stages/slides/tile-params.js';
import { openSlide } from '../../stages/slides/open.js';
import type { SlideReader } from '../../stages/slides/reader.js';
import type { SlideSummary, Tile } from '../../stages/types.js';
import type { ItemShare } from '../../engine/types.js';
import { from, makeCtx } from '../helpers/ctx.js';

const dir = mkdtempSync(join(tmpdir(), 'tiles-test-'));
/** A rectangle in thumbnail pixels (16 level-0 px each). */
const R = (c: number, r: number, w: number, h: number): TissueShape => ({ kind: 'rect', x: c * 16, y: r * 16, w: w * 16, h: h * 16 });
const exact = { seed: 1, texture: false, chroma: '4:4:4' as const, quality: 95, background: { color: [255, 255, 255] as const, gradient: 0, noise: 0 } };

// 2340 x 1400: 5 x 3 full tiles (thumbnail 146 x 87), partial right column and bottom row.
const W = 2340;
const H = 1400;
const tissue: TissueShape[] = [
  R(0, 0, 28, 28), // tile (0,0): all tissue -> kept
  R(31, 0, 25, 28), R(30, 22, 1, 6), // tile (448,0): 78 background px -> kept
  R(59, 0, 25, 28), R(58, 23, 1, 5), // tile (896,0): 79 background px -> dropped
  R(28, 56, 28, 28), // tile (448,896): kept
  R(140, 0, 6, 87), R(0, 84, 146, 3), // partial edge column / row: never tiles
];
const task = (image_id: string) => ({ image_id, patient_id: 'P1', image_num: 0, slidesDir: dir });

t.before(async () => {
  await generateSlide({ path: join(dir, 'exact.tiff'), width: W, height: H, tissue, ...exact });
  await generateSlide({ path: join(dir, 'small.tiff'), width: 400, height: 2000, tissue: [R(0, 0, 25, 125)], ...exact });
});

async function collect(stage: AsyncIterable<Tile>): Promise<Tile[]> {
  const out: Tile[] = [];
  for await (const tile of stage) out.push(tile);
  return out;
}

t.test('known geometry: exactly the expected tiles, thumbnail from level /16', async (t) => {
  const summaries: SlideSummary[] = [];
  const ctx = makeCtx();
  const tiles = await collect(produceTiles(DEFAULT_TILE_PARAMS, { onSummary: (s) => summaries.push(s) })(from([task('exact')]), ctx));
  t.same(tiles.map((x) => [x.x, x.y]), [[0, 0], [448, 0], [448, 896]]);
  const s = summaries[0]!;
  t.same(s.levels.map((d) => Math.round(d * 100) / 100), [1, 4, 16.06], 'levels are floor-sized: 2340/146 and 1400/87 average to 16.06');
  t.equal(s.thumbnailLevel, 2, 'thumbnail read from the /16 level');
  t.equal(s.tiles_total, 15);
  t.equal(s.tiles_kept, 3);
  t.equal(s.backend, 'sharp');
  t.same([...s.thumbnailPng.subarray(1, 4)], [0x50, 0x4e, 0x47], 'thumbnail is a PNG');
  t.same([...s.maskPng.subarray(1, 4)], [0x50, 0x4e, 0x47], 'mask is a PNG');
  const first = tiles[0]!;
  t.match(first, { image_id: 'exact', patient_id: 'P1', image_num: 0, size: 448 });
  t.equal(first.pixels.length, 448 * 448 * 3);
  let maxErr = 0;
  for (let i = 0; i < first.pixels.length; i += 3) maxErr = Math.max(maxErr, Math.abs(first.pixels[i]! - 120), Math.abs(first.pixels[i + 1]! - 60), Math.abs(first.pixels[i + 2]! - 160));
  t.ok(maxErr <= 4, `tile (0,0) is the flat tissue colour (max error ${maxErr})`);
  // The 78-px tile really has white pixels at its left: column 0 of the tile is background.
  const second = tiles[1]!;
  t.ok(second.pixels[0]! > 250 && second.pixels[(447 * 448 + 447) * 3]! < 130, 'tile (448,0): white left edge, tissue right');
  t.equal(ctx.metrics.custom.tiles_kept, 3);
  t.equal(ctx.tiles.inUse, 3, 'every emitted tile holds one budget token until the consumer releases it');
});

t.test('maxTiles keeps the first tiles in row-major order', async (t) => {
  const tiles = await collect(produceTiles({ ...DEFAULT_TILE_PARAMS, maxTiles: 2 })(from([task('exact')]), makeCtx()));
  t.same(tiles.map((x) => [x.x, x.y]), [[0, 0], [448, 0]]);
});

t.test('columnRuns: vertical runs of adjacent tiles, stripe by stripe of `max` rows, column by column', async (t) => {
  const T = 10;
  // Row-major, as the selection gives them: a 3 x 5 block with holes.
  const grid = ['xx.', 'x.x', 'x.x', 'xxx', '..x'];
  const positions: Array<[number, number]> = [];
  grid.forEach((row, r) => [...row].forEach((c, col) => c === 'x' && positions.push([col * T, r * T])));
  t.same(columnRuns(positions, T, 8), [
    [[0, 0], [0, 10], [0, 20], [0, 30]],
    [[10, 0]],
    [[10, 30]],
    [[20, 10], [20, 20], [20, 30], [20, 40]],
  ]);
  // Stripes of 2 rows: no run crosses rows 1|2 or 3|4.
  t.same(columnRuns(positions, T, 2), [
    [[0, 0], [0, 10]], [[10, 0]], [[20, 10]],
    [[0, 20], [0, 30]], [[10, 30]], [[20, 20], [20, 30]],
    [[20, 40]],
  ]);
  t.same(columnRuns([], T, 8), []);
});

t.test('a column run is one read: its tiles are slices of one buffer, byte-identical to tile-by-tile reads', async (t) => {
  const path = join(dir, 'column.tiff');
  await generateSlide({ path, width: 2240, height: 4032, seed: 3, tissue: [{ kind: 'rect', x: 0, y: 0, w: 2240, h: 4032 }] });
  const whole = await collect(produceTiles(DEFAULT_TILE_PARAMS)(from([task('column')]), makeCtx()));
  const single = await collect(produceTiles(DEFAULT_TILE_PARAMS, { bandTiles: 1 })(from([task('column')]), makeCtx()));
  t.equal(whole.length, 5 * 9, 'every tile of the all-tissue slide');
  const key = (x: Tile): string => `${x.x},${x.y}`;
  const byKey = new Map(single.map((x) => [key(x), x]));
  t.ok(whole.every((x) => Buffer.compare(x.pixels, byKey.get(key(x))!.pixels) === 0), 'same pixels as one read per tile');
  t.equal(whole[0]!.x, 0);
  t.same(whole.slice(0, 8).map((x) => x.y), [0, 448, 896, 1344, 1792, 2240, 2688, 3136], 'the first run is a column of 8');
  t.ok(whole.slice(0, 8).every((x) => x.pixels.buffer === whole[0]!.pixels.buffer), 'the run shares one buffer (no copies)');
  t.not(whole[8]!.pixels.buffer, whole[0]!.pixels.buffer, 'the next run has its own');
  t.ok(single.every((x) => x.pixels.byteLength === 448 * 448 * 3));
});

t.test('a slide narrower than one tile: E_SLIDE_TOO_SMALL naming the slide', async (t) => {
  await t.rejects(collect(produceTiles(DEFAULT_TILE_PARAMS)(from([task('small')]), makeCtx())), { code: 'E_SLIDE_TOO_SMALL', image_id: 'small', message: /400x2000 is smaller than one 448x448 tile/ });
});

t.test('missing slide and bad image_id', async (t) => {
  await t.rejects(collect(produceTiles(DEFAULT_TILE_PARAMS)(from([task('nope')]), makeCtx())), { code: 'E_SLIDE_MISSING', image_id: 'nope' });
  await t.rejects(collect(produceTiles(DEFAULT_TILE_PARAMS)(from([task('../exact')]), makeCtx())), { code: 'E_BAD_IMAGE_ID' });
});

/** openSlide, counting open and closed readers. */
function watched() {
  const state = { opened: 0, closed: 0 };
  const open = async (path: string, id: string): Promise<SlideReader> => {
    const r = await openSlide(path, id);
    state.opened++;
    return { ...r, image_id: r.image_id, path: r.path, backend: r.backend, width: r.width, height: r.height, levels: r.levels, readRegion: r.readRegion.bind(r), thumbnail: r.thumbnail.bind(r), close: async () => { state.closed++; await r.close(); } };
  };
  return { state, open };
}

t.test('backpressure: with a budget of 2 tiles and a consumer that releases nothing, the stage stops after 2', async (t) => {
  const ctx = makeCtx({ limit: 2 });
  const ac = new AbortController();
  const stage = produceTiles(DEFAULT_TILE_PARAMS)(from([task('exact')]), { ...ctx, signal: ac.signal });
  const it = stage[Symbol.asyncIterator]();
  const a = await it.next();
  const b = await it.next();
  t.notOk(a.done || b.done);
  t.equal(ctx.tiles.acquired, 2);
  // The third pull waits for budget: the producer did not decode a third tile.
  let third = false;
  const p = it.next().then(() => (third = true), (e: unknown) => e);
  await new Promise((r) => setImmediate(r));
  t.equal(third, false, 'third tile waits');
  t.equal(ctx.tiles.acquired, 2, 'no third tile acquired');
  ctx.tiles.release(1); // consumer drops one tile
  await p;
  t.equal(third, true, 'third tile flows after a release');
  t.equal(ctx.tiles.maxInUse, 2, 'never more than the budget in memory');
  await it.return?.(undefined); // closes the slide (else its file is closed by the garbage collector, with a warning)
});

t.test('cleanup: an early return closes the slide and gives back unconsumed budget', async (t) => {
  const w = watched();
  const ctx = makeCtx();
  for await (const tile of produceTiles(DEFAULT_TILE_PARAMS, { open: w.open })(from([task('exact')]), ctx)) {
    t.equal(tile.x, 0);
    break;
  }
  t.same(w.state, { opened: 1, closed: 1 });
  // 2 tiles (the run (0,0),(448,0)) were acquired; one went downstream, one was returned.
  t.equal(ctx.tiles.inUse, 1, 'only the consumed tile is still held');
});

/**
 * One claim counter shared in-process, as the fan-out keeps it for a shared slide's participants, that hands the
 * parts out in turns (part i to participant i % 2), so the split does not depend on which one is faster.
 */
function turnCounter() {
  let next = 0;
  const totals: number[] = [];
  let waiting: Array<() => void> = [];
  const share = (participant: number): ItemShare => ({
    participant,
    claim: async (total) => {
      totals.push(total);
      while (next < total && next % 2 !== participant) await new Promise<void>((resolve) => waiting.push(resolve));
      const index = next++;
      const wake = waiting;
      waiting = [];
      for (const w of wake) w();
      return index;
    },
  });
  return { totals, share };
}

t.test('a shared slide: participants read disjoint runs that make up the selection; only participant 0 summarizes', async (t) => {
  const { totals, share } = turnCounter();
  const summaries: SlideSummary[] = [];
  const [c0, c1] = [makeCtx(), makeCtx()];
  // bandTiles 1: every kept tile is its own run, so the 3 tiles are 3 parts.
  const run = (participant: number, ctx: typeof c0) =>
    collect(produceTiles(DEFAULT_TILE_PARAMS, { bandTiles: 1, onSummary: (s) => summaries.push(s), share: share(participant) })(from([task('exact')]), ctx));
  const [a, b] = await Promise.all([run(0, c0), run(1, c1)]);
  const key = (x: Tile) => `${x.x},${x.y}`;
  t.same([...a, ...b].map(key).sort(), ['0,0', '448,0', '448,896'], 'every kept tile once, across both');
  t.equal(new Set([...a, ...b].map(key)).size, 3, 'none twice');
  t.same([a.map(key), b.map(key)], [['0,0', '448,896'], ['448,0']], 'each read the runs it claimed (parts 0, 2 and 1)');
  t.same([...new Set(totals)], [3], 'both split the slide into the same 3 runs');
  t.equal(summaries.length, 1, 'one summary, from participant 0');
  t.equal(summaries[0]?.tiles_kept, 3, 'with the whole selection');
  t.equal(c0.metrics.custom.tiles_kept, 3);
  t.equal(c1.metrics.custom.tiles_kept, undefined, 'a joiner does not count the selection again');
});

t.test('a shared slide whose runs are all claimed already: no tile read, the slide closed', async (t) => {
  const w = watched();
  const ctx = makeCtx();
  const late: ItemShare = { participant: 1, claim: async (total) => total };
  const tiles = await collect(produceTiles(DEFAULT_TILE_PARAMS, { open: w.open, share: late })(from([task('exact')]), ctx));
  t.same(tiles, []);
  t.same(w.state, { opened: 1, closed: 1 });
  t.equal(ctx.tiles.inUse, 0, 'no budget held');
});

t.test('abort while waiting for budget: rejects, closes the slide', async (t) => {
  const w = watched();
  const ac = new AbortController();
  const ctx = makeCtx({ limit: 1, signal: ac.signal });
  const got: Tile[] = [];
  const run = (async () => {
    for await (const tile of produceTiles(DEFAULT_TILE_PARAMS, { open: w.open })(from([task('exact')]), ctx)) {
      got.push(tile);
      ac.abort(new Error('stop'));
    }
  })();
  await t.rejects(run, /stop/);
  t.equal(got.length, 1);
  t.same(w.state, { opened: 1, closed: 1 });
});

t.test('memory stays flat while streaming many tiles from a 32k x 32k slide', async (t) => {
  const path = join(dir, 'big.tiff');
  const big = 32768;
  await generateSlide({ path, width: big, height: big, seed: 7, tissue: [{ kind: 'rect', x: 4480, y: 4480, w: 448 * 20, h: 448 * 8 }, { kind: 'ellipse', cx: 20000, cy: 20000, rx: 3000, ry: 2000 }] });
  const ctx = makeCtx({ limit: 16 });
  let n = 0;
  let base = 0;
  let peak = 0;
  const summaries: SlideSummary[] = [];
  for await (const tile of produceTiles({ ...DEFAULT_TILE_PARAMS, maxTiles: 240 }, { onSummary: (s) => summaries.push(s) })(from([task('big')]), ctx)) {
    t.equal(tile.pixels.length, 448 * 448 * 3);
    ctx.tiles.release(1);
    n++;
    if (n === 40) {
      global.gc?.();
      base = process.memoryUsage().rss;
    }
    if (n > 40) peak = Math.max(peak, process.memoryUsage().rss);
  }
  t.equal(n, 240);
  const growthMb = (peak - base) / 1e6;
  t.ok(growthMb < 150, `RSS growth over 200 tiles (120 MB of pixels): ${growthMb.toFixed(1)} MB`);
  t.equal(ctx.tiles.maxInUse <= 16, true);
  // The 2048 px thumbnail is shrunk for the report's pictures.
  for (const png of [summaries[0]!.thumbnailPng, summaries[0]!.maskPng]) {
    const meta = await sharp(png).metadata();
    t.same([meta.width, meta.height], [REPORT_PICTURE_PX, REPORT_PICTURE_PX], 'report picture capped');
  }
});
