/**
 * The accuracy gate's measurements: int8 vs fp32 embeddings of the same held-out tiles (cosine similarity of each
 * tile's concatenated avg+max vector; its mean, 1st percentile and minimum; the largest absolute difference), and
 * each activation tensor's own quantization error (relative RMS of quantize-dequantize on its fp32 values).
 */
import { u8Params, type TensorRange } from './qdq.js';

/** The figures the gate decides on (and the report records). */
export interface GateFigures {
  readonly tiles: number;
  readonly mean_cosine: number;
  readonly p1_cosine: number;
  readonly min_cosine: number;
  readonly max_abs_error: number;
}

/** The thresholds: below either, int8 is refused. */
export interface GateThresholds {
  readonly mean: number;
  readonly p1: number;
}

export const DEFAULT_GATE: GateThresholds = { mean: 0.99, p1: 0.97 };

/** Per-tile concatenated avg+max rows (`tiles` x `width`), fp32 and int8. */
export function compareEmbeddings(ref: Float32Array, got: Float32Array, width: number): GateFigures {
  const tiles = ref.length / width;
  const cos: number[] = [];
  let maxAbs = 0;
  for (let t = 0; t < tiles; t++) {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let i = t * width; i < (t + 1) * width; i++) {
      const a = ref[i]!;
      const b = got[i]!;
      dot += a * b;
      na += a * a;
      nb += b * b;
      maxAbs = Math.max(maxAbs, Math.abs(a - b));
    }
    // Two zero vectors are the same vector; one zero vector against another is not.
    cos.push(na === 0 && nb === 0 ? 1 : na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb));
  }
  const sorted = [...cos].sort((a, b) => a - b);
  // The 1st percentile, nearest rank.
  const p1 = sorted[Math.max(0, Math.ceil(0.01 * sorted.length) - 1)] ?? 0;
  return {
    tiles,
    mean_cosine: cos.reduce((a, b) => a + b, 0) / Math.max(1, cos.length),
    p1_cosine: p1,
    min_cosine: sorted[0] ?? 0,
    max_abs_error: maxAbs,
  };
}

export function passes(f: GateFigures, g: GateThresholds): boolean {
  return f.mean_cosine >= g.mean && f.p1_cosine >= g.p1;
}

/** Sums of squared quantize-dequantize error and of squared values, per tensor, over held-out batches. */
export class TensorErrors {
  private readonly sums = new Map<string, { err: number; ref: number }>();

  add(tensor: string, data: Float32Array, range: TensorRange): void {
    const { scale, zeroPoint } = u8Params(range);
    let err = 0;
    let ref = 0;
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      const q = Math.max(0, Math.min(255, Math.round(v / scale) + zeroPoint));
      const d = v - (q - zeroPoint) * scale;
      err += d * d;
      ref += v * v;
    }
    const s = this.sums.get(tensor) ?? { err: 0, ref: 0 };
    s.err += err;
    s.ref += ref;
    this.sums.set(tensor, s);
  }

  /** Relative RMS error per tensor, largest first. */
  ranked(): Array<{ tensor: string; error: number }> {
    return [...this.sums].map(([tensor, s]) => ({ tensor, error: s.ref > 0 ? Math.sqrt(s.err / s.ref) : 0 })).sort((a, b) => b.error - a.error);
  }
}
