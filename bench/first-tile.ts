/**
 * Figure 5a, time to the first tile: a job whose only slide yields one tile (spawn, models, sessions, thumbnail,
 * 1 tile, write), wall clock.
 */
import { slidesFigure, type Figure } from './figure.js';
import { smallSlides, writeCsv, type SlideSet } from './inputs.js';
import { runJob } from './job.js';

/** On `slide` of the set (`one-big`, a 16k slide, by default). */
export function firstTileFigure(slides: () => Promise<SlideSet> = smallSlides, slide = 'one-big'): Figure {
  return slidesFigure('time to first tile', (opts) => opts.runs('overhead'), slides, async ({ opts, record }, set) => {
    const first = await runJob(writeCsv([slide]), set.dir, opts.jobArgs, ['--max-tiles', '1']);
    record.result.first_tile_s = first.wallS;
    record.show('time to first tile (job with 1 slide, --max-tiles 1, wall)', `${first.wallS.toFixed(2)} s`);
  });
}
