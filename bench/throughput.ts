/**
 * Figures 1-3 measured in turns (parts `stages` and `pipeline`): stage costs and pipeline runs alternate (costs,
 * job, no engine, costs, job, no engine, ..., costs). This host's speed drifts by a quarter within minutes (other
 * tenants), so each pipeline run is divided by the bound measured around it (the mean of the runs just before and
 * just after), and the efficiency is the median of those same-time ratios. Then each module records its figures:
 * bench/stage-costs.ts, bench/no-engine.ts, bench/pipeline.ts.
 */
import { slidesFigure, type BenchContext, type Figure } from './figure.js';
import { slidePath, throughputSlides, writeCsv, type SlideSet } from './inputs.js';
import { runJob, type JobResult } from './job.js';
import { noEngine, recordNoEngine, type NoEngineRun } from './no-engine.js';
import { CORES } from './options.js';
import { recordPipeline } from './pipeline.js';
import { recordStageCosts, STAGE_COST_TILES, stageCostsInChild, type StageCosts } from './stage-costs.js';

/** Tiles per no-engine copy in the throughput series. */
const NO_ENGINE_TILES = 160;

interface ThroughputRuns {
  readonly samples: StageCosts[];
  /** The first stage-cost run's batch sweep. */
  sweep: Record<string, number>;
  readonly jobs: JobResult[];
  readonly idealAlone: NoEngineRun[];
  readonly idealAll: NoEngineRun[];
}

/** The interleaved runs, `repeat` turns and one more stage-cost run after the last job. */
async function measureInTurns(ctx: BenchContext, slides: SlideSet, csv: string): Promise<ThroughputRuns> {
  const { opts, models, lutFile } = ctx;
  const runs: ThroughputRuns = { samples: [], sweep: {}, jobs: [], idealAlone: [], idealAll: [] };
  const costs = (r: number, withSweep: boolean): void => {
    const run = stageCostsInChild(slidePath(slides, r), models, lutFile, STAGE_COST_TILES, withSweep, opts.jobGroupSize);
    runs.samples.push(run.costs);
    if (withSweep) runs.sweep = run.sweep;
  };
  for (let r = 0; r < opts.repeat; r++) {
    // Each stage-cost run on another slide's tiles: tiles seen before would find the lookup table and the
    // decoder's data in the CPU caches and look cheaper than they are in the pipeline, where every tile is new.
    if (opts.runs('stages')) costs(r, r === 0);
    if (opts.runs('pipeline')) runs.jobs.push(await runJob(csv, slides.dir, opts.jobArgs));
    if (opts.runs('stages')) {
      // The stages with no engine, on one core and then on every core at once (how this machine's cores scale).
      const all = Array.from({ length: CORES }, (_, i) => slidePath(slides, r + i));
      runs.idealAlone.push(await noEngine(all.slice(0, 1), NO_ENGINE_TILES, lutFile, models.efficientnet));
      runs.idealAll.push(await noEngine(all, NO_ENGINE_TILES, lutFile, models.efficientnet));
    }
  }
  // One more stage-cost run after the last job: each job is then bracketed by a stage-cost run before and after it
  // (a ~3 s sample against a ~40 s job: the mean of the two follows the host's drift better than either alone).
  if (opts.runs('stages') && opts.runs('pipeline')) costs(opts.repeat, false);
  return runs;
}

/** Stage costs, the bound, no engine and the pipeline, on `slides` (the throughput slides by default). */
export function throughputFigure(slides: () => Promise<SlideSet> = () => throughputSlides()): Figure {
  return slidesFigure('stage costs, no engine, pipeline', (opts) => opts.runs('stages') || opts.runs('pipeline'), slides, async (ctx, set) => {
    const csv = writeCsv(set.ids);
    const runs = await measureInTurns(ctx, set, csv);
    let bound = NaN;
    if (runs.samples.length > 0) {
      bound = recordStageCosts(ctx.record, runs.samples, runs.sweep);
      recordNoEngine(ctx.record, runs.idealAlone, runs.idealAll);
    }
    if (runs.jobs.length > 0) await recordPipeline(ctx, { csv, slidesDir: set.dir, slides: set.ids.length, jobs: runs.jobs, samples: runs.samples, idealAll: runs.idealAll }, bound);
  });
}
