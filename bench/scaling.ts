/**
 * Stage scaling (`--only scaling`; not in the default run): each stage alone, in one process and then in one
 * process per core at once (bench/ideal.ts): which stage loses most when every core works.
 */
import { slidesFigure, type Figure } from './figure.js';
import { slidePath, throughputSlides, type SlideSet } from './inputs.js';
import { noEngine } from './no-engine.js';
import { CORES } from './options.js';
import { median } from './record.js';

/** Tiles per copy. */
const SCALING_TILES = 200;
const STAGES = ['read', 'normalize', 'embed', 'histogram', 'all'];

export function scalingFigure(slides: () => Promise<SlideSet> = () => throughputSlides()): Figure {
  return slidesFigure('stage scaling', (opts) => opts.runs('scaling'), slides, async ({ opts, models, lutFile, record }, set) => {
    const scaling: Record<string, number[]> = {};
    for (let r = 0; r < opts.repeat; r++) {
      const all = Array.from({ length: CORES }, (_, i) => slidePath(set, r + i));
      for (const stageName of STAGES) {
        const alone = await noEngine(all.slice(0, 1), SCALING_TILES, lutFile, models.efficientnet, stageName);
        const every = await noEngine(all, SCALING_TILES, lutFile, models.efficientnet, stageName);
        (scaling[stageName] ??= []).push(every.tilesPerS / (CORES * alone.tilesPerS));
      }
    }
    record.result.stage_scaling = Object.fromEntries(Object.entries(scaling).map(([k, v]) => [k, { median: median(v), runs: v }]));
    for (const [k, v] of Object.entries(scaling)) record.show(`scaling of ${k} on ${CORES} cores (tiles/s of ${CORES} processes / ${CORES} x 1 process)`, `${median(v).toFixed(2)} (runs ${v.map((x) => x.toFixed(2)).join(' / ')})`);
  });
}
