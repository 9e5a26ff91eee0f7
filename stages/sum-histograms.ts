/** Stage: adds up a slide's per-tile colour histograms (float64, in tile order) into one SlideHistogram. */
import type { Stage } from '../engine/types.js';
import { HISTOGRAM_BINS } from './color-histograms.js';
import type { HistogramTick, SlideHistogram, TileHistogram } from './types.js';

const TICK: HistogramTick = { kind: 'histogram-tick' };

/**
 * Yields a tick per tile added (so tiles can be released as soon as their histogram is counted) and, at the
 * end of the slide, the sum. The input is one slide's tiles, as a worker runs this stage once per slide; `part`
 * numbers the sum when several workers share the slide (ItemShare.participant).
 */
export function sumHistograms(opts: { part?: number } = {}): Stage<TileHistogram, HistogramTick | SlideHistogram> {
  return async function* sumHistogramsStage(source) {
    let sum: Float64Array | undefined;
    let tiles = 0;
    let first: TileHistogram | undefined;
    for await (const h of source) {
      first ??= h;
      sum ??= new Float64Array(HISTOGRAM_BINS);
      for (let i = 0; i < HISTOGRAM_BINS; i++) sum[i]! += h.histogram[i]!;
      tiles++;
      yield TICK;
    }
    if (first !== undefined && sum !== undefined) {
      yield { kind: 'slide-histogram', image_id: first.image_id, patient_id: first.patient_id, part: opts.part ?? 0, tiles, sum };
    }
  };
}
