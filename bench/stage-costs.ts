/**
 * Figure 1, stage cost: CPU ms per tile of each stage alone on one core (process.cpuUsage, onnxruntime 1 thread),
 * each sample in a fresh child process with the workers' allocator settings (stageCostsInChild), and the
 * embedding's cost by batch size (the --batch-size decision); figure 2, the bound: cores x 1000 / sum of the
 * stage costs (tiles/s a perfect engine would reach with these stages).
 *
 * The child's side: node dist/bench/stage-costs.js <slide> <stainnet> <efficientnet> <lut> <tiles> <sweep> <group size>
 * prints `{costs, sweep}` as JSON on stdout.
 */
import { spawnSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import type { StageContext } from '../engine/types.js';
import { applyLut } from '../models/runtime/lut.js';
import { mapOrReadFile } from '../models/runtime/map-file.js';
import { sessionOptions } from '../models/runtime/session.js';
import { tileHistogram } from '../stages/color-histograms.js';
import { combineEmbeddings } from '../stages/combine-embeddings.js';
import { produceTiles } from '../stages/produce-tiles.js';
import { configureSharpForWorker } from '../stages/slides/backend-sharp.js';
import { DEFAULT_TILE_PARAMS } from '../stages/slides/tile-params.js';
import type { PatientRecord } from '../stages/tfrecord/example.js';
import { toExample } from '../stages/to-example.js';
import type { Tile } from '../stages/types.js';
import { writeTfrecords } from '../stages/write-tfrecords.js';
import { CORES } from './options.js';
import { median, type BenchRecord } from './record.js';

const T = DEFAULT_TILE_PARAMS.tileSize;
/** Tiles per stage-cost run: 192 (~4 s); with 96 the runs of one bench spread 19.6-23.0 ms/tile. */
export const STAGE_COST_TILES = 192;
/** The job's default --batch-size (stages/cli/options.ts), used for the embedding's stage cost. */
const BATCH = 1;

export interface Models {
  readonly stainnet: string;
  readonly efficientnet: string;
}

/** CPU ms per tile of each stage: read_tile, normalize, resize_embed, histogram, serialize. */
export type StageCosts = Record<string, number>;

/** One stage-cost run: the costs and, when asked, the embedding's CPU ms per tile by batch size (`batch_<B>`). */
export interface StageCostRun {
  readonly costs: StageCosts;
  readonly sweep: Record<string, number>;
}

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

/** `tiles` packed into uint8 tensors of `B` tiles each (a last partial batch is left out). */
function batchTensors(tiles: readonly Tile[], B: number, limit = tiles.length): ort.Tensor[] {
  const per = T * T * 3;
  const batches: ort.Tensor[] = [];
  for (let i = 0; i + B <= limit; i += B) {
    const buf = new Uint8Array(per * B);
    for (let k = 0; k < B; k++) buf.set(tiles[i + k]!.pixels, k * per);
    batches.push(new ort.Tensor('uint8', buf, [B, T, T, 3]));
  }
  return batches;
}

/** Embedding CPU ms per tile at several batch sizes (1 thread, 48 tiles each after a warm-up): the --batch-size decision. */
async function embedBatchSweep(model: string, tiles: readonly Tile[]): Promise<Record<string, number>> {
  const session = await ort.InferenceSession.create(model, sessionOptions(1));
  const out: Record<string, number> = {};
  try {
    for (const B of [1, 2, 4, 8, 16]) {
      const batches = batchTensors(tiles, B, Math.min(48, tiles.length));
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

/** Reads `n` tiles of the slide (after its first: open, thumbnail and selection are per-slide costs); the CPU ms it took. */
async function readTiles(slidePath: string, n: number, tiles: Tile[]): Promise<number> {
  const id = slidePath.replace(/^.*\//, '').replace(/\.tiff$/, '');
  const task = { image_id: id, patient_id: 'p', image_num: 0, slidesDir: dirname(slidePath) };
  const gen = produceTiles({ ...DEFAULT_TILE_PARAMS, maxTiles: n + 1 })((async function* () { yield task; })(), fakeCtx('read'))[Symbol.asyncIterator]();
  await gen.next();
  return cpuMs(async () => {
    for (let r = await gen.next(); !r.done; r = await gen.next()) tiles.push(r.value);
  });
}

/** CPU ms of embedding `tiles` in batches of BATCH (after a warm-up run), scaled to all of them. */
async function embedCost(model: string, tiles: readonly Tile[]): Promise<number> {
  const session = await ort.InferenceSession.create(model, sessionOptions(1));
  const batches = batchTensors(tiles, BATCH);
  await session.run({ tiles: batches[0]! }); // warm-up (allocations, kernel selection)
  const embed = (await cpuMs(async () => {
    for (const x of batches) await session.run({ tiles: x });
  })) * tiles.length / (batches.length * BATCH);
  await session.release();
  return embed;
}

/** Serialize: one patient's bag of the tiles' embeddings -> tf.train.Example -> TFRecord (framing, CRC, fsync); CPU ms. */
async function serializeCost(id: string, tiles: readonly Tile[], groupSize: number): Promise<number> {
  const count = tiles.length;
  const tmp = await mkdtemp(join(os.tmpdir(), 'bench-ser-'));
  try {
    const fn = combineEmbeddings();
    let acc = await fn.createAccumulator({ key: 'p', spillDir: join(tmp, 'spill'), signal: new AbortController().signal });
    const rec: PatientRecord[] = [];
    return await cpuMs(async () => {
      // In groups, as the workers send them (the jobs' --group-size).
      for (let i = 0; i < count; i += groupSize) {
        const group = tiles.slice(i, Math.min(i + groupSize, count));
        const avg = new Float32Array(group.length * 1280).map((_, d) => Math.sin(i + Math.floor(d / 1280) + (d % 1280)));
        acc = await fn.addInput(acc, { kind: 'embeddings', image_id: id, patient_id: 'p', image_num: 0, x: group.map((t) => t.x), y: group.map((t) => t.y), outputs: [{ name: 'avg', dim: 1280, rows: avg }, { name: 'max', dim: 1280, rows: avg }] });
      }
      rec.push({ patient_id: 'p', patient: { patient_id: 'p', center_id: '1', label: '1', image_ids: [id], lines: [2] }, bag: await fn.extractOutput(acc), histogram: { patient_id: 'p', tiles: count, histogram: new Float32Array(4096).fill(1 / 4096) } });
      await writeTfrecords({ outDir: join(tmp, 'out'), shards: 1 })(toExample({ withLabel: true })((async function* () { yield* rec; })(), fakeCtx('ex')), fakeCtx('wr'));
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Every stage's cost per tile on `n` tiles of the slide, in this process, one core. */
export async function stageCosts(slidePath: string, models: Models, lutFile: string, n: number, withSweep: boolean, groupSize: number): Promise<StageCostRun> {
  configureSharpForWorker(); // one libvips thread, as in a worker
  const id = slidePath.replace(/^.*\//, '').replace(/\.tiff$/, '');
  const tiles: Tile[] = [];
  const read = await readTiles(slidePath, n, tiles);
  const count = tiles.length;
  const lut = (await mapOrReadFile(lutFile)).bytes; // as the pipeline loads it
  // In place, as the pipeline does it (graph.ts: inPlace). Into fresh buffers the first write would also fault each
  // one in (about 0.3 ms per tile here), a cost the pipeline does not pay: the bound would be too low.
  const normalize = await cpuMs(() => tiles.forEach((t) => applyLut(lut, t.pixels, t.pixels)));
  const hist = await cpuMs(() => void tiles.forEach((t) => tileHistogram(t.pixels)));
  const embed = await embedCost(models.efficientnet, tiles);
  const serialize = await serializeCost(id, tiles, groupSize);
  const ms = (v: number): number => v / count;
  const sweep = withSweep ? await embedBatchSweep(models.efficientnet, tiles) : {};
  return { costs: { read_tile: ms(read), normalize: ms(normalize), resize_embed: ms(embed), histogram: ms(hist), serialize: ms(serialize) }, sweep };
}

/**
 * One stage-cost run in a fresh process with the workers' allocator settings (this process's environment), so that
 * the stages are measured as a worker runs them, not in the long-lived bench process whose heap holds the earlier
 * runs' tiles.
 */
export function stageCostsInChild(slidePath: string, models: Models, lutFile: string, n: number, withSweep: boolean, groupSize: number): StageCostRun {
  const args = [fileURLToPath(import.meta.url), slidePath, models.stainnet, models.efficientnet, lutFile, String(n), String(withSweep), String(groupSize)];
  const res = spawnSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (res.status !== 0) throw new Error(`stage-cost run on ${slidePath} failed (exit ${res.status}, signal ${res.signal})`);
  return JSON.parse(res.stdout) as StageCostRun;
}

/** Sum of a run's stage costs (CPU ms/tile). */
export const costSum = (c: StageCosts): number => Object.values(c).reduce((a, b) => a + b, 0);

/** Records the median stage costs, their sum, the batch sweep and the bound; returns the bound (tiles/s). */
export function recordStageCosts(record: BenchRecord, samples: readonly StageCosts[], sweep: Record<string, number>): number {
  const { result, show } = record;
  const costs = Object.fromEntries(Object.keys(samples[0]!).map((k) => [k, median(samples.map((c) => c[k]!))]));
  result.stage_cost_ms = costs;
  result.stage_cost_runs = samples;
  for (const [k, v] of Object.entries(costs)) show(`stage cost ${k} (CPU ms/tile, 1 core)`, v.toFixed(2));
  const sum = costSum(costs);
  const bound = (CORES * 1000) / sum;
  result.bound_tiles_per_s = bound;
  show('stage cost sum (CPU ms/tile)', `${sum.toFixed(1)} (runs ${samples.map((c) => costSum(c).toFixed(1)).join(' / ')})`);
  result.embed_cpu_ms_by_batch = sweep;
  show('embed CPU ms/tile by batch size (1 thread)', Object.entries(sweep).map(([k, v]) => `${k.replace('batch_', '')}: ${v.toFixed(1)}`).join(', '));
  show(`bound (${CORES} cores x 1000 / sum)`, `${bound.toFixed(1)} tiles/s`);
  return bound;
}

// Run as a script (stageCostsInChild's child), not imported.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [slidePath, stainnet, efficientnet, lutFile, n, withSweep, groupSize] = process.argv.slice(2) as [string, string, string, string, string, string, string];
  const run = await stageCosts(slidePath, { stainnet, efficientnet }, lutFile, Number(n), withSweep === 'true', Number(groupSize));
  process.stdout.write(JSON.stringify(run) + '\n');
}
