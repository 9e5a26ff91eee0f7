/** Keyed reducer: averages a patient's per-tile colour histograms into one MeanHistogram. */
import { EngineError, type CombineFn } from '../engine/types.js';
import { HISTOGRAM_BINS } from './color-histograms.js';
import type { MeanHistogram, TileHistogram } from './types.js';

/** A float64 running sum (float32 sums lose precision over tens of thousands of tiles) and its tile count. */
interface PartialSum {
  readonly sum: Float64Array;
  tiles: number;
}

/**
 * One partial sum per slide. A slide's tiles arrive in a fixed order (row-major, one worker), but slides
 * finish in any order, and float sums depend on their order: the partials are added in image_id order at
 * the end, so the mean is bit-identical whatever the number of workers and the order slides finish in.
 */
export interface HistogramAcc {
  readonly patient_id: string;
  readonly slides: Map<string, PartialSum>;
}

const STAGE = 'combine-histograms';

function addInto(into: Float64Array, from: ArrayLike<number>): void {
  for (let i = 0; i < HISTOGRAM_BINS; i++) into[i]! += from[i]!;
}

export function combineHistograms(): CombineFn<TileHistogram, HistogramAcc, MeanHistogram> {
  return {
    createAccumulator: (ctx) => ({ patient_id: ctx.key, slides: new Map() }),
    addInput(acc, input) {
      const h = input.histogram;
      if (h.length !== HISTOGRAM_BINS) {
        throw new EngineError('E_HISTOGRAM_SIZE', STAGE, input.patient_id, `tile (${input.x}, ${input.y}) of image ${input.image_id}: histogram has ${h.length} bins, expected ${HISTOGRAM_BINS}`);
      }
      let partial = acc.slides.get(input.image_id);
      if (partial === undefined) acc.slides.set(input.image_id, (partial = { sum: new Float64Array(HISTOGRAM_BINS), tiles: 0 }));
      addInto(partial.sum, h);
      partial.tiles++;
      return acc;
    },
    mergeAccumulators(accs, ctx) {
      const merged: HistogramAcc = { patient_id: ctx.key, slides: new Map() };
      for (const acc of accs) {
        for (const [image_id, partial] of acc.slides) {
          const into = merged.slides.get(image_id);
          if (into === undefined) merged.slides.set(image_id, { sum: Float64Array.from(partial.sum), tiles: partial.tiles });
          else {
            addInto(into.sum, partial.sum);
            into.tiles += partial.tiles;
          }
        }
      }
      return merged;
    },
    extractOutput(acc) {
      const total = new Float64Array(HISTOGRAM_BINS);
      let tiles = 0;
      for (const image_id of [...acc.slides.keys()].sort()) {
        const partial = acc.slides.get(image_id)!;
        addInto(total, partial.sum);
        tiles += partial.tiles;
      }
      const histogram = new Float32Array(HISTOGRAM_BINS);
      if (tiles > 0) for (let i = 0; i < HISTOGRAM_BINS; i++) histogram[i] = total[i]! / tiles;
      return { patient_id: acc.patient_id, tiles, histogram };
    },
  };
}
