/**
 * Slide benchmark: thumbnail time and tile-read throughput (one core: sharp.concurrency(1), one tile
 * request in flight) on generated JPEG-tiled pyramidal BigTIFFs of 4k, 16k and 64k px a side.
 * Run: npx tsc -p . && node dist/bench/slides.js   (slides are cached in .cache/bench-slides)
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import sharp from 'sharp';
import { generateSlide } from '../stages/slides/synthetic.js';
import { openSlide } from '../stages/slides/open.js';
import { configureSharpForWorker } from '../stages/slides/backend-sharp.js';
import { produceTiles } from '../stages/produce-tiles.js';
import { DEFAULT_TILE_PARAMS } from '../stages/slides/tile-params.js';

configureSharpForWorker();
const dir = '.cache/bench-slides';
mkdirSync(dir, { recursive: true });
const RUNS = 5;
const TILES = 300;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function slide(n: number): Promise<string> {
  const path = `${dir}/syn-${n}.tiff`;
  if (!existsSync(path)) {
    const t0 = performance.now();
    // Tissue: a textured ellipse and band in the middle (~10% of the area).
    await generateSlide({ path, width: n, height: n, seed: 11, tissue: [{ kind: 'ellipse', cx: n / 2, cy: n / 2, rx: n * 0.18, ry: n * 0.12 }, { kind: 'band', x0: n * 0.2, y0: n * 0.7, x1: n * 0.8, y1: n * 0.75, halfWidth: n * 0.02 }] });
    console.log(`generated ${path} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return path;
}

async function tileRate(path: string, bandTiles: number): Promise<number> {
  const ctx = {
    signal: new AbortController().signal,
    name: 'bench',
    metrics: { name: 'bench', elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} },
    tiles: { limit: 64, inUse: 0, maxInUse: 0, acquire: async () => undefined, release: () => undefined },
  };
  const task = { image_id: path.replace(/^.*\//, '').replace(/\.tiff$/, ''), patient_id: 'p', image_num: 0, slidesDir: dir };
  let n = 0;
  let t0 = 0;
  for await (const _ of produceTiles({ ...DEFAULT_TILE_PARAMS, maxTiles: TILES + 10 }, { bandTiles })((async function* () { yield task; })(), ctx)) {
    void _;
    if (++n === 1) t0 = performance.now(); // exclude open + thumbnail + selection (and the first band)
  }
  return n < 20 ? NaN : ((n - 1) / (performance.now() - t0)) * 1000;
}

async function extractRate(path: string): Promise<number> {
  const s = await openSlide(path, 'x');
  const { image } = await s.thumbnail(16);
  await s.close();
  const { selectTiles } = await import('../stages/slides/tile-select.js');
  const pos = selectTiles(s.width, s.height, image, DEFAULT_TILE_PARAMS).positions.slice(0, 100);
  const t0 = performance.now();
  for (const [x, y] of pos) await sharp(path, { limitInputPixels: false }).extract({ left: x, top: y, width: 448, height: 448 }).raw().toBuffer();
  return (pos.length / (performance.now() - t0)) * 1000;
}

const rows: string[] = [];
for (const n of [4096, 16384, 65536]) {
  const path = await slide(n);
  const thumbs: number[] = [];
  let level = -1;
  for (let i = 0; i < RUNS; i++) {
    const s = await openSlide(path, 'x');
    const t0 = performance.now();
    level = (await s.thumbnail(16)).level;
    thumbs.push(performance.now() - t0);
    await s.close();
  }
  const band = [];
  const single = [];
  const extract = [];
  for (let i = 0; i < 3; i++) {
    band.push(await tileRate(path, 8));
    single.push(await tileRate(path, 1));
    extract.push(await extractRate(path));
  }
  const row = `| ${n} x ${n} | ${(readFileSync(path).length / 1e6).toFixed(0)} MB | ${level} | ${median(thumbs).toFixed(0)} | ${median(band).toFixed(0)} | ${median(single).toFixed(0)} | ${median(extract).toFixed(0)} |`;
  console.log(row);
  rows.push(row);
}

const cpu = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? 'unknown';
const md = `# Slide reading benchmark

Machine: ${cpus().length} CPUs visible (${cpu}), shared with other jobs (noisy: medians, same-run ratios).
Generated JPEG-tiled (256 px, q85, 4:2:0) pyramidal BigTIFFs, levels /1 /4 /16 /64...; ~10% textured tissue.
One core: \`sharp.concurrency(1)\`, one request in flight. Thumbnail = 1/16 via \`SlideReader.thumbnail(16)\`
(median of ${RUNS}); tile rates = 448x448 RGB tiles/s through \`produceTiles\` (median of 3 runs of up to ${TILES} tiles; NaN when the slide has < 20 kept tiles):
"band 8" reads up to 8 adjacent kept tiles per region read (the default), "per tile" one region per tile;
"sharp extract" is the naive \`sharp(file).extract()\` per tile (re-opens and re-parses the TIFF each time).

| slide | file | thumbnail level | thumbnail ms | tiles/s band 8 | tiles/s per tile | tiles/s sharp extract |
|---|---|---|---|---|---|---|
${rows.join('\n')}
`;
writeFileSync('bench/RESULTS-slides.md', md);
console.log(md);
