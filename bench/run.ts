/**
 * The built-in benchmark suite (`npm run bench`, `npm run bench -- --full`, `--json FILE`):
 *   1. stage cost: CPU ms per tile of each stage alone on one core (process.cpuUsage, onnxruntime 1 thread), each
 *      sample in a fresh child process with the workers' allocator settings (stageCostsInChild);
 *   2. bound: cores x 1000 / sum of stage costs (tiles/s a perfect engine would reach with these stages), and the
 *      stages with no engine at all on 1 core and on every core at once (bench/ideal.ts: how the cores really scale);
 *   3. pipeline: end-to-end tiles/s of the real main job (child process) on 4 generated slides of 20k px, each run
 *      bracketed by stage-cost runs (efficiency = median over runs of pipeline / the bound measured around it); its
 *      fixed cost (the same slides, one tile each), marginal CPU per tile, steady-state rate, and with --full the
 *      short job (the same slides capped at 305 tiles each);
 *   4. memory: peak RSS of the job's whole process tree on one slide of 4k, 16k, 64k (100k with --full) px (with the
 *      defaults both workers read it: the second joins the slide), the highest of --memory-repeat runs (2) each;
 *   5. time to the first tile and per-slide overhead.
 * Everything is measured in the same run; slides, models and the lookup table are prepared first and cached
 * under .cache/ (the 64k slide takes about a minute once). Options: --full, --json FILE, --only a,b,
 * --job-args "..." (extra flags for every job run: A/B of defaults), --repeat N (stage-cost and pipeline runs, medians; 3).
 * `--only scaling` (not in the default run) measures how each stage alone scales to every core.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import type { StageContext } from '../engine/types.js';
import { workerEnv } from '../engine/allocator.js';
import { ensureModels } from '../stages/cli/models-build.js';
import { tileHistogram } from '../stages/color-histograms.js';
import { combineEmbeddings } from '../stages/combine-embeddings.js';
import { applyLut, ensureLut } from '../models/runtime/lut.js';
import { mapOrReadFile } from '../models/runtime/map-file.js';
import { sessionOptions } from '../models/runtime/session.js';
import { descendants, treeRssBytes } from '../stages/cli/proc-tree.js';
import { configureSharpForWorker } from '../stages/slides/backend-sharp.js';
import { generateSlide, type TissueShape } from '../stages/slides/synthetic.js';
import { DEFAULT_TILE_PARAMS } from '../stages/slides/tile-params.js';
import type { PatientRecord } from '../stages/tfrecord/example.js';
import { parseRunOptions, type RunOptions } from '../stages/cli/options.js';
import { produceTiles } from '../stages/produce-tiles.js';
import { toExample } from '../stages/to-example.js';
import { writeTfrecords } from '../stages/write-tfrecords.js';
import type { Tile } from '../stages/types.js';
import { svgPlot } from './svg-plot.js';

/**
 * The stages are measured in this process (and in bench/ideal.ts children), so it runs under the allocator settings
 * the workers start with (engine/allocator.ts): without them every stage would cost more here than in a worker. The
 * bench re-runs itself once with them; the jobs it starts get the user's environment back, so that a job's parent
 * runs as a user's does and forks its workers with the settings itself.
 */
const USER_TUNABLES = 'BENCH_USER_GLIBC_TUNABLES';
if (process.env[USER_TUNABLES] === undefined) {
  const again = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...workerEnv(), [USER_TUNABLES]: process.env.GLIBC_TUNABLES ?? '' },
  });
  process.exit(again.status ?? 1);
}

/** The environment the bench was started with (for the jobs). */
function userEnv(): NodeJS.ProcessEnv {
  const { [USER_TUNABLES]: tunables, GLIBC_TUNABLES: _ours, ...rest } = process.env;
  return tunables ? { ...rest, GLIBC_TUNABLES: tunables } : rest;
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CACHE = join(ROOT, '.cache');
const SLIDES = join(CACHE, 'bench');
const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const FULL = argv.includes('--full');
const JSON_OUT = flag('--json');
/** argv[0] of a stage-cost child (stageCostsInChild). */
const STAGE_COSTS_CHILD = '--stage-costs-child';
const ONLY = flag('--only')?.split(',');
const JOB_ARGS = flag('--job-args')?.split(' ').filter(Boolean) ?? [];
/** Runs of the stage costs and of the pipeline; the figures are their medians (the machine is shared and noisy). */
const REPEAT = Number(flag('--repeat') ?? 3);
/** Tiles per group in the jobs (their --group-size, default or from --job-args): the serialize stage takes groups this size. */
const JOB_GROUP_SIZE = (parseRunOptions(JOB_ARGS.filter((a) => a !== '--help' && a !== '-h')) as RunOptions).groupSize;
/** Runs of each memory-series slide; its figure is the highest peak (2). */
const MEMORY_REPEAT = Math.max(1, Number(flag('--memory-repeat') ?? 2));
/** Parts run by default, or those named by --only (`scaling` runs only when named). */
const run = (part: string): boolean => (ONLY === undefined ? part !== 'scaling' : ONLY.includes(part));
const CORES = os.availableParallelism();
const T = DEFAULT_TILE_PARAMS.tileSize;
/**
 * Side of the throughput job's 4 slides: 20k px, about 850 tissue tiles each, 3,400 in all (~35 s on this host).
 * A real slide has thousands of tiles and a real run hundreds of slides; with 4 slides of 12k (1,220 tiles, ~15 s),
 * the job's fixed cost (start-up, models, output: 2-3 s) was a fifth of the figure. That shorter job is still
 * measured: the same slides capped at SHORT_JOB_TILES each.
 */
const TPUT_SIDE = 20480;
const SHORT_JOB_TILES = 305;
/** Tiles per stage-cost run: 192 (~4 s); with 96 the runs of one bench spread 19.6-23.0 ms/tile. */
const STAGE_COST_TILES = 192;
/** The job's default --batch-size (stages/cli/options.ts), used for the embedding's stage cost. */
const BATCH = 1;

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const log = (line: string): void => console.error(`[bench] ${line}`);

// ---------------------------------------------------------------------------------------------------------
// Slides. Tissue is a rectangle or ellipse scaled with the side, so the kept fraction is the same at every size.

/** A centred rectangle covering 36% of the slide (memory series: flat colour, fast to generate at 100k). */
const rectTissue = (n: number): TissueShape[] => [{ kind: 'rect', x: n * 0.2, y: n * 0.2, w: n * 0.6, h: n * 0.6 }];
/** A large textured ellipse (~44%) for throughput slides: real JPEG decoding work per tile. */
const ellipseTissue = (n: number): TissueShape[] => [{ kind: 'ellipse', cx: n / 2, cy: n / 2, rx: n * 0.4, ry: n * 0.35 }];

async function slide(dir: string, name: string, side: number, seed: number, tissue: TissueShape[], texture: boolean): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.tiff`);
  if (!existsSync(path)) {
    const t0 = performance.now();
    await generateSlide({ path: `${path}.part`, width: side, height: side, seed, tissue, texture });
    renameSync(`${path}.part`, path);
    log(`generated ${path} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return path;
}

function writeCsv(dir: string, ids: readonly string[]): string {
  const csv = join(dir, `${ids.length}-${ids[0]}.csv`);
  writeFileSync(csv, ['image_id,center_id,patient_id,image_num,label', ...ids.map((id, i) => `${id},${Math.floor(i / 2) % 2},p${Math.floor(i / 2)},${i % 2},${Math.floor(i / 2) % 3 === 0 ? 1 : 0}`)].join('\n') + '\n');
  return csv;
}

// ---------------------------------------------------------------------------------------------------------
// 1. Stage cost, in this process, one core.

function fakeCtx(name: string, limit = 1024): StageContext {
  return {
    signal: new AbortController().signal,
    name,
    metrics: { name, elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} },
    tiles: { limit, inUse: 0, maxInUse: 0, acquire: async () => undefined, release: () => undefined },
  };
}

/** CPU milliseconds (user + system, all threads of this process) spent in `fn`. */
async function cpuMs(fn: () => Promise<void> | void): Promise<number> {
  const c0 = process.cpuUsage();
  await fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

/** Embedding CPU ms per tile at several batch sizes (1 thread, 48 tiles each after a warm-up): the --batch-size decision. */
async function embedBatchSweep(model: string, tiles: readonly Tile[]): Promise<Record<string, number>> {
  const session = await ort.InferenceSession.create(model, sessionOptions(1));
  const out: Record<string, number> = {};
  const per = T * T * 3;
  try {
    for (const B of [1, 2, 4, 8, 16]) {
      const batches: ort.Tensor[] = [];
      for (let i = 0; i + B <= Math.min(48, tiles.length); i += B) {
        const buf = new Uint8Array(per * B);
        for (let k = 0; k < B; k++) buf.set(tiles[i + k]!.pixels, k * per);
        batches.push(new ort.Tensor('uint8', buf, [B, T, T, 3]));
      }
      await session.run({ tiles: batches[0]! });
      out[`batch_${B}`] = (await cpuMs(async () => {
        for (const x of batches) await session.run({ tiles: x });
      })) / (batches.length * B);
    }
  } finally {
    await session.release();
  }
  return out;
}

let sweep: Record<string, number> = {};

async function stageCosts(slidePath: string, models: { stainnet: string; efficientnet: string }, lutFile: string, n: number, withSweep: boolean): Promise<Record<string, number>> {
  configureSharpForWorker(); // one libvips thread, as in a worker
  const id = slidePath.replace(/^.*\//, '').replace(/\.tiff$/, '');
  const task = { image_id: id, patient_id: 'p', image_num: 0, slidesDir: dirname(slidePath) };
  const tiles: Tile[] = [];
  // Read: open + thumbnail + selection are per-slide costs (section 5); the per-tile cost starts at the first tile.
  const gen = produceTiles({ ...DEFAULT_TILE_PARAMS, maxTiles: n + 1 })((async function* () { yield task; })(), fakeCtx('read'))[Symbol.asyncIterator]();
  await gen.next();
  const read = await cpuMs(async () => {
    for (let r = await gen.next(); !r.done; r = await gen.next()) tiles.push(r.value);
  });
  const count = tiles.length;

  const lut = (await mapOrReadFile(lutFile)).bytes; // as the pipeline loads it
  // In place, as the pipeline does it (graph.ts: inPlace). Into fresh buffers the first write would also fault each
  // one in (about 0.3 ms per tile here), a cost the pipeline does not pay: the bound would be too low.
  const normalized = tiles;
  const normalize = await cpuMs(() => tiles.forEach((t) => applyLut(lut, t.pixels, t.pixels)));

  const hist = await cpuMs(() => void normalized.forEach((t) => tileHistogram(t.pixels)));

  const session = await ort.InferenceSession.create(models.efficientnet, sessionOptions(1));
  const B = BATCH;
  const per = T * T * 3;
  const batches: ort.Tensor[] = [];
  for (let i = 0; i + B <= count; i += B) {
    const buf = new Uint8Array(per * B);
    for (let k = 0; k < B; k++) buf.set(normalized[i + k]!.pixels, k * per);
    batches.push(new ort.Tensor('uint8', buf, [B, T, T, 3]));
  }
  await session.run({ tiles: batches[0]! }); // warm-up (allocations, kernel selection)
  const embed = (await cpuMs(async () => {
    for (const x of batches) await session.run({ tiles: x });
  })) * count / (batches.length * B);
  await session.release();

  // Serialize: one patient's bag of `count` embeddings -> tf.train.Example -> TFRecord (framing, CRC, fsync).
  const tmp = await mkdtemp(join(os.tmpdir(), 'bench-ser-'));
  let serialize = 0;
  try {
    const fn = combineEmbeddings();
    let acc = await fn.createAccumulator({ key: 'p', spillDir: join(tmp, 'spill'), signal: new AbortController().signal });
    const rec: PatientRecord[] = [];
    serialize = await cpuMs(async () => {
      // In groups, as the workers send them (the jobs' --group-size).
      for (let i = 0; i < count; i += JOB_GROUP_SIZE) {
        const group = tiles.slice(i, Math.min(i + JOB_GROUP_SIZE, count));
        const avg = new Float32Array(group.length * 1280).map((_, d) => Math.sin(i + Math.floor(d / 1280) + (d % 1280)));
        acc = await fn.addInput(acc, { kind: 'embeddings', image_id: id, patient_id: 'p', image_num: 0, x: group.map((t) => t.x), y: group.map((t) => t.y), dim: 1280, avg, max: avg });
      }
      rec.push({ patient_id: 'p', patient: { patient_id: 'p', center_id: '1', label: '1', image_ids: [id], lines: [2] }, bag: await fn.extractOutput(acc), histogram: { patient_id: 'p', tiles: count, histogram: new Float32Array(4096).fill(1 / 4096) } });
      await writeTfrecords({ outDir: join(tmp, 'out'), shards: 1 })(toExample({ withLabel: true })((async function* () { yield* rec; })(), fakeCtx('ex')), fakeCtx('wr'));
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const ms = (v: number): number => v / count;
  if (withSweep) sweep = await embedBatchSweep(models.efficientnet, normalized);
  return { read_tile: ms(read), normalize: ms(normalize), resize_embed: ms(embed), histogram: ms(hist), serialize: ms(serialize) };
}

/**
 * One stage-cost run in a fresh process with the workers' allocator settings (this process's environment), so that
 * the stages are measured as a worker runs them, not in the long-lived bench process whose heap holds the earlier
 * runs' tiles.
 */
function stageCostsInChild(slidePath: string, models: { stainnet: string; efficientnet: string }, lutFile: string, n: number, withSweep: boolean): Record<string, number> {
  const args = [fileURLToPath(import.meta.url), STAGE_COSTS_CHILD, slidePath, models.stainnet, models.efficientnet, lutFile, String(n), String(withSweep)];
  const res = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (res.status !== 0) throw new Error(`stage-cost run on ${slidePath} failed (exit ${res.status}, signal ${res.signal})`);
  const out = JSON.parse(res.stdout) as { costs: Record<string, number>; sweep: Record<string, number> };
  if (withSweep) sweep = out.sweep;
  return out.costs;
}

/** The child's side of stageCostsInChild: prints `{costs, sweep}` as JSON on stdout. */
async function stageCostsChild(): Promise<void> {
  const [slidePath, stainnet, efficientnet, lutFile, n, withSweep] = argv.slice(1) as [string, string, string, string, string, string];
  const costs = await stageCosts(slidePath, { stainnet, efficientnet }, lutFile, Number(n), withSweep === 'true');
  process.stdout.write(JSON.stringify({ costs, sweep }) + '\n');
}

// ---------------------------------------------------------------------------------------------------------
// 3-5. The main job as a child process; its process tree's RSS sampled from here.

interface JobResult {
  wallS: number;
  /** CPU seconds (user + system) of the job's process tree. */
  cpuS: number;
  /** ... of the job's own process (the parent of the workers). */
  parentCpuS: number;
  tiles: number;
  peakRssMb: number;
  maxInflight: number;
  report: { elapsed_s: number; peak_rss_mb: number; exit_code: number };
}

/** utime + stime of one process, in clock ticks (USER_HZ, 100 on Linux). */
function cpuTicksOf(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // fields 14 and 15
  } catch {
    return undefined;
  }
}

async function job(csv: string, slidesDir: string, extra: readonly string[] = []): Promise<JobResult> {
  const out = await mkdtemp(join(os.tmpdir(), 'bench-job-'));
  try {
    const args = [join(ROOT, 'graph.js'), '--csv', csv, '--slides', slidesDir, '--out', out, '--progress', 'none', '--no-resume', ...JOB_ARGS, ...extra];
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: userEnv() });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    let peak = 0;
    let exited = false;
    const cpuTicks = new Map<number, number>(); // pid -> last seen utime + stime (clock ticks)
    const sample = (): void => {
      if (exited || child.pid === undefined) return;
      peak = Math.max(peak, treeRssBytes(child.pid));
      for (const pid of [child.pid, ...descendants(child.pid)]) {
        const ticks = cpuTicksOf(pid);
        if (ticks !== undefined) cpuTicks.set(pid, ticks);
      }
    };
    const timer = setInterval(sample, 50);
    const code = await new Promise<number | null>((res, rej) => {
      child.on('error', rej);
      child.on('exit', (c) => {
        exited = true;
        res(c);
      });
    });
    clearInterval(timer);
    const wallS = (performance.now() - t0) / 1000;
    if (code !== 0) throw new Error(`job ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as JobResult['report'] & { tiles_written: number; max_tiles_in_flight: number };
    // CPU of the whole tree, from the last sample of each process (misses at most one interval per process).
    const cpuS = [...cpuTicks.values()].reduce((a, b) => a + b, 0) / 100;
    const parentCpuS = (cpuTicks.get(child.pid!) ?? 0) / 100;
    return { wallS, cpuS, parentCpuS, tiles: report.tiles_written, peakRssMb: peak / 2 ** 20, maxInflight: report.max_tiles_in_flight, report };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

/** The stages with no engine (bench/ideal.ts), one process per slide, all at once; aggregate tiles/s and CPU ms/tile. */
async function ideal(slides: readonly string[], tiles: number, lutFile: string, model: string, only = 'all'): Promise<{ tilesPerS: number; cpuMsPerTile: number }> {
  const script = join(ROOT, 'dist/bench/ideal.js');
  const children = slides.map((s) => spawn(process.execPath, [script, s, String(tiles), lutFile, model, only], { stdio: ['pipe', 'pipe', 'inherit'] }));
  try {
    const outputs = children.map((child) => {
      let out = '';
      let onReady: () => void = () => undefined;
      const ready = new Promise<void>((res) => (onReady = res));
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.startsWith('ready\n')) onReady();
      });
      const done = new Promise<{ tiles: number; wall_ms: number; cpu_ms: number }>((res, rej) => {
        child.on('error', rej);
        child.on('exit', (code) => (code === 0 ? res(JSON.parse(out.trim().split('\n').pop()!) as { tiles: number; wall_ms: number; cpu_ms: number }) : rej(new Error(`bench/ideal ${only} exited ${code}`))));
      });
      return { ready: Promise.race([ready, done]), done };
    });
    // Every copy set up (tiles read, session created) before any starts its clock.
    await Promise.all(outputs.map((o) => o.ready));
    for (const child of children) child.stdin.end('go\n');
    const runs = await Promise.all(outputs.map((o) => o.done));
    return {
      tilesPerS: runs.reduce((a, r) => a + (r.tiles * 1000) / r.wall_ms, 0),
      cpuMsPerTile: runs.reduce((a, r) => a + r.cpu_ms, 0) / runs.reduce((a, r) => a + r.tiles, 0),
    };
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill();
  }
}

// ---------------------------------------------------------------------------------------------------------

interface MemoryRow {
  side_px: number;
  tiles: number;
  /** The highest of the runs' peaks. */
  peak_rss_mb: number;
  peak_rss_runs_mb: number[];
  max_inflight_tiles: number;
  seconds: number;
}

async function main(): Promise<void> {
  const load0 = os.loadavg();
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  log(`${CORES} cores (${cpu}), load average ${load0.map((l) => l.toFixed(2)).join(' ')}; preparing models, table and slides`);

  // Preparation, excluded from every figure: models, the lookup table, the slides.
  const models = await ensureModels(join(CACHE, 'models'));
  const lutFile = await ensureLut(models.stainnet, join(CACHE, 'lut'), CORES);
  const tputDir = join(SLIDES, 'throughput');
  const tputIds: string[] = [];
  for (let i = 0; i < 4; i++) {
    tputIds.push(`tput${TPUT_SIDE}-${i}`);
    await slide(tputDir, `tput${TPUT_SIDE}-${i}`, TPUT_SIDE, 200 + i, ellipseTissue(TPUT_SIDE), true);
  }
  const memSides = [4096, 16384, 65536, ...(FULL ? [100000] : [])];
  const memIds = new Map<number, string>();
  for (const n of memSides) {
    const id = `mem-${n}`;
    if (run('memory')) await slide(join(SLIDES, 'memory'), id, n, 7, rectTissue(n), false);
    memIds.set(n, id);
  }
  // Per-slide overhead: 8 small all-tissue slides (16 tiles each) vs one slide with the same 128 tiles.
  const smallDir = join(SLIDES, 'small');
  const smallIds: string[] = [];
  if (run('overhead')) {
    for (let i = 0; i < 8; i++) {
      smallIds.push(`small-${i}`);
      await slide(smallDir, `small-${i}`, 2048, 300 + i, [{ kind: 'rect', x: 0, y: 0, w: 2048, h: 2048 }], true);
    }
    await slide(smallDir, 'one-big', 16384, 400, ellipseTissue(16384), true);
  }
  const csvDir = join(SLIDES, 'csv');
  mkdirSync(csvDir, { recursive: true });

  const result: Record<string, unknown> = { machine: { nproc: CORES, cpu, node: process.version, loadavg_start: load0 }, job_args: JOB_ARGS };
  const table: [string, string][] = [];
  const show = (what: string, value: string): void => {
    table.push([what, value]);
    log(`${what}: ${value}`);
  };

  let bound = NaN;
  // Stage costs and pipeline runs alternate (costs, job, costs, job, ..., costs): this host's speed drifts by a
  // quarter within minutes (other tenants), so each pipeline run is divided by the bound measured around it (the
  // mean of the runs just before and just after), and the efficiency is the median of those same-time ratios.
  const samples: Array<Record<string, number>> = [];
  const jobs: JobResult[] = [];
  const pairs: number[] = [];
  const idealAlone: Array<{ tilesPerS: number; cpuMsPerTile: number }> = [];
  const idealAll: Array<{ tilesPerS: number; cpuMsPerTile: number }> = [];
  const idealPairs: number[] = [];
  const pipelineCsv = writeCsv(csvDir, tputIds);
  for (let r = 0; r < REPEAT; r++) {
    // Each stage-cost run on another slide's tiles: tiles seen before would find the lookup table and the
    // decoder's data in the CPU caches and look cheaper than they are in the pipeline, where every tile is new.
    if (run('stages')) samples.push(stageCostsInChild(join(tputDir, `${tputIds[r % tputIds.length]}.tiff`), models, lutFile, STAGE_COST_TILES, r === 0));
    if (run('pipeline')) jobs.push(await job(pipelineCsv, tputDir));
    if (run('stages')) {
      // The stages with no engine, on one core and then on every core at once (how this machine's cores scale).
      const slides = Array.from({ length: CORES }, (_, i) => join(tputDir, `${tputIds[(r + i) % tputIds.length]}.tiff`));
      idealAlone.push(await ideal(slides.slice(0, 1), 160, lutFile, models.efficientnet));
      idealAll.push(await ideal(slides, 160, lutFile, models.efficientnet));
    }
  }
  // One more stage-cost run after the last job: each job is then bracketed by a stage-cost run before and after it
  // (a ~3 s sample against a ~40 s job: the mean of the two follows the host's drift better than either alone).
  if (run('stages') && run('pipeline')) samples.push(stageCostsInChild(join(tputDir, `${tputIds[REPEAT % tputIds.length]}.tiff`), models, lutFile, STAGE_COST_TILES, false));
  const sumOf = (c: Record<string, number>): number => Object.values(c).reduce((a, b) => a + b, 0);
  for (let r = 0; r < jobs.length; r++) {
    if (samples[r] === undefined || samples[r + 1] === undefined) continue;
    const pairBound = ((CORES * 1000) / sumOf(samples[r]!) + (CORES * 1000) / sumOf(samples[r + 1]!)) / 2;
    pairs.push(jobs[r]!.tiles / jobs[r]!.wallS / pairBound);
    idealPairs.push(jobs[r]!.tiles / jobs[r]!.wallS / idealAll[r]!.tilesPerS);
  }
  if (samples.length > 0) {
    const costs = Object.fromEntries(Object.keys(samples[0]!).map((k) => [k, median(samples.map((c) => c[k]!))]));
    result.stage_cost_ms = costs;
    result.stage_cost_runs = samples;
    for (const [k, v] of Object.entries(costs)) show(`stage cost ${k} (CPU ms/tile, 1 core)`, v.toFixed(2));
    const sum = Object.values(costs).reduce((a, b) => a + b, 0);
    bound = (CORES * 1000) / sum;
    result.bound_tiles_per_s = bound;
    show('stage cost sum (CPU ms/tile)', `${sum.toFixed(1)} (runs ${samples.map((c) => Object.values(c).reduce((a, b) => a + b, 0).toFixed(1)).join(' / ')})`);
    result.embed_cpu_ms_by_batch = sweep;
    show('embed CPU ms/tile by batch size (1 thread)', Object.entries(sweep).map(([k, v]) => `${k.replace('batch_', '')}: ${v.toFixed(1)}`).join(', '));
    show(`bound (${CORES} cores x 1000 / sum)`, `${bound.toFixed(1)} tiles/s`);
    const alone = median(idealAlone.map((x) => x.tilesPerS));
    const all = median(idealAll.map((x) => x.tilesPerS));
    result.no_engine = {
      one_process_tiles_per_s: alone,
      one_process_cpu_ms_per_tile: median(idealAlone.map((x) => x.cpuMsPerTile)),
      all_cores_tiles_per_s: all,
      all_cores_cpu_ms_per_tile: median(idealAll.map((x) => x.cpuMsPerTile)),
      scaling: all / (CORES * alone),
      runs: { alone: idealAlone, all: idealAll },
    };
    show('no engine, 1 process (stages back to back, after the first tile)', `${alone.toFixed(1)} tiles/s, ${median(idealAlone.map((x) => x.cpuMsPerTile)).toFixed(1)} CPU ms/tile`);
    show(`no engine, ${CORES} processes at once (what the cores really give)`, `${all.toFixed(1)} tiles/s, ${median(idealAll.map((x) => x.cpuMsPerTile)).toFixed(1)} CPU ms/tile; scaling ${(all / (CORES * alone)).toFixed(2)} of ${CORES}x`);
  }

  if (jobs.length > 0) {
    const rates = jobs.map((j) => j.tiles / j.wallS);
    const rate = median(rates);
    const j = jobs[rates.indexOf([...rates].sort((a, b) => a - b)[Math.floor((rates.length - 1) / 2)]!)]!;
    result.pipeline_tiles_per_s = rate;
    const cpuPerTile = (j.cpuS * 1000) / j.tiles;
    result.pipeline = { slides: tputIds.length, tiles: j.tiles, wall_s: j.wallS, cpu_s: j.cpuS, parent_cpu_s: j.parentCpuS, cpu_ms_per_tile: cpuPerTile, peak_rss_mb: j.peakRssMb, max_inflight_tiles: j.maxInflight, runs: rates };
    show(`pipeline (${tputIds.length} slides, ${j.tiles} tiles, default workers, wall clock incl. start-up)`, `${rate.toFixed(1)} tiles/s (${j.wallS.toFixed(1)} s; runs ${rates.map((x) => x.toFixed(1)).join(' / ')})`);
    show('pipeline peak RSS, whole tree', `${j.peakRssMb.toFixed(0)} MB (max ${j.maxInflight} tiles in flight)`);
    show('pipeline CPU, whole tree (parent)', `${j.cpuS.toFixed(1)} s (${j.parentCpuS.toFixed(1)} s), ${cpuPerTile.toFixed(1)} ms/tile`);
    if (pairs.length > 0) {
      result.efficiency = median(pairs);
      result.efficiency_runs = pairs;
      show('efficiency = pipeline / bound measured around it (median of runs)', `${median(pairs).toFixed(2)} (pairs ${pairs.map((x) => x.toFixed(2)).join(' / ')})`);
      result.efficiency_vs_no_engine = median(idealPairs);
      show(`pipeline / no engine on ${CORES} cores (same-time pairs)`, `${median(idealPairs).toFixed(2)} (pairs ${idealPairs.map((x) => x.toFixed(2)).join(' / ')})`);
      // Robust to the other jobs on the machine: how much CPU per tile the whole job spends beyond the stages' own.
      const sum = (CORES * 1000) / bound;
      result.cpu_efficiency = sum / cpuPerTile;
      show('CPU efficiency = stage cost sum / job CPU per tile', `${(sum / cpuPerTile).toFixed(2)} (whole tree, incl. start-up)`);
      // Where the rest goes: the same job with one tile per slide is its fixed cost (start-up, models, each slide's
      // open and thumbnail, output); what is left per tile is the pipeline's marginal cost.
      const fixed = await job(pipelineCsv, tputDir, ['--max-tiles', '1']);
      const marginal = ((j.cpuS - fixed.cpuS) * 1000) / (j.tiles - fixed.tiles);
      result.fixed_cost = { wall_s: fixed.wallS, cpu_s: fixed.cpuS, parent_cpu_s: fixed.parentCpuS, tiles: fixed.tiles };
      result.marginal_cpu_ms_per_tile = marginal;
      show(`fixed cost (same ${tputIds.length} slides, 1 tile each)`, `${fixed.wallS.toFixed(2)} s wall, ${fixed.cpuS.toFixed(1)} CPU s (parent ${fixed.parentCpuS.toFixed(1)})`);
      show('marginal CPU per tile in the pipeline (job - fixed) / tiles', `${marginal.toFixed(1)} ms (stage sum ${sum.toFixed(1)}: x${(marginal / sum).toFixed(2)})`);
      // The short job (--full): 1,220 tiles, as the suite measured before (4 slides of 12k), divided by the median bound.
      if (FULL) {
        const short = await job(pipelineCsv, tputDir, ['--max-tiles', String(SHORT_JOB_TILES)]);
        result.short_job = { tiles: short.tiles, wall_s: short.wallS, tiles_per_s: short.tiles / short.wallS, efficiency: short.tiles / short.wallS / bound };
        show(`short job (same slides, --max-tiles ${SHORT_JOB_TILES}: ${short.tiles} tiles)`, `${(short.tiles / short.wallS).toFixed(1)} tiles/s (${short.wallS.toFixed(1)} s): ${(short.tiles / short.wallS / bound).toFixed(2)} of the bound`);
      }
      // Steady state: the same job's tiles beyond the fixed job's, over the time beyond it (start-up, each slide's
      // open and thumbnail and the output are in both), as a run of hundreds of slides would see it.
      const steady = (j.tiles - fixed.tiles) / (j.wallS - fixed.wallS);
      result.pipeline_steady_tiles_per_s = steady;
      result.efficiency_steady = steady / bound;
      show('pipeline steady state (job - fixed): tiles / s', `${steady.toFixed(1)} tiles/s: ${(steady / bound).toFixed(2)} of the bound${idealAll.length > 0 ? `, ${(steady / median(idealAll.map((x) => x.tilesPerS))).toFixed(2)} of no engine` : ''}`);
    }
  }

  if (run('scaling')) {
    // Each stage alone, in one process and then in one process per core at once (--only scaling; not in the
    // default run): which stage loses most when every core works.
    const scaling: Record<string, number[]> = {};
    for (let r = 0; r < REPEAT; r++) {
      const slides = Array.from({ length: CORES }, (_, i) => join(tputDir, `${tputIds[(r + i) % tputIds.length]}.tiff`));
      for (const stageName of ['read', 'normalize', 'embed', 'histogram', 'all']) {
        const alone = await ideal(slides.slice(0, 1), 200, lutFile, models.efficientnet, stageName);
        const all = await ideal(slides, 200, lutFile, models.efficientnet, stageName);
        (scaling[stageName] ??= []).push(all.tilesPerS / (CORES * alone.tilesPerS));
      }
    }
    result.stage_scaling = Object.fromEntries(Object.entries(scaling).map(([k, v]) => [k, { median: median(v), runs: v }]));
    for (const [k, v] of Object.entries(scaling)) show(`scaling of ${k} on ${CORES} cores (tiles/s of ${CORES} processes / ${CORES} x 1 process)`, `${median(v).toFixed(2)} (runs ${v.map((x) => x.toFixed(2)).join(' / ')})`);
  }

  if (run('memory')) {
    const rows: MemoryRow[] = [];
    // Same tile cap at every size: the 16k slide has ~460 kept tiles, so every run streams the same work and
    // only the slide size differs (thumbnail, selection, pyramid). 460 tiles fill the budget within seconds.
    const cap = 460;
    // Each size MEMORY_REPEAT times, the sizes in turn (so the host's drift falls on all of them), keeping the highest
    // peak: sampled every 50 ms, one run can miss its true peak, and a low 16k peak alone moved the ratio by 0.1.
    const runs = new Map<number, JobResult[]>(memSides.map((n) => [n, []]));
    for (let r = 0; r < MEMORY_REPEAT; r++) {
      for (const n of memSides) runs.get(n)!.push(await job(writeCsv(csvDir, [memIds.get(n)!]), join(SLIDES, 'memory'), ['--max-tiles', String(cap)]));
    }
    for (const n of memSides) {
      const js = runs.get(n)!;
      const peaks = js.map((j) => j.peakRssMb);
      const row: MemoryRow = {
        side_px: n,
        tiles: js[0]!.tiles,
        peak_rss_mb: Math.max(...peaks),
        peak_rss_runs_mb: peaks,
        max_inflight_tiles: Math.max(...js.map((j) => j.maxInflight)),
        seconds: median(js.map((j) => j.wallS)),
      };
      rows.push(row);
      show(`memory ${n} px (${row.tiles} tiles, 1 slide; the idle worker joins it)`, `peak RSS ${row.peak_rss_mb.toFixed(0)} MB (runs ${peaks.map((p) => p.toFixed(0)).join(' / ')}), max ${row.max_inflight_tiles} tiles in flight, ${row.seconds.toFixed(1)} s`);
    }
    result.memory = rows;
    const p16 = rows.find((r) => r.side_px === 16384)!.peak_rss_mb;
    const largest = rows[rows.length - 1]!;
    result.peak_rss_ratio = largest.peak_rss_mb / p16;
    show(`peak RSS ratio ${largest.side_px} / 16384`, (largest.peak_rss_mb / p16).toFixed(2));
    const p64 = rows.find((r) => r.side_px === 65536);
    if (largest.side_px !== 65536 && p64 !== undefined) {
      result.peak_rss_ratio_64k = p64.peak_rss_mb / p16;
      show('peak RSS ratio 65536 / 16384', (p64.peak_rss_mb / p16).toFixed(2));
    }
  }

  if (run('overhead')) {
    // Time to the first tile: a job whose only slide yields one tile (spawn, models, sessions, thumbnail, 1 tile, write).
    const first = await job(writeCsv(csvDir, ['one-big']), smallDir, ['--max-tiles', '1']);
    result.first_tile_s = first.wallS;
    show('time to first tile (job with 1 slide, --max-tiles 1, wall)', `${first.wallS.toFixed(2)} s`);
    const many = await job(writeCsv(csvDir, smallIds), smallDir, ['--workers', '1']);
    const one = await job(writeCsv(csvDir, ['one-big']), smallDir, ['--workers', '1', '--max-tiles', String(many.tiles)]);
    const perSlide = (many.wallS - one.wallS) / (smallIds.length - 1);
    result.per_slide_overhead_s = perSlide;
    result.overhead = { many_slides: smallIds.length, many_s: many.wallS, one_s: one.wallS, tiles: many.tiles };
    show(`per-slide overhead (${smallIds.length} slides vs 1, ${many.tiles} tiles, 1 worker)`, `${perSlide.toFixed(2)} s/slide (${many.wallS.toFixed(1)} s vs ${one.wallS.toFixed(1)} s)`);
  }

  const load1 = os.loadavg();
  (result.machine as Record<string, unknown>).loadavg_end = load1;
  show('load average start / end', `${load0.map((l) => l.toFixed(2)).join(' ')} / ${load1.map((l) => l.toFixed(2)).join(' ')}`);

  const w = Math.max(...table.map(([k]) => k.length));
  console.log(`\n${'what'.padEnd(w)}  value\n${'-'.repeat(w)}  -----`);
  for (const [k, v] of table) console.log(`${k.padEnd(w)}  ${v}`);
  if (JSON_OUT !== undefined) {
    writeFileSync(JSON_OUT, JSON.stringify(result, null, 2) + '\n');
    if (result.memory !== undefined) {
      const svg = JSON_OUT.replace(/\.json$/, '') + '.svg';
      writeFileSync(svg, svgPlot(result.memory as MemoryRow[]));
      log(`wrote ${JSON_OUT} and ${svg}`);
    } else log(`wrote ${JSON_OUT}`);
  }
}

if (argv[0] === STAGE_COSTS_CHILD) await stageCostsChild();
else await main();
