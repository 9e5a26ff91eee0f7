/**
 * The built-in benchmark suite (`npm run bench`, `npm run bench -- --full`, `--json FILE`): this driver prepares
 * the models and the lookup table, lets every selected figure module prepare its inputs (excluded from every
 * figure), measures them in turn, prints the table and writes results.json and results.svg. One module per figure:
 *   1. stage cost (bench/stage-costs.ts): CPU ms per tile of each stage alone on one core, each sample in a fresh
 *      child process with the workers' allocator settings;
 *   2. bound: cores x 1000 / sum of stage costs (bench/stage-costs.ts), and the stages with no engine at all on
 *      1 core and on every core at once (bench/no-engine.ts, running bench/ideal.ts: how the cores really scale);
 *   3. pipeline (bench/pipeline.ts): end-to-end tiles/s of the real main job (child process, bench/job.ts) on 4
 *      generated slides of 20k px, each run bracketed by stage-cost runs (bench/throughput.ts measures 1-3 in
 *      turns); its fixed cost, marginal CPU per tile, steady-state rate, and with --full the short job;
 *   4. memory (bench/memory-series.ts): peak RSS of the job's whole process tree on one slide of 4k, 16k, 64k (100k
 *      with --full) px, the highest of --memory-repeat runs (2) each;
 *   5. time to the first tile (bench/first-tile.ts) and per-slide overhead (bench/slide-overhead.ts).
 * Everything is measured in the same run; slides (bench/inputs.ts), models and the lookup table are cached under
 * .cache/ (the 64k slide takes about a minute once). Options (bench/options.ts): --full, --json FILE, --only a,b,
 * --job-args "..." (extra flags for every job run: A/B of defaults), --repeat N (stage-cost and pipeline runs,
 * medians; 3), --memory-repeat N. `--only scaling` (not in the default run) measures how each stage alone scales
 * to every core (bench/scaling.ts). `--only embed-batch` (not in the default run) measures the embedder's CPU ms per
 * tile at batch 1-16 (bench/embed-batch.ts; --embed-model, --precision, --embed-threads, --embed-variant).
 * `--only embedders` the CPU cost per tile of each embedder architecture and the dynamically quantized ViTs' speed
 * and accuracy (bench/embedders.ts).
 * to every core (bench/scaling.ts). `--only queue-throughput,queue-control` (named only; need redis-server): the queue
 * against the local pool, and the queue's control plane (bench/queue-throughput.ts, bench/queue-control.ts);
 * `--only queue-counts` what the coordinator's progress counts cost Redis per refresh (bench/queue-counts.ts).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { ensureLut } from '../models/runtime/lut.js';
import { ensureModels } from '../stages/cli/models-build.js';
import { runUnderWorkerAllocator } from './env.js';
import type { BenchContext, Figure } from './figure.js';
import { embedBatchFigure } from './embed-batch.js';
import { firstTileFigure } from './first-tile.js';
import { memorySeriesFigure, type MemoryRow } from './memory-series.js';
import { benchOptions, CACHE, CORES } from './options.js';
import { embeddersFigure } from './embedders.js';
import { BenchRecord, log } from './record.js';
import { queueControlFigure } from './queue-control.js';
import { jpegCheckFigure } from './jpeg-check.js';
import { queueCountsFigure } from './queue-counts.js';
import { queueThroughputFigure } from './queue-throughput.js';
import { scalingFigure } from './scaling.js';
import { singleLevelFigure } from './single-level.js';
import { slideFilesFigure } from './slide-files.js';
import { slideOverheadFigure } from './slide-overhead.js';
import { svgPlot } from './svg-plot.js';
import { throughputFigure } from './throughput.js';

runUnderWorkerAllocator();

/** The figures, in the order they are measured, printed and written (each says which --only parts select it). */
const FIGURES: readonly Figure[] = [
  throughputFigure(), // 1-3: stage costs, bound, no engine, pipeline (parts `stages`, `pipeline`)
  scalingFigure(), // part `scaling`, only when named
  memorySeriesFigure(), // 4 (part `memory`)
  firstTileFigure(), // 5 (part `overhead`)
  slideOverheadFigure(), // 5 (part `overhead`)
  singleLevelFigure(), // single-level slides (part `single-level`, only when named)
  embedBatchFigure(), // embedding CPU ms/tile by batch size for one model and precision (part `embed-batch`, only when named)
  embeddersFigure(), // CPU ms/tile per embedder architecture, int8 ViTs (part `embedders`, only when named)
  slideFilesFigure(), // per-slide h5 / geojson writers (part `slide-files`, only when named)
  queueThroughputFigure(), // the queue against the local pool (part `queue-throughput`, only when named)
  queueControlFigure(), // the queue's control plane, 10,000 tiny jobs (part `queue-control`, only when named)
  jpegCheckFigure(), // the corrupt-JPEG-tile check against the tile read (part `jpeg-check`, only when named)
  queueCountsFigure(), // the coordinator's progress counts per refresh (part `queue-counts`, only when named)
];

/** results.json, and results.svg beside it when the memory series ran. */
function writeResults(file: string, result: Record<string, unknown>): void {
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  if (result.memory !== undefined) {
    const svg = file.replace(/\.json$/, '') + '.svg';
    writeFileSync(svg, svgPlot(result.memory as MemoryRow[]));
    log(`wrote ${file} and ${svg}`);
  } else log(`wrote ${file}`);
}

async function main(): Promise<void> {
  const opts = benchOptions(process.argv.slice(2));
  const load0 = os.loadavg();
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  log(`${CORES} cores (${cpu}), load average ${load0.map((l) => l.toFixed(2)).join(' ')}; preparing models, table and slides`);

  // Preparation, excluded from every figure: models, the lookup table, each figure's slides.
  const models = await ensureModels(join(CACHE, 'models'));
  const figures = FIGURES.filter((f) => f.enabled(opts));
  // The table takes minutes to build the first time: only when a selected figure runs the normalizer.
  const lutFile = figures.some((f) => f.usesLut !== false) ? await ensureLut(models.stainnet, join(CACHE, 'lut'), CORES) : '';
  const record = new BenchRecord();
  const machine: Record<string, unknown> = { nproc: CORES, cpu, node: process.version, loadavg_start: load0 };
  record.result.machine = machine;
  record.result.job_args = opts.jobArgs;
  const ctx: BenchContext = { opts, models, lutFile, record };
  for (const f of figures) await f.prepare?.(ctx);

  for (const f of figures) await f.measure(ctx);

  const load1 = os.loadavg();
  machine.loadavg_end = load1;
  record.show('load average start / end', `${load0.map((l) => l.toFixed(2)).join(' ')} / ${load1.map((l) => l.toFixed(2)).join(' ')}`);
  console.log(record.formatTable());
  if (opts.jsonOut !== undefined) writeResults(opts.jsonOut, record.result);
}

await main();
