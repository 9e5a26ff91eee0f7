/** Computes each tile's 16x16x16 colour histogram (4096 bins, r*256 + g*16 + b on value>>4), summing to 1. */
import type { Stage, StageContext } from '../engine/types.js';
import { throwIfAborted } from '../models/runtime/batch-checks.js';
import type { Tile, TileHistogram } from './types.js';

export const HISTOGRAM_BINS = 4096;

/** The normalized 4096-bin histogram of RGB pixels. */
export function tileHistogram(pixels: Uint8Array): Float32Array {
  const counts = new Uint32Array(HISTOGRAM_BINS);
  for (let i = 0; i < pixels.length; i += 3) {
    counts[((pixels[i]! >> 4) << 8) | ((pixels[i + 1]! >> 4) << 4) | (pixels[i + 2]! >> 4)]!++;
  }
  const n = pixels.length / 3;
  const out = new Float32Array(HISTOGRAM_BINS);
  if (n > 0) for (let b = 0; b < HISTOGRAM_BINS; b++) out[b] = counts[b]! / n;
  return out;
}

/** Stage: Tile[] -> TileHistogram[] (same order; batches as the normalizer emits them). */
export function colorHistograms(): Stage<Tile[], TileHistogram[]> {
  return async function* histograms(source: AsyncIterable<Tile[]>, ctx: StageContext): AsyncIterable<TileHistogram[]> {
    for await (const tiles of source) {
      throwIfAborted(ctx);
      if (tiles.length === 0) continue;
      yield tiles.map((t): TileHistogram => ({
        kind: 'histogram',
        image_id: t.image_id,
        patient_id: t.patient_id,
        x: t.x,
        y: t.y,
        histogram: tileHistogram(t.pixels),
      }));
    }
  };
}
