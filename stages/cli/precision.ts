/**
 * The job's precision step: for `--precision int8`, the embedder's int8 copy, made on the user's own slides and
 * model and cached under `.cache/int8/<fp32 sha256>/`:
 *   1. a sample of tiles across the CSV's slides (stages/slides/sample-tiles.ts): calibration and held-out tiles,
 *      stain-normalized as the embedder sees them;
 *   2. activation ranges from the calibration tiles (`ranges-<key>.json`, key: the calibration sample's identity
 *      (slides, their file stamps, positions), tile parameters, normalizer sha256, method);
 *   3. the QDQ model gated on the held-out tiles (`int8-<key>.onnx` and its record `int8-<key>.json`, key: the
 *      ranges file's sha256, the held-out sample's identity, the gate and the fallback limit).
 * A model that fails the gate is refused: E_INT8_GATE (exit 2) with the figures and the tensors that err most.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StageContext, TileBudget } from '../../engine/types.js';
import type { SlideConfig } from '../../graph.js';
import { ModelError } from '../../models/errors.js';
import { buildGated, calibrate, type GatedBuild, type Ranges, type TensorError } from '../../models/quant/int8-embedder.js';
import type { GateFigures, GateThresholds } from '../../models/quant/gate.js';
import { normalizeTiles } from '../normalize-tiles.js';
import { slideTask } from '../slide-tasks.js';
import { readSampledTiles, sampleTiles, type SampledTile } from '../slides/sample-tiles.js';
import type { CsvRow, SlideTask } from '../types.js';
import type { Int8Settings, Precision } from './precision-options.js';

/** What report.json and the manifest record of the embedder's precision. */
export interface PrecisionRecord {
  readonly precision: Precision;
  readonly int8?: {
    /** The int8 model the run used, and its sha256 (part of the checkpoint key). */
    readonly model: string;
    readonly sha256: string;
    readonly fp32_sha256: string;
    readonly calibration: { readonly method: string; readonly tiles: number; readonly slides: number; readonly sample_sha256: string; readonly ranges_file: string; readonly reused: boolean };
    readonly held_out: { readonly tiles: number; readonly sample_sha256: string };
    readonly gate: GateThresholds;
    readonly figures: GateFigures;
    /** The figures with every tensor quantized, before the fallback kept any in float. */
    readonly first_figures: GateFigures;
    readonly quantized_tensors: number;
    readonly kept_float: readonly TensorError[];
    readonly reused: boolean;
  };
}

export interface PrecisionInputs {
  readonly precision: Precision;
  readonly int8: Int8Settings;
  readonly rows: readonly CsvRow[];
  readonly slidesDir: string;
  readonly slide: SlideConfig;
  /** The fp32 embedder's and the normalizer's sha256 (as the run report has them). */
  readonly embedderSha256: string;
  readonly normalizerSha256: string;
  readonly cacheDir: string;
  readonly log: (line: string) => void;
}

/** The embedder file the run uses and what to record; fp32: the fp32 file as it is. */
export async function preparePrecision(p: PrecisionInputs): Promise<{ embedder: string; record: PrecisionRecord }> {
  if (p.precision === 'fp32') return { embedder: p.slide.embedder, record: { precision: 'fp32' } };
  const s = p.int8;
  const tasks = await uniqueTasks(p.rows, p.slidesDir);
  const sample = await sampleTiles(tasks, p.slide.tile, s.calibrationTiles, s.heldOutTiles);
  if (sample.calibration.length === 0 || sample.heldOut.length === 0) {
    throw new ModelError('E_MODEL', `--precision int8: the slides gave ${sample.calibration.length} calibration and ${sample.heldOut.length} held-out tiles; both need at least one (use fp32, or slides with tissue)`);
  }
  const stamps = Object.fromEntries(tasks.map((t) => [t.image_id, t.fileStamp ?? '']));
  const identity = (tiles: readonly SampledTile[]): string => sha256(JSON.stringify({ tiles, stamps: [...new Set(tiles.map((t) => t.image_id))].map((id) => [id, stamps[id]]), tile: p.slide.tile, normalizer: p.normalizerSha256 }));
  const calId = identity(sample.calibration);
  const heldId = identity(sample.heldOut);
  const dir = join(p.cacheDir, 'int8', p.embedderSha256.slice(0, 16));
  const fp32 = await readFile(p.slide.embedder);
  const pixels = (tiles: readonly SampledTile[]): Promise<Uint8Array[]> => normalized(tasks, tiles, p.slide);

  const rangesFile = join(dir, `ranges-${sha256(JSON.stringify({ calId, method: s.method })).slice(0, 16)}.json`);
  let rangesText = await readIfThere(rangesFile);
  const rangesReused = rangesText !== undefined;
  if (rangesText === undefined) {
    p.log(`int8: calibrating on ${sample.calibration.length} tiles from ${new Set(sample.calibration.map((t) => t.image_id)).size} slide(s) (${s.method})`);
    const ranges = await calibrate(fp32, p.slide.tile.tileSize, chunks(sample.calibration, 32, pixels), { method: s.method, threads: p.slide.threads });
    rangesText = JSON.stringify({ fp32_sha256: p.embedderSha256, sample_sha256: calId, method: s.method, tiles: sample.calibration, ranges });
    await writeAtomic(rangesFile, rangesText);
  }
  const ranges = (JSON.parse(rangesText) as { ranges: Ranges }).ranges;

  const key = sha256(JSON.stringify({ ranges: sha256(rangesText), heldId, gate: s.gate, fallback: s.maxFallback })).slice(0, 16);
  const modelFile = join(dir, `int8-${key}.onnx`);
  const recordFile = join(dir, `int8-${key}.json`);
  let built = await readBuildRecord(recordFile);
  const reused = built !== undefined;
  if (built === undefined) {
    p.log(`int8: gating on ${sample.heldOut.length} held-out tiles (mean cosine >= ${s.gate.mean}, 1st percentile >= ${s.gate.p1})`);
    const gated = await buildGated(fp32, ranges, { size: p.slide.tile.tileSize, pixels: await pixels(sample.heldOut) }, { gate: s.gate, maxFallback: s.maxFallback, threads: p.slide.threads });
    if (gated.passed) await writeAtomic(modelFile, gated.bytes);
    built = buildRecord(gated, gated.passed ? sha256(gated.bytes) : '');
    await writeAtomic(recordFile, JSON.stringify(built));
  }
  if (!built.passed) throw gateError(built, s);
  const f = built.figures;
  p.log(`int8: ${reused ? 'cached model' : 'gate passed'}: mean cosine ${f.mean_cosine.toFixed(5)}, 1st percentile ${f.p1_cosine.toFixed(5)} on ${f.tiles} held-out tiles` +
    (built.keptFloat.length > 0 ? `, ${built.keptFloat.length} tensor(s) kept in fp32: ${built.keptFloat.map((k) => k.tensor).join(', ')}` : ''));
  return {
    embedder: modelFile,
    record: {
      precision: 'int8',
      int8: {
        model: modelFile,
        sha256: built.sha256,
        fp32_sha256: p.embedderSha256,
        calibration: { method: s.method, tiles: sample.calibration.length, slides: new Set(sample.calibration.map((t) => t.image_id)).size, sample_sha256: calId, ranges_file: rangesFile, reused: rangesReused },
        held_out: { tiles: sample.heldOut.length, sample_sha256: heldId },
        gate: s.gate,
        figures: built.figures,
        first_figures: built.firstFigures,
        quantized_tensors: built.quantizedTensors,
        kept_float: built.keptFloat,
        reused,
      },
    },
  };
}

/** A gated build as cached (the model bytes are in their own file). */
type BuildRecord = Omit<GatedBuild, 'bytes'> & { readonly sha256: string };

function buildRecord(g: GatedBuild, sha: string): BuildRecord {
  const { bytes: _bytes, ...rest } = g;
  return { ...rest, sha256: sha };
}

async function readBuildRecord(file: string): Promise<BuildRecord | undefined> {
  const text = await readIfThere(file);
  return text === undefined ? undefined : (JSON.parse(text) as BuildRecord);
}

/** E_INT8_GATE: the figures, the tensors that err most, and what the user can do. */
function gateError(b: BuildRecord, s: Int8Settings): ModelError {
  const f = b.figures;
  const worst = b.worst.map((w) => `  ${w.label}: relative error ${w.error.toFixed(4)}`).join('\n');
  const kept = b.keptFloat.length > 0 ? `, after keeping ${b.keptFloat.length} tensor(s) in fp32 (${b.keptFloat.map((k) => k.tensor).join(', ')})` : '';
  return new ModelError(
    'E_INT8_GATE',
    `--precision int8 refused (E_INT8_GATE): on ${f.tiles} held-out tiles the int8 embedder agrees with fp32 at mean cosine ${f.mean_cosine.toFixed(5)} ` +
      `and 1st percentile ${f.p1_cosine.toFixed(5)} (gate: ${s.gate.mean} / ${s.gate.p1}; max abs error ${f.max_abs_error.toPrecision(3)})${kept}.\n` +
      `The tensors whose quantization errs most:\n${worst}\n` +
      `Run with --precision fp32, allow more fallback (--int8-fallback N, now ${s.maxFallback}), or lower the gate explicitly (--int8-gate MEAN,P1).`,
  );
}

async function uniqueTasks(rows: readonly CsvRow[], slidesDir: string): Promise<SlideTask[]> {
  const seen = new Set<string>();
  const tasks: SlideTask[] = [];
  for (const row of rows) {
    if (seen.has(row.image_id)) continue;
    seen.add(row.image_id);
    tasks.push(await slideTask(slidesDir, row));
  }
  return tasks;
}

async function* chunks(tiles: readonly SampledTile[], n: number, read: (t: readonly SampledTile[]) => Promise<Uint8Array[]>): AsyncIterable<Uint8Array[]> {
  for (let i = 0; i < tiles.length; i += n) yield await read(tiles.slice(i, i + n));
}

/** The tiles' pixels after the run's stain normalization (the NormalizeTiles stage itself, outside the graph). */
async function normalized(tasks: readonly SlideTask[], tiles: readonly SampledTile[], slide: SlideConfig): Promise<Uint8Array[]> {
  const size = slide.tile.tileSize;
  const raw = await readSampledTiles(tasks, tiles, size);
  if (slide.normalizer === 'none') return raw;
  const stage = normalizeTiles({ model: slide.normalizer, lutCacheDir: slide.lutCacheDir, mode: slide.normalizerMode ?? 'auto', threads: slide.threads, inPlace: true });
  const batch = raw.map((pixels, i) => ({ image_id: tiles[i]!.image_id, patient_id: '', image_num: 0, x: tiles[i]!.x, y: tiles[i]!.y, size, pixels }));
  const out: Uint8Array[] = [];
  for await (const group of stage(once(batch), standaloneCtx('Int8Calibration'))) out.push(...group.map((t) => t.pixels));
  return out;
}

async function* once<T>(x: T): AsyncIterable<T> {
  yield x;
}

/** A stage context for running one stage outside a graph (no budget to share: the caller bounds what it passes). */
function standaloneCtx(name: string): StageContext {
  const tiles: TileBudget = { limit: Infinity, inUse: 0, maxInUse: 0, acquire: async () => undefined, release: () => undefined };
  return { signal: new AbortController().signal, name, metrics: { name, elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} }, tiles };
}

function sha256(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

async function readIfThere(file: string): Promise<string | undefined> {
  return readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}

async function writeAtomic(file: string, data: string | Uint8Array): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}
