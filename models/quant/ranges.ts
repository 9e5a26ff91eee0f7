/**
 * Activation ranges from calibration batches. `minmax`: the extremes seen. `percentile`: per batch, the values at
 * the lower and upper `percentile` tails (a 2048-bin histogram over the batch's own extremes), averaged over the
 * batches; tensors with fewer than 16384 values per batch (squeeze-excite vectors) use their extremes.
 */
import type { TensorRange } from './qdq.js';

export type CalibrationMethod = 'minmax' | 'percentile';
export const CALIBRATION_METHODS: readonly CalibrationMethod[] = ['minmax', 'percentile'];

const BINS = 2048;
const SMALL = 16384;

interface Acc {
  min: number;
  max: number;
  loSum: number;
  hiSum: number;
  batches: number;
  small: boolean;
}

/** Extremes of `data`. */
export function extremes(data: Float32Array): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

/** The values at fraction `q` from the bottom and from the top of `data` (histogram resolution). */
function tails(data: Float32Array, min: number, max: number, q: number): { lo: number; hi: number } {
  if (!(max > min)) return { lo: min, hi: max };
  const hist = new Float64Array(BINS);
  const k = BINS / (max - min);
  for (let i = 0; i < data.length; i++) hist[Math.min(BINS - 1, Math.floor((data[i]! - min) * k))]++;
  const cut = q * data.length;
  let acc = 0;
  let lo = 0;
  while (lo < BINS - 1 && acc + hist[lo]! <= cut) acc += hist[lo++]!;
  acc = 0;
  let hi = BINS - 1;
  while (hi > 0 && acc + hist[hi]! <= cut) acc += hist[hi--]!;
  return { lo: min + lo / k, hi: min + (hi + 1) / k };
}

/** Accumulates ranges per tensor over calibration batches. */
export class RangeCollector {
  private readonly acc = new Map<string, Acc>();
  constructor(readonly method: CalibrationMethod, readonly percentile = 99.99) {}

  /** One batch's values of `tensor`. */
  add(tensor: string, data: Float32Array): void {
    const { min, max } = extremes(data);
    let a = this.acc.get(tensor);
    if (a === undefined) {
      a = { min, max, loSum: 0, hiSum: 0, batches: 0, small: data.length < SMALL };
      this.acc.set(tensor, a);
    }
    a.min = Math.min(a.min, min);
    a.max = Math.max(a.max, max);
    if (this.method === 'percentile' && !a.small) {
      const t = tails(data, min, max, 1 - this.percentile / 100);
      a.loSum += t.lo;
      a.hiSum += t.hi;
      a.batches++;
    }
  }

  /** The ranges, per tensor. */
  ranges(): Record<string, TensorRange> {
    const out: Record<string, TensorRange> = {};
    for (const [t, a] of this.acc) {
      out[t] = this.method === 'percentile' && !a.small && a.batches > 0 ? { min: a.loSum / a.batches, max: a.hiSum / a.batches } : { min: a.min, max: a.max };
    }
    return out;
  }
}
