/**
 * An int8 embedder from an fp32 one, measured on the user's tiles: `calibrate` (activation ranges from calibration
 * tiles through the fp32 graph with its activations exposed) and `buildGated` (the QDQ model, compared with fp32 on
 * held-out tiles; while it fails the gate, the tensor whose own quantization errs most is kept in float, one at a
 * time, up to `maxFallback` tensors).
 */
import ort from 'onnxruntime-node';
import { sessionOptions } from '../runtime/session.js';
import { ModelError } from '../errors.js';
import { calibrationModel } from './calibration-graph.js';
import { compareEmbeddings, passes, TensorErrors, type GateFigures, type GateThresholds } from './gate.js';
import { decodeModel, encodeModel, type OnnxModel } from './onnx-model.js';
import { quantizeModel, type TensorRange } from './qdq.js';
import { RangeCollector, type CalibrationMethod } from './ranges.js';

/** Tiles as the embedder sees them: RGB uint8, `size` x `size`, after stain normalization. */
export interface TileSet {
  readonly size: number;
  readonly pixels: readonly Uint8Array[];
}

export interface CalibrateOptions {
  readonly method: CalibrationMethod;
  /** For `percentile` (default 99.99). */
  readonly percentile?: number;
  /** Tiles per onnxruntime run (every activation is an output: ~40 MB per tile at 224; default 2). */
  readonly batch?: number;
  readonly threads?: number;
}

export type Ranges = Record<string, TensorRange>;

/** One tensor and how much its own quantization errs on the held-out tiles (relative RMS). */
export interface TensorError {
  readonly tensor: string;
  /** The op producing it and the nearest conv before it (state-dict prefix), for people. */
  readonly label: string;
  readonly error: number;
}

export interface GatedBuild {
  /** The QDQ model (the last one tried when the gate failed). */
  readonly bytes: Uint8Array;
  readonly figures: GateFigures;
  /** The figures with every tensor quantized (before any fallback). */
  readonly firstFigures: GateFigures;
  readonly passed: boolean;
  readonly quantizedTensors: number;
  /** Tensors kept in float by the fallback, in the order chosen. */
  readonly keptFloat: readonly TensorError[];
  /** The tensors whose quantization errs most (top 5), measured on the held-out tiles. */
  readonly worst: readonly TensorError[];
}

async function session(bytes: Uint8Array, threads: number): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(bytes, sessionOptions(threads));
  } catch (cause) {
    throw new ModelError('E_MODEL', `onnxruntime cannot load the quantization model: ${String(cause)}`, { cause });
  }
}

/** Runs `s` over `tiles` in batches; `each` sees every batch's outputs (disposed afterwards). */
async function forBatches(s: ort.InferenceSession, tiles: TileSet, batch: number, each: (out: ort.InferenceSession.OnnxValueMapType, n: number) => void): Promise<void> {
  const per = tiles.size * tiles.size * 3;
  for (let i = 0; i < tiles.pixels.length; i += batch) {
    const part = tiles.pixels.slice(i, i + batch);
    const input = new Uint8Array(per * part.length);
    part.forEach((p, k) => input.set(p, k * per));
    const out = await s.run({ tiles: new ort.Tensor('uint8', input, [part.length, tiles.size, tiles.size, 3]) });
    try {
      each(out, part.length);
    } finally {
      for (const v of Object.values(out)) v.dispose();
    }
  }
}

/** Runs `s` on one batch of tiles; `each` sees its outputs (disposed afterwards). */
async function runBatch(s: ort.InferenceSession, size: number, part: readonly Uint8Array[], each: (out: ort.InferenceSession.OnnxValueMapType, n: number) => void): Promise<void> {
  await forBatches(s, { size, pixels: part }, part.length, each);
}

/**
 * Activation ranges of the fp32 model `fp32` over calibration tiles of `size`, streamed in `chunks` (each run in
 * onnxruntime batches of `opts.batch`), so that only a chunk of tiles is in memory at a time.
 */
export async function calibrate(fp32: Uint8Array, size: number, chunks: AsyncIterable<readonly Uint8Array[]>, opts: CalibrateOptions): Promise<Ranges> {
  const { model, tensors } = calibrationModel(decodeModel(fp32, 'embedder'));
  const s = await session(encodeModel(model), opts.threads ?? 1);
  try {
    const ranges = new RangeCollector(opts.method, opts.percentile);
    let seen = 0;
    for await (const chunk of chunks) {
      const batch = opts.batch ?? 2;
      for (let i = 0; i < chunk.length; i += batch) {
        await runBatch(s, size, chunk.slice(i, i + batch), (out) => {
          for (const t of tensors) ranges.add(t, out[t]!.data as Float32Array);
        });
      }
      seen += chunk.length;
    }
    if (seen === 0) throw new ModelError('E_MODEL', 'int8 calibration: no calibration tiles');
    return ranges.ranges();
  } finally {
    await s.release();
  }
}

/** Concatenated avg+max rows of a batch's outputs appended to `rows`. */
function appendRows(out: ort.InferenceSession.OnnxValueMapType, n: number, rows: number[][]): number {
  const avg = out.avg!.data as Float32Array;
  const max = out.max!.data as Float32Array;
  const dim = avg.length / n;
  for (let i = 0; i < n; i++) rows.push([...avg.subarray(i * dim, (i + 1) * dim), ...max.subarray(i * dim, (i + 1) * dim)]);
  return 2 * dim;
}

/** The fp32 reference on the held-out tiles: embeddings and every tensor's own quantization error under `ranges`. */
async function reference(m: OnnxModel, ranges: Ranges, held: TileSet, threads: number, batch: number): Promise<{ rows: Float32Array; width: number; errors: Array<{ tensor: string; error: number }> }> {
  const { model, tensors } = calibrationModel(m);
  const s = await session(encodeModel(model), threads);
  try {
    const rows: number[][] = [];
    const errors = new TensorErrors();
    let width = 0;
    await forBatches(s, held, batch, (out, n) => {
      width = appendRows(out, n, rows);
      for (const t of tensors) if (ranges[t] !== undefined) errors.add(t, out[t]!.data as Float32Array, ranges[t]!);
    });
    return { rows: Float32Array.from(rows.flat()), width, errors: errors.ranked() };
  } finally {
    await s.release();
  }
}

async function embedAll(bytes: Uint8Array, held: TileSet, threads: number): Promise<Float32Array> {
  const s = await session(bytes, threads);
  try {
    const rows: number[][] = [];
    await forBatches(s, held, 8, (out, n) => void appendRows(out, n, rows));
    return Float32Array.from(rows.flat());
  } finally {
    await s.release();
  }
}

/** Human labels: the producing op and the nearest conv before it (its weight's state-dict prefix). */
export function tensorLabels(m: OnnxModel): Map<string, string> {
  const producer = new Map(m.graph.node.flatMap((n) => n.output.map((o) => [o, n] as const)));
  const labels = new Map<string, string>();
  for (const [t, n] of producer) {
    let p: typeof n | undefined = n;
    let conv: string | undefined;
    for (let steps = 0; p !== undefined && steps < 8; steps++) {
      if (p.op_type === 'Conv') {
        conv = (p.input[1] ?? '').replace(/\.w$/, '');
        break;
      }
      p = producer.get(p.input[0] ?? '');
    }
    labels.set(t, `${n.op_type} output after ${conv ?? 'the input stage'} (${t})`);
  }
  return labels;
}

export interface GateOptions {
  readonly gate: GateThresholds;
  /** Most tensors the fallback keeps in float (0: none). */
  readonly maxFallback: number;
  readonly threads?: number;
  readonly batch?: number;
}

/** The QDQ model under `ranges`, gated on `held`, with the one-at-a-time float fallback. */
export async function buildGated(fp32: Uint8Array, ranges: Ranges, held: TileSet, opts: GateOptions): Promise<GatedBuild> {
  if (held.pixels.length === 0) throw new ModelError('E_MODEL', 'int8 gate: no held-out tiles');
  const m = decodeModel(fp32, 'embedder');
  const threads = opts.threads ?? 1;
  const ref = await reference(m, ranges, held, threads, opts.batch ?? 2);
  const labels = tensorLabels(m);
  const named = ref.errors.map((e) => ({ ...e, label: labels.get(e.tensor) ?? e.tensor }));
  const keepFloat = new Set<string>();
  const kept: TensorError[] = [];
  let first: GateFigures | undefined;
  for (;;) {
    const q = quantizeModel(m, { ranges, keepFloat });
    const bytes = encodeModel(q);
    const figures = compareEmbeddings(ref.rows, await embedAll(bytes, held, threads), ref.width);
    first ??= figures;
    const passed = passes(figures, opts.gate);
    const next = named.find((e) => !keepFloat.has(e.tensor));
    if (passed || kept.length >= opts.maxFallback || next === undefined) {
      return { bytes, figures, firstFigures: first, passed, quantizedTensors: Object.keys(ranges).length - keepFloat.size, keptFloat: kept, worst: named.slice(0, 5) };
    }
    keepFloat.add(next.tensor);
    kept.push(next);
  }
}
