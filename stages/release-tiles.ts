/** Stage: gives tiles back to the tile budget once both branches (embedding and histogram) are done with them. */
import type { Stage } from '../engine/types.js';
import type { HistogramTick, SlideResult } from './types.js';

/**
 * ProduceTiles acquires one budget token per tile it decodes. A tile's pixels (and its normalized copy)
 * are needed until both its embedding and its histogram exist; the embedding branch reports its tiles in packed
 * groups, the histogram branch one tick per tile, so `min(embeddings seen, ticks seen)` tiles are finished. Ticks
 * stay in the worker: they are dropped here. Tokens still held when a slide ends early (abort, error) are
 * returned by the slide's scoped budget (see perSlide in graph.ts).
 */
export function releaseTiles(): Stage<SlideResult | HistogramTick, SlideResult> {
  return async function* releaseTilesStage(source, ctx) {
    let embeddings = 0;
    let histograms = 0;
    let released = 0;
    for await (const result of source) {
      if (result.kind === 'embeddings') embeddings += result.x.length;
      else if (result.kind === 'histogram-tick') histograms++;
      const finished = Math.min(embeddings, histograms);
      if (finished > released) {
        ctx.tiles.release(finished - released);
        released = finished;
      }
      if (result.kind !== 'histogram-tick') yield result;
    }
  };
}
