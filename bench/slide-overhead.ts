/**
 * Figure 5b, per-slide overhead: 8 small all-tissue slides against one slide yielding the same number of tiles,
 * one worker: the difference over the 7 extra slides is what each slide costs beyond its tiles (open, thumbnail,
 * selection, its worker's set-up of the item).
 */
import { slidesFigure, type Figure } from './figure.js';
import { smallSlides, writeCsv, type SlideSet } from './inputs.js';
import { runJob } from './job.js';

/** The set's slides against its `big` one (`one-big`) capped at the same tiles. */
export function slideOverheadFigure(slides: () => Promise<SlideSet> = smallSlides, big = 'one-big'): Figure {
  return slidesFigure('per-slide overhead', (opts) => opts.runs('overhead'), slides, async ({ opts, record }, { ids, dir }) => {
    const many = await runJob(writeCsv(ids), dir, opts.jobArgs, ['--workers', '1']);
    const one = await runJob(writeCsv([big]), dir, opts.jobArgs, ['--workers', '1', '--max-tiles', String(many.tiles)]);
    const perSlide = (many.wallS - one.wallS) / (ids.length - 1);
    record.result.per_slide_overhead_s = perSlide;
    record.result.overhead = { many_slides: ids.length, many_s: many.wallS, one_s: one.wallS, tiles: many.tiles };
    record.show(`per-slide overhead (${ids.length} slides vs 1, ${many.tiles} tiles, 1 worker)`, `${perSlide.toFixed(2)} s/slide (${many.wallS.toFixed(1)} s vs ${one.wallS.toFixed(1)} s)`);
  });
}
