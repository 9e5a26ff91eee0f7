/** Keyed reducer: averages a patient's per-tile colour histograms into one MeanHistogram. */
import { EngineError, type CombineFn } from '../engine/types.js';
import type { MeanHistogram, TileHistogram } from './types.js';

export const HISTOGRAM_BINS = 4096;

/** Running float64 sum over tiles (float32 sums lose precision over tens of thousands of tiles). */
export interface HistogramAcc {
  readonly patient_id: string;
  sum: Float64Array;
  tiles: number;
}

const STAGE = 'combine-histograms';

export function combineHistograms(): CombineFn<TileHistogram, HistogramAcc, MeanHistogram> {
  return {
    createAccumulator: (ctx) => ({ patient_id: ctx.key, sum: new Float64Array(HISTOGRAM_BINS), tiles: 0 }),
    addInput(acc, input) {
      const h = input.histogram;
      if (h.length !== HISTOGRAM_BINS) {
        throw new EngineError('E_HISTOGRAM_SIZE', STAGE, input.patient_id, `tile (${input.x}, ${input.y}) of image ${input.image_id}: histogram has ${h.length} bins, expected ${HISTOGRAM_BINS}`);
      }
      for (let i = 0; i < HISTOGRAM_BINS; i++) acc.sum[i]! += h[i]!;
      acc.tiles++;
      return acc;
    },
    mergeAccumulators(accs, ctx) {
      const merged: HistogramAcc = { patient_id: ctx.key, sum: new Float64Array(HISTOGRAM_BINS), tiles: 0 };
      for (const acc of accs) {
        for (let i = 0; i < HISTOGRAM_BINS; i++) merged.sum[i]! += acc.sum[i]!;
        merged.tiles += acc.tiles;
      }
      return merged;
    },
    extractOutput(acc) {
      const histogram = new Float32Array(HISTOGRAM_BINS);
      if (acc.tiles > 0) for (let i = 0; i < HISTOGRAM_BINS; i++) histogram[i] = acc.sum[i]! / acc.tiles;
      return { patient_id: acc.patient_id, tiles: acc.tiles, histogram };
    },
  };
}
