/**
 * Single-level slides (no usable pyramid level): peak RSS of one worker-like process running ProduceTiles on
 * tiled and strip single-level slides of 16k and 100k px width next to pyramidal ones of the same size, and the
 * thumbnail's CPU and wall seconds on a 46,177 x 77,440 JPEG-tiled single-level slide, before (the old
 * full-width band path: exact, no band limit) and after (the default: level 0's JPEG tiles at 1/8 scale), runs
 * alternated in the same session, medians. Each measurement is a fresh child process with the workers' glibc
 * allocator settings (engine/allocator.ts); its peak RSS is its own maxRSS, its CPU its own user + system time.
 * Run: npx tsc -p . && node dist/bench/single-level.js [--memory-only | --thumbnail-only] [--runs N]
 * Returns (and prints) the figures; slides are cached in .cache/bench-single-level.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { workerEnv } from '../engine/allocator.js';
import { configureSharpForWorker } from '../stages/slides/backend-sharp.js';
import { openSlide } from '../stages/slides/open.js';
import { generateRepeatedTileSlide, generateSlide } from '../stages/slides/synthetic.js';
import { thumbnailBands, thumbnailPlan, type ThumbnailOptions } from '../stages/slides/thumbnail-bands.js';
import { BandSelector } from '../stages/slides/tile-select.js';
import { DEFAULT_TILE_PARAMS } from '../stages/slides/tile-params.js';
import { produceTiles } from '../stages/produce-tiles.js';

const DIR = '.cache/bench-single-level';
const HEIGHT = 8192;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export interface ChildFigures {
  readonly method: string;
  readonly peak_rss_mb: number;
  readonly cpu_s: number;
  readonly wall_s: number;
  readonly kept: number;
}

/** In the child: the thumbnail (and, with tiles > 0, that many tiles through ProduceTiles) of one slide. */
async function child(path: string, mode: string, tiles: number): Promise<ChildFigures> {
  configureSharpForWorker();
  const opts: ThumbnailOptions = mode === 'before' ? { exact: true, bandBytes: Number.MAX_SAFE_INTEGER } : mode === 'exact' ? { exact: true } : {};
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const s = await openSlide(path, 'bench');
  const plan = thumbnailPlan(s, 16, { bandRows: 29, ...opts });
  let kept = 0;
  if (tiles === 0) {
    const sel = new BandSelector(s.width, s.height, DEFAULT_TILE_PARAMS);
    for await (const b of thumbnailBands(s, 16, sel.cuts(), plan)) if (!sel.done) sel.addBand(b.y, b.image);
    kept = sel.positions.length;
    await s.close();
  } else {
    await s.close();
    const slidesDir = path.replace(/\/[^/]*$/, '');
    const image_id = path.replace(/^.*\//, '').replace(/\.tiff?$/, '');
    const ctx = {
      signal: new AbortController().signal,
      name: 'bench',
      metrics: { name: 'bench', elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} },
      tiles: { limit: 64, inUse: 0, maxInUse: 0, acquire: async () => undefined, release: () => undefined },
    };
    const stage = produceTiles({ ...DEFAULT_TILE_PARAMS, maxTiles: tiles }, { thumbnail: opts, onSummary: () => undefined });
    for await (const _ of stage((async function* () { yield { image_id, patient_id: 'p', image_num: 0, slidesDir }; })(), ctx)) {
      void _;
      kept++;
    }
  }
  const cu = process.cpuUsage(c0);
  return { method: plan.method, peak_rss_mb: process.resourceUsage().maxRSS / 1024, cpu_s: (cu.user + cu.system) / 1e6, wall_s: (performance.now() - t0) / 1000, kept };
}

function run(path: string, mode: string, tiles: number): ChildFigures {
  const self = fileURLToPath(import.meta.url);
  const out = execFileSync(process.execPath, [self, '--child', path, mode, String(tiles)], { env: workerEnv(), encoding: 'utf8', maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').pop()!) as ChildFigures;
}

async function cached(path: string, make: (tmp: string) => Promise<unknown>): Promise<string> {
  if (!existsSync(path)) {
    const tmp = `${path}.part`;
    await make(tmp);
    renameSync(tmp, path);
  }
  return path;
}

const rectTissue = (w: number, h: number) => [{ kind: 'rect' as const, x: w * 0.2, y: h * 0.2, w: w * 0.6, h: h * 0.6 }];

async function memorySlides(w: number): Promise<Record<string, string>> {
  return {
    pyramidal: await cached(join(DIR, `pyr-${w}.tiff`), (p) => generateRepeatedTileSlide({ path: p, width: w, height: HEIGHT, levels: 'pyramid', tissue: rectTissue(w, HEIGHT) })),
    'single tiled': await cached(join(DIR, `single-${w}.tiff`), (p) => generateRepeatedTileSlide({ path: p, width: w, height: HEIGHT, tissue: rectTissue(w, HEIGHT) })),
    'single strip': await cached(join(DIR, `strip-${w}.tif`), (p) =>
      sharp({ create: { width: w, height: HEIGHT, channels: 3, background: { r: 246, g: 244, b: 247 } }, limitInputPixels: false })
        .composite([{ input: { create: { width: Math.round(w * 0.6), height: Math.round(HEIGHT * 0.6), channels: 3, background: { r: 120, g: 60, b: 160 } } }, left: Math.round(w * 0.2), top: Math.round(HEIGHT * 0.2) }])
        .tiff({ compression: 'lzw' })
        .toFile(p)),
  };
}

export interface SingleLevelFigures {
  memory: Array<{ width: number; height: number; kind: string; mode: string } & ChildFigures>;
  thumbnail?: { slide: string; runs: Record<string, ChildFigures[]>; median_cpu_s: Record<string, number>; median_wall_s: Record<string, number> };
}

export async function benchSingleLevel(opts: { memory?: boolean; thumbnail?: boolean; runs?: number } = {}): Promise<SingleLevelFigures> {
  mkdirSync(DIR, { recursive: true });
  const figures: SingleLevelFigures = { memory: [] };
  if (opts.memory ?? true) {
    for (const w of [16384, 100_000]) {
      const slides = await memorySlides(w);
      for (const [kind, path] of Object.entries(slides)) {
        for (const mode of kind === 'single tiled' ? ['after', 'exact'] : ['after']) {
          const f = run(path, mode, 100);
          figures.memory.push({ width: w, height: HEIGHT, kind, mode, ...f });
          console.log(`memory ${w}x${HEIGHT} ${kind} (${mode}, ${f.method}): peak RSS ${f.peak_rss_mb.toFixed(0)} MB, ${f.kept} tiles, ${f.cpu_s.toFixed(1)} CPU s, ${f.wall_s.toFixed(1)} s`);
        }
      }
    }
  }
  if (opts.thumbnail ?? true) {
    const path = await cached(join(DIR, 'single-46177x77440.tiff'), (p) =>
      generateSlide({ path: p, width: 46_177, height: 77_440, seed: 11, levels: 'single', tileSize: 256, optimiseCoding: false }));
    const runs: Record<string, ChildFigures[]> = { before: [], after: [] };
    for (let i = 0; i < (opts.runs ?? 3); i++) {
      for (const mode of ['before', 'after']) {
        const f = run(path, mode, 0);
        runs[mode]!.push(f);
        console.log(`thumbnail 46177x77440 ${mode} (${f.method}): ${f.cpu_s.toFixed(1)} CPU s, ${f.wall_s.toFixed(1)} s wall, peak RSS ${f.peak_rss_mb.toFixed(0)} MB, ${f.kept} tiles kept`);
      }
    }
    const m = (k: 'cpu_s' | 'wall_s'): Record<string, number> => Object.fromEntries(Object.entries(runs).map(([mode, r]) => [mode, median(r.map((x) => x[k]))]));
    figures.thumbnail = { slide: path, runs, median_cpu_s: m('cpu_s'), median_wall_s: m('wall_s') };
    console.log(`thumbnail medians: CPU s ${JSON.stringify(figures.thumbnail.median_cpu_s)}, wall s ${JSON.stringify(figures.thumbnail.median_wall_s)}`);
  }
  const cpu = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? 'unknown';
  console.log(`CPU: ${cpu}`);
  return figures;
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  const f = await child(argv[1]!, argv[2]!, Number(argv[3]));
  console.log(JSON.stringify(f));
} else if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const runsAt = argv.indexOf('--runs');
  await benchSingleLevel({ memory: !argv.includes('--thumbnail-only'), thumbnail: !argv.includes('--memory-only'), runs: runsAt >= 0 ? Number(argv[runsAt + 1]) : 3 });
}
