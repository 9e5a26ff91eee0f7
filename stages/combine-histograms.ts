/** Keyed reducer: averages a patient's per-tile colour histograms (arriving as per-slide sums) into one MeanHistogram. */
import { EngineError, type CombineFn } from '../engine/types.js';
import { HISTOGRAM_BINS } from './color-histograms.js';
import type { MeanHistogram, SlideHistogram } from './types.js';

/**
 * The patient's slide sums by image_id and part. Slides finish in any order and float sums depend on their
 * order: the sums are added in (image_id, part) order at the end, so the mean is bit-identical whatever the
 * order slides finish in.
 */
export interface HistogramAcc {
  readonly patient_id: string;
  readonly slides: Map<string, SlideHistogram>;
}

/** Sorts as (image_id, part): NUL sorts before every character an image_id may have. */
const sumKey = (h: SlideHistogram): string => `${h.image_id}\u0000${String(h.part ?? 0).padStart(6, '0')}`;

const STAGE = 'combine-histograms';

function addSlide(acc: HistogramAcc, slide: SlideHistogram): void {
  if (slide.sum.length !== HISTOGRAM_BINS) {
    throw new EngineError('E_HISTOGRAM_SIZE', STAGE, acc.patient_id, `image ${slide.image_id}: histogram has ${slide.sum.length} bins, expected ${HISTOGRAM_BINS}`);
  }
  const key = sumKey(slide);
  if (acc.slides.has(key)) {
    throw new EngineError('E_DUPLICATE_TILE', STAGE, acc.patient_id, `image ${slide.image_id}${slide.part ? ` (part ${slide.part})` : ''}: its colour histograms were received twice`);
  }
  acc.slides.set(key, slide);
}

export function combineHistograms(): CombineFn<SlideHistogram, HistogramAcc, MeanHistogram> {
  return {
    createAccumulator: (ctx) => ({ patient_id: ctx.key, slides: new Map() }),
    addInput(acc, slide) {
      addSlide(acc, slide);
      return acc;
    },
    mergeAccumulators(accs, ctx) {
      const merged: HistogramAcc = { patient_id: ctx.key, slides: new Map() };
      for (const acc of accs) for (const slide of acc.slides.values()) addSlide(merged, slide);
      return merged;
    },
    extractOutput(acc) {
      const total = new Float64Array(HISTOGRAM_BINS);
      let tiles = 0;
      for (const key of [...acc.slides.keys()].sort()) {
        const slide = acc.slides.get(key)!;
        for (let i = 0; i < HISTOGRAM_BINS; i++) total[i]! += slide.sum[i]!;
        tiles += slide.tiles;
      }
      const histogram = new Float32Array(HISTOGRAM_BINS);
      if (tiles > 0) for (let i = 0; i < HISTOGRAM_BINS; i++) histogram[i] = total[i]! / tiles;
      return { patient_id: acc.patient_id, tiles, histogram };
    },
  };
}
