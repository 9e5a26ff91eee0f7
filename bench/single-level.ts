/**
 * Single-level slides (no usable pyramid level): peak RSS of one worker-like process running ProduceTiles on
 * tiled and strip single-level slides of 16k and 100k px width next to pyramidal ones of the same size, and the
 * thumbnail's CPU and wall seconds on a 46,177 x 77,440 JPEG-tiled single-level slide, before (the old
 * full-width band path: exact, no band limit) and after (the default: level 0's JPEG tiles at 1/8 scale), runs
 * alternated in the same session, medians. Each measurement is a fresh child process with the workers' glibc
 * allocator settings (engine/allocator.ts); its peak RSS is its own maxRSS, its CPU its own user + system time.
 * Also: how many tiles the JPEG path keeps or drops differently from the exact path, on the shared slides read as
 * level 0 only and on generated single-level slides.
 * Run: npx tsc -p . && node dist/bench/single-level.js [--keep-drop-only | --memory-only | --thumbnail-only] [--runs N]
 * Returns (and prints) the figures; slides are cached in .cache/bench-single-level.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { workerEnv } from '../engine/allocator.js';
import { configureSharpForWorker } from '../stages/slides/backend-sharp.js';
import { openSlide } from '../stages/slides/open.js';
import type { SlideReader } from '../stages/slides/reader.js';
import type { Figure } from './figure.js';
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
  // before: the old path (exact, full-width bands, no band limit); after: the default; after-1: one sharp call in flight.
  const opts: ThumbnailOptions = mode === 'before' ? { exact: true, bandBytes: Number.MAX_SAFE_INTEGER } : mode === 'exact' ? { exact: true } : mode === 'after-1' ? { threads: 1 } : {};
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

/** An LZW strip TIFF (libvips' strips), off-white with the same centred tissue rectangle, in pieces under sharp's pixel limit. */
function stripSlide(path: string, w: number, h: number): Promise<unknown> {
  const rw = Math.round(w * 0.6);
  const rh = Math.round(h * 0.6);
  const piece = Math.max(1, Math.floor(1e8 / rw));
  const pieces = [];
  for (let y = 0; y < rh; y += piece) {
    pieces.push({ input: { create: { width: rw, height: Math.min(piece, rh - y), channels: 3 as const, background: { r: 120, g: 60, b: 160 } } }, left: Math.round(w * 0.2), top: Math.round(h * 0.2) + y });
  }
  return sharp({ create: { width: w, height: h, channels: 3, background: { r: 246, g: 244, b: 247 } }, limitInputPixels: false }).composite(pieces).tiff({ compression: 'lzw' }).toFile(path);
}

async function memorySlides(w: number): Promise<Record<string, string>> {
  return {
    pyramidal: await cached(join(DIR, `pyr-${w}.tiff`), (p) => generateRepeatedTileSlide({ path: p, width: w, height: HEIGHT, levels: 'pyramid', tissue: rectTissue(w, HEIGHT) })),
    'single tiled': await cached(join(DIR, `single-${w}.tiff`), (p) => generateRepeatedTileSlide({ path: p, width: w, height: HEIGHT, tissue: rectTissue(w, HEIGHT) })),
    'single strip': await cached(join(DIR, `strip-${w}.tif`), (p) => stripSlide(p, w, HEIGHT)),
  };
}

/** A slide seen as level 0 only (its pyramid hidden), as a single-level slide of the same pixels. */
function levelZeroOnly(s: SlideReader): SlideReader {
  return {
    image_id: s.image_id, path: s.path, backend: s.backend, width: s.width, height: s.height, levels: s.levels.slice(0, 1),
    readRegion: (level, x, y, w, h) => s.readRegion(level, x, y, w, h),
    thumbnail: () => Promise.reject(new Error('level-0-only view: no whole thumbnail')),
    storage: (level) => s.storage?.(level),
    close: () => s.close(),
  };
}

export interface KeepDrop {
  readonly slide: string;
  readonly tiles_total: number;
  readonly kept_exact: number;
  readonly kept_jpeg: number;
  /** Tiles kept by one path and dropped by the other. */
  readonly differ: number;
}

/** Tiles kept by the exact path and by the JPEG path, and how many differ, on one slide read as level 0 only. */
async function keepDrop(path: string, label: string): Promise<KeepDrop | undefined> {
  const s = levelZeroOnly(await openSlide(path, label));
  try {
    if (s.width < 448 || s.height < 448) return undefined;
    const pick = async (opts: ThumbnailOptions): Promise<{ method: string; total: number; keys: Set<string> }> => {
      const sel = new BandSelector(s.width, s.height, DEFAULT_TILE_PARAMS);
      const plan = thumbnailPlan(s, 16, { bandRows: 29, ...opts });
      for await (const b of thumbnailBands(s, 16, sel.cuts(), plan)) if (!sel.done) sel.addBand(b.y, b.image);
      return { method: plan.method, total: sel.total, keys: new Set(sel.positions.map((p) => p.join(','))) };
    };
    const fast = await pick({});
    if (fast.method !== 'jpeg') return undefined;
    const exact = await pick({ exact: true });
    const differ = [...fast.keys].filter((k) => !exact.keys.has(k)).length + [...exact.keys].filter((k) => !fast.keys.has(k)).length;
    return { slide: label, tiles_total: exact.total, kept_exact: exact.keys.size, kept_jpeg: fast.keys.size, differ };
  } finally {
    await s.close();
  }
}

export async function benchKeepDrop(): Promise<KeepDrop[]> {
  const out: KeepDrop[] = [];
  const shared = new URL('../../../shared/testdata/slides/', import.meta.url).pathname;
  const files = existsSync(shared) ? readdirSync(shared).map((f) => [join(shared, f), `shared ${f}`] as const) : [];
  if (files.length === 0) console.log('keep/drop: ../shared/testdata/slides missing, generated slides only');
  const generated: Array<readonly [string, string]> = [];
  for (const [n, seed, T] of [[8192, 1, 256], [8192, 2, 512], [12_000, 3, 256], [16_384, 4, 512]] as const) {
    const path = await cached(join(DIR, `kd-${n}-${seed}-${T}.tiff`), (p) => generateSlide({ path: p, width: n, height: n, seed, levels: 'single', tileSize: T, optimiseCoding: false }));
    generated.push([path, `generated ${n}x${n} seed ${seed}, ${T} px JPEG tiles`]);
  }
  for (const [path, label] of [...files, ...generated]) {
    const r = await keepDrop(path, label).catch((err: Error) => {
      console.log(`keep/drop ${label}: ${err.message}`);
      return undefined;
    });
    if (r === undefined) continue;
    out.push(r);
    console.log(`keep/drop ${label}: ${r.tiles_total} tiles, kept exact ${r.kept_exact} / jpeg ${r.kept_jpeg}, ${r.differ} differ`);
  }
  return out;
}

export interface SingleLevelFigures {
  keepDrop?: KeepDrop[];
  memory: Array<{ width: number; height: number; kind: string; mode: string } & ChildFigures>;
  thumbnail?: { slide: string; runs: Record<string, ChildFigures[]>; median_cpu_s: Record<string, number>; median_wall_s: Record<string, number> };
}

export async function benchSingleLevel(opts: { keepDrop?: boolean; memory?: boolean; thumbnail?: boolean; runs?: number } = {}): Promise<SingleLevelFigures> {
  mkdirSync(DIR, { recursive: true });
  const figures: SingleLevelFigures = { memory: [] };
  if (opts.keepDrop ?? true) figures.keepDrop = await benchKeepDrop();
  if (opts.memory ?? true) {
    for (const w of [16384, 100_000]) {
      const slides = await memorySlides(w);
      for (const [kind, path] of Object.entries(slides)) {
        for (const mode of kind === 'single tiled' ? ['before', 'after', 'exact'] : kind === 'single strip' ? ['before', 'after'] : ['after']) {
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
    const runs: Record<string, ChildFigures[]> = { before: [], after: [], 'after-1': [] };
    for (let i = 0; i < (opts.runs ?? 3); i++) {
      for (const mode of ['before', 'after', 'after-1']) {
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

/** The suite's figure (`npm run bench -- --only single-level`): every part of benchSingleLevel, --repeat runs of the thumbnail. */
export function singleLevelFigure(): Figure {
  return {
    name: 'single-level slides',
    enabled: (opts) => opts.runs('single-level'),
    async measure({ opts, record }) {
      const f = await benchSingleLevel({ runs: opts.repeat });
      record.result.single_level = f;
      for (const m of f.memory) record.show(`single-level peak RSS ${m.width}x${m.height} ${m.kind} (${m.mode})`, `${m.peak_rss_mb.toFixed(0)} MB`);
      if (f.thumbnail) record.show('thumbnail 46177x77440, median CPU s / wall s by path', `${JSON.stringify(f.thumbnail.median_cpu_s)} / ${JSON.stringify(f.thumbnail.median_wall_s)}`);
    },
  };
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  const f = await child(argv[1]!, argv[2]!, Number(argv[3]));
  console.log(JSON.stringify(f));
} else if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const runsAt = argv.indexOf('--runs');
  const only = argv.find((a) => a.endsWith('-only'));
  await benchSingleLevel({ keepDrop: only === undefined || only === '--keep-drop-only', memory: only === undefined || only === '--memory-only', thumbnail: only === undefined || only === '--thumbnail-only', runs: runsAt >= 0 ? Number(argv[runsAt + 1]) : 3 });
}
