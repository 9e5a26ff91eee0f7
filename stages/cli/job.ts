/**
 * The main job around the pipeline declared in graph.ts, as a short sequence of named steps (runJob):
 * options, inputs (CSV or demo data), models, checkpoints (resume), the graph's run with progress, the run
 * report and what the user is told. Exit codes: see main.ts.
 */
import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, join, relative } from 'node:path';
import { Graph, onWorkerStderr, prestartWorkers, type FanOutRunner, type RunResult } from '../../engine/index.js';
import type { PipelineConfig, PipelineHooks, SlideConfig } from '../../graph.js';
import { BATCH_WAIT_MS, HELP, optionWarnings, parseRunOptions, type RunOptions } from './options.js';
import { createProgress } from './progress.js';
import { sampleTreeRss } from './proc-tree.js';
import type { RunReport } from '../report/report.js';
import { E_NOT_PROCESSED, RunRecord } from './run-record.js';
import { attentionSummary, failureSummary } from '../report/failures.js';
import { CsvError, readCsv } from '../csv/read.js';
import { checkPatients } from '../csv/patients.js';
import { makeDemo } from './make-demo.js';
import { ensureModels } from './models-build.js';
import { prepareModel } from '../../models/runtime/model-files.js';
import { normalizerMode } from '../../models/runtime/lut.js';
import type { CsvRow } from '../types.js';
import { findCommitted } from '../../engine/staging.js';
import { slideTask, slideCheckpointKey } from '../slide-tasks.js';
import { lockRun } from './run-lock.js';
import { checkJobPaths } from '../dataset/paths.js';
import { sha256File } from '../dataset/manifest.js';
import { openDataset, publish, type Publication } from '../dataset/publish.js';
import type { SlideFilesConfig } from '../slide-files/formats.js';
import { preparePrecision, type PrecisionRecord } from './precision.js';
import type { QueueConnection } from '../../engine/queue/connection.js';
import type { QueueCounts } from '../../engine/queue/counts.js';
import { modelInWorkDir, openQueue, startQueueRun } from './queue-run.js';
import { CACHE_DIR_ENV, cacheDir } from './cache-dir.js';

export interface MainDeps {
  readonly pipeline: (g: Graph, c: PipelineConfig, hooks: PipelineHooks) => Graph;
  readonly workerModule: string;
}

/**
 * Version of what a slide checkpoint holds (2: per-slide histogram sums instead of per-tile histograms; 3: embeddings
 * packed per group of tiles; 4: single-level slides' tiles selected on the new banded thumbnail, stages/slides/thumbnail-jpeg.ts;
 * 5: levels needing a non-power-of-two stretch selected on the area-averaged thumbnail, stages/slides/thumbnail-stretch.ts,
 * and OME-TIFF SubIFD levels used; 6: embeddings as named outputs, TileEmbeddings.outputs, instead of avg/max).
 */
const CHECKPOINT_FORMAT = 6;

/**
 * The main job, step by step: read and check the inputs, prepare the models, open the checkpoints, run the
 * graph, write the run report, tell the user. Each step is a function below.
 */
export async function runJob(argv: readonly string[], deps: MainDeps): Promise<number> {
  const parsed = parseRunOptions(argv);
  if (parsed === 'help') {
    console.log(HELP);
    return 0;
  }
  // The folders, before any work: --slides a folder; --out and the work folder creatable and writable (exit 2).
  await checkJobPaths({ slides: parsed.slides, out: parsed.out, workDir: parsed.workDir ?? join(parsed.out, '.work'), cache: process.env[CACHE_DIR_ENV] ? cacheDir() : undefined });
  // Before anything is written: a second run into the same --out or work folder stops here (E_LOCKED, exit 2).
  // --queue: Redis reachable (and the password found) before any work, else exit 2 (E_QUEUE_UNREACHABLE).
  const queue = parsed.queue === undefined ? undefined : await openQueue(parsed.queue);
  const lock = await lockRun(parsed);
  try {
    return await runLocked(parsed, deps, queue);
  } finally {
    await lock.release();
  }
}

/** runJob's steps, under the run lock. */
async function runLocked(opts: RunOptions, deps: MainDeps, queue: QueueConnection | undefined): Promise<number> {
  for (const w of optionWarnings(opts)) console.error(`warning: ${w}`);
  const started = new Date();
  const t0 = performance.now();
  // Every 500 ms: each sample reads /proc for the whole tree (~1 ms of the parent's CPU); the bench samples finer.
  const rss = sampleTreeRss(500);
  const cache = cacheDir();

  const inputs = await readInputs(opts, cache);
  // Fewer slides than workers: with sharing the idle workers join the slides (more processes beat more
  // onnxruntime threads per process); without, a worker per slide and the spare cores as onnxruntime threads.
  const workers = opts.shareSlides ? opts.workers : Math.min(opts.workers, inputs.rows.length || 1);
  // A worker per slide starts now: node's start-up and imports overlap the preparation below. Workers that can
  // only join start when there is something to join, so they do not slow down the first slide's start.
  prestartWorkers(Math.min(workers, inputs.rows.length || 1), deps.workerModule);

  const models = await prepareModels(opts, inputs.workDir, cache, queue !== undefined);
  const fp32Slide = await slideConfig(opts, models, workers, cache);
  // --precision int8: the embedder's int8 copy, calibrated and gated on these slides (E_INT8_GATE: exit 2).
  const precision = await preparePrecision({ ...opts, rows: inputs.rows, slidesDir: inputs.slidesDir, slide: fp32Slide, embedderSha256: models.report.embedder!.sha256, normalizerSha256: models.report.normalizer?.sha256 ?? 'none', cacheDir: cache, log: (line) => console.error(line) });
  // With --queue the int8 copy goes to the work folder too, where every machine loads it from.
  const int8File = precision.record.int8 === undefined || queue === undefined ? precision.embedder : await modelInWorkDir(precision.embedder, 'embedder-int8', precision.record.int8.sha256, inputs.workDir);
  const slide: SlideConfig = { ...fp32Slide, embedder: int8File };
  if (precision.record.int8) models.report.embedder_int8 = { path: int8File, sha256: precision.record.int8.sha256, weights: `int8 of ${models.report.embedder!.weights}` };
  const checkpointDir = await openCheckpoints(opts, inputs.workDir, slide, models.report, precision.record);
  // The run writes into a staging folder; the dataset in --out is replaced only as a whole (stages/dataset/).
  const staging = await openDataset(opts.out, (line) => console.error(line));
  const config: PipelineConfig = {
    rows: inputs.rows,
    slidesDir: inputs.slidesDir,
    slide,
    withLabel: inputs.withLabel,
    outDir: staging.dir,
    ...(opts.shards !== undefined && { shards: opts.shards }),
    workers,
    retries: 1,
    failFast: opts.failFast,
    shareSlides: opts.shareSlides,
    checkpointDir,
    bagMemoryBytes: opts.bagMemoryMb * 2 ** 20,
    ...(opts.formats.some((f) => f !== 'tfrecord') && { slideFiles: slideFilesConfig(opts, models.report) }),
  };

  const record = new RunRecord(inputs.rows, opts.tileSize, createProgress(opts.progress, inputs.rows.length));
  onWorkerStderr((pid, line) => record.onWorkerLine(pid, line)); // a worker's messages name the slide it runs
  const queueRun = queue === undefined ? undefined : await startQueueRun({ connection: queue, queue: opts.queue!, sha256: Object.fromEntries(Object.values(models.report).map((m) => [m.path, m.sha256])), workers, retries: config.retries, tileBudget: opts.tileBudget, slidesDir: inputs.slidesDir, workDir: inputs.workDir, workerModule: deps.workerModule, lutCacheDir: slide.lutCacheDir, log: (line) => console.error(line), ...(opts.progress !== 'none' && { onCounts: (c: QueueCounts) => record.progress.queueCounts(c) }) });
  let outcome: RunOutcome | undefined;
  try {
    outcome = await runGraph(deps, config, opts, inputs.workDir, record, queueRun?.runner);
  } finally {
    await queueRun?.stop(outcome === undefined || outcome.stoppedBy !== undefined || outcome.fatal !== undefined);
  }
  const report = runReport({ opts, inputs, slide, precision: precision.record, workers, models: models.report, record, outcome, started, elapsedMs: performance.now() - t0, peakRssBytes: rss.stop() });
  const finished = outcome.fatal === undefined && outcome.stoppedBy === undefined;
  const paths = await publish({ staging, workDir: inputs.workDir, report, pictures: record.pictures, written: record.written, finished, csvFile: inputs.csvFile });
  await tellUser({ opts, inputs, checkpointDir, record, outcome, report, paths });
  return report.exit_code;
}

/** The job's inputs, read and checked before any slide is opened (E_CSV: exit code 2). */
interface JobInputs {
  readonly csvFile: string;
  readonly slidesDir: string;
  readonly workDir: string;
  readonly rows: readonly CsvRow[];
  readonly withLabel: boolean;
  /** Set when the run is the built-in demo (no --csv). */
  readonly demo: boolean;
}

/** The user's CSV (read once: a FIFO or `-` for standard input works) and slides, or the built-in demo set (generated once into a cache folder). */
async function readInputs(opts: RunOptions, cacheDir: string): Promise<JobInputs> {
  const demo = opts.csv === undefined ? await makeDemo(join(cacheDir, 'demo')) : undefined;
  const csvFile = opts.csv ?? demo!.csv;
  const csv = await readCsv(csvFile);
  if (csv.rows.length === 0) throw new CsvError(csv.file, 1, 'the CSV has a header but no rows: nothing to do');
  await checkPatients(csv.rows);
  return {
    csvFile,
    slidesDir: opts.slides ?? demo!.slidesDir,
    workDir: opts.workDir ?? join(opts.out, '.work'),
    rows: csv.rows,
    withLabel: csv.withLabel,
    demo: demo !== undefined,
  };
}

interface JobModels {
  /** ONNX file, or 'none'. */
  readonly normalizer: string;
  readonly embedder: string;
  readonly report: RunReport['models'];
}

/**
 * Demo ONNX files built once; user weights imported (and checked) into the work folder; each file's sha256. `shared`
 * (--queue): every model, the demo ones too, is copied into the work folder, where every machine loads it from.
 */
async function prepareModels(opts: RunOptions, workDir: string, cacheDir: string, shared: boolean): Promise<JobModels> {
  const demoModels = await ensureModels(join(cacheDir, 'models'));
  const files = {
    normalizer: opts.normalizer === 'none' ? 'none' : await prepareModel(opts.normalizer, 'stainnet', demoModels.stainnet, join(workDir, 'models')),
    embedder: await prepareModel(opts.embedder, 'efficientnet', demoModels.efficientnet, join(workDir, 'models'), opts.embedderArch),
  };
  const report: RunReport['models'] = {};
  for (const name of ['normalizer', 'embedder'] as const) {
    const file = files[name];
    if (file === 'none') continue;
    const sha256 = await sha256File(file);
    const weights = file.startsWith(cacheDir) ? 'demo-untrained' : relative(process.cwd(), file);
    if (shared) files[name] = await modelInWorkDir(file, name, sha256, workDir);
    report[name] = { path: files[name], sha256, weights };
  }
  return { ...files, report };
}

/** What every worker process gets: tile parameters, batching, models, threads. */
async function slideConfig(opts: RunOptions, models: JobModels, workers: number, cacheDir: string): Promise<SlideConfig> {
  const lutCacheDir = join(cacheDir, 'lut');
  return {
    tile: {
      tileSize: opts.tileSize,
      downsample: opts.downsample,
      backgroundThreshold: opts.backgroundThreshold,
      maxBackground: opts.maxBackground,
      ...(opts.maxTiles !== undefined && { maxTiles: opts.maxTiles }),
    },
    batchSize: opts.batchSize,
    groupSize: opts.groupSize,
    batchMaxWaitMs: BATCH_WAIT_MS,
    normalizer: models.normalizer,
    embedder: models.embedder,
    lutCacheDir,
    ...(models.normalizer !== 'none' && { normalizerMode: await normalizerMode(models.normalizer, lutCacheDir, availableParallelism()) }),
    threads: Math.max(1, Math.floor(availableParallelism() / Math.max(1, workers))),
    ...(opts.allowNonRgb && { allowNonRgb: true }),
    jpegCheck: opts.jpegCheck,
  };
}

/** What the per-slide writers (--formats h5, geojson) record of the run: the embedder (its weights and sha256), the precision. */
function slideFilesConfig(opts: RunOptions, models: RunReport['models']): SlideFilesConfig {
  const embedder = models.embedder;
  const name = embedder === undefined ? 'unknown' : `${basename(embedder.path)}${embedder.weights === 'demo-untrained' ? ' (demo-untrained)' : ''}`;
  return { formats: opts.formats, encoder: { name, sha256: embedder?.sha256 ?? '' }, precision: opts.precision };
}

/** The checkpoint folder: valid only for the same tile parameters and the same model bytes (--no-resume empties it). */
async function openCheckpoints(opts: RunOptions, workDir: string, slide: SlideConfig, models: RunReport['models'], precision: PrecisionRecord): Promise<string> {
  // int8: the int8 model's own sha256 too, so an fp32 and an int8 run (or two int8 calibrations) never share slides.
  const embedder = precision.int8 === undefined ? models.embedder?.sha256 : { precision: 'int8', fp32: models.embedder?.sha256, int8: precision.int8.sha256 };
  const fingerprint = createHash('sha256')
    .update(JSON.stringify({ format: CHECKPOINT_FORMAT, tile: slide.tile, normalizer: models.normalizer?.sha256 ?? 'none', embedder, ...(slide.allowNonRgb === true && { allowNonRgb: true }) }))
    .digest('hex')
    .slice(0, 16);
  const checkpointDir = join(workDir, 'checkpoints', fingerprint);
  if (!opts.resume) await rm(checkpointDir, { recursive: true, force: true });
  await mkdir(checkpointDir, { recursive: true });
  return checkpointDir;
}

/** How the graph's run ended. */
interface RunOutcome {
  readonly result: RunResult | undefined;
  /** The error that stopped the run (a signal, --fail-fast, a fatal stage error). */
  readonly fatal: unknown;
  readonly stoppedBy: NodeJS.Signals | undefined;
  readonly maxInflight: number;
}

/** Runs the pipeline's graph; SIGINT / SIGTERM abort it (finished slides stay checkpointed). */
async function runGraph(deps: MainDeps, config: PipelineConfig, opts: RunOptions, workDir: string, record: RunRecord, fanOutRunner?: FanOutRunner): Promise<RunOutcome> {
  const controller = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    stoppedBy = sig;
    controller.abort(new Error(`interrupted by ${sig}`));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const g = new Graph({ name: 'wsi-dataset', highWaterMark: 2, tileBudget: opts.tileBudget, signal: controller.signal, tmpDir: await ensureDir(join(workDir, 'tmp')), ...(fanOutRunner && { fanOutRunner }) });
  g.on('item', (e) => record.onItem(e));
  g.on('worker', (e) => record.onWorker(e));
  let maxInflight = 0;
  g.on('metrics', (m) => {
    maxInflight = Math.max(maxInflight, m.tiles.maxInUse);
    record.timeline.onTilesInUse(m.tiles.inUse);
  });
  let result: RunResult | undefined;
  let fatal: unknown;
  try {
    result = await deps.pipeline(g, config, record.hooks).run();
  } catch (err) {
    fatal = err;
  } finally {
    record.progress.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return { result, fatal, stoppedBy, maxInflight };
}

/** The exit code: 130 / 143 after a signal, 1 after a fatal error, a failed slide or no patient written, else 0. */
function exitCodeOf(outcome: RunOutcome, record: RunRecord): number {
  if (outcome.stoppedBy !== undefined) return outcome.stoppedBy === 'SIGTERM' ? 143 : 130;
  return outcome.fatal !== undefined || record.failed().length > 0 || (record.written?.records ?? 0) === 0 ? 1 : 0;
}

interface ReportParts {
  readonly opts: RunOptions;
  readonly inputs: JobInputs;
  readonly slide: SlideConfig;
  readonly precision: PrecisionRecord;
  readonly workers: number;
  readonly models: RunReport['models'];
  readonly record: RunRecord;
  readonly outcome: RunOutcome;
  readonly started: Date;
  readonly elapsedMs: number;
  readonly peakRssBytes: number;
}

/** report.json's content. */
function runReport(p: ReportParts): RunReport {
  const { opts, inputs, record, outcome } = p;
  return {
    started_at: p.started.toISOString(),
    elapsed_s: p.elapsedMs / 1000,
    exit_code: exitCodeOf(outcome, record),
    params: { csv: inputs.csvFile, slides: inputs.slidesDir, out: opts.out, work_dir: inputs.workDir, ...p.slide, precision: p.precision, workers: p.workers, tile_budget: opts.tileBudget, bag_memory_mb: opts.bagMemoryMb, fail_fast: opts.failFast, resume: opts.resume, share_slides: opts.shareSlides, formats: opts.formats },
    models: p.models,
    slides: [...record.slides.values()],
    patients: { written: record.written?.records ?? 0, dropped: record.dropped },
    shards: (record.written?.shards ?? []).map((s) => ({ file: s.file, records: s.records, bytes: s.bytes })),
    stages: (outcome.result?.metrics ?? []).map((m) => ({
      name: m.name,
      elements_in: m.elementsIn,
      elements_out: m.elementsOut,
      busy_ms: m.busyMs,
      blocked_ms: m.blockedMs,
      max_queue_depth: m.maxQueueDepth,
      throughput_per_s: m.busyMs > 0 ? (m.elementsOut * 1000) / m.busyMs : 0,
    })),
    peak_rss_mb: p.peakRssBytes / 2 ** 20,
    max_tiles_in_flight: Math.max(outcome.maxInflight, outcome.result?.tiles.max ?? 0),
    tile_budget: opts.tileBudget,
    tiles_written: record.tilesWritten(),
    failures: record.failureGroups(),
    warnings: optionWarnings(opts),
    timeline: record.timeline.report(),
  };
}

interface Ending {
  readonly opts: RunOptions;
  readonly inputs: JobInputs;
  readonly checkpointDir: string;
  readonly record: RunRecord;
  readonly outcome: RunOutcome;
  readonly report: RunReport;
  readonly paths: Publication;
}

/** Failed slides on stderr; then either what was written, or why the run stopped and how to resume it. */
async function tellUser(e: Ending): Promise<void> {
  const { record, outcome, report } = e;
  // When the run stopped early (Ctrl-C, --fail-fast, a fatal error) the slides it never finished are not
  // failures of their own: count them instead of listing each one.
  const stoppedEarly = outcome.fatal !== undefined || outcome.stoppedBy !== undefined;
  const failed = record.failed();
  // Summarised: counts by code, the first few in full; report.json lists every slide.
  const groups = (report.failures ?? []).filter((g) => !(stoppedEarly && g.code === E_NOT_PROCESSED));
  // The report's real place: --out when the dataset was replaced, else the work folder (stages/dataset/publish.ts).
  for (const line of failureSummary(groups, e.paths.json === '' ? join(e.opts.out, 'report.json') : e.paths.json)) console.error(line);
  for (const line of attentionSummary(record.slides.values())) console.error(line);
  if (stoppedEarly) {
    const checkpointed = await countCheckpointed(e.inputs, e.checkpointDir);
    console.error(`${checkpointed} of ${record.slides.size} slide(s) finished and checkpointed.`);
    // --fail-fast: the fatal error is the failed slide's, already listed above.
    const message = (outcome.fatal as Error | undefined)?.message;
    const key = (outcome.fatal as { key?: unknown } | undefined)?.key;
    const listed = typeof key === 'string' && failed.some((s) => s.image_id === key && s.code !== E_NOT_PROCESSED);
    if (message !== undefined && !listed) console.error(`error: ${message}`);
    if (outcome.stoppedBy !== undefined) console.error(`Stopped. ${checkpointed} finished slide(s) are checkpointed in ${e.checkpointDir}; run the same command again to resume.`);
    tellKept(e);
    return;
  }
  if (tellKept(e)) return;
  const { dropped, written } = record;
  console.log(`\nWrote ${report.patients.written} patients (${report.tiles_written} tiles) to ${written?.shards.length ?? 0} shard(s) in ${e.opts.out}`);
  if (dropped.length > 0) {
    const named = dropped.slice(0, 20).map((d) => d.patient_id).join(', ');
    console.log(`Dropped ${dropped.length} patient(s) without tiles: ${named}${dropped.length > 20 ? `, ... and ${dropped.length - 20} more (report.json)` : ''}`);
  }
  console.log(`Report: ${e.paths.html} (and report.json); ${report.elapsed_s.toFixed(1)} s, peak RSS ${report.peak_rss_mb.toFixed(0)} MB, max ${report.max_tiles_in_flight} tiles in flight`);
  if (e.inputs.demo) {
    console.log('\nThis was the demo (synthetic slides, untrained demo models). On your data:');
    console.log('  node graph.js --csv train.csv --slides /path/to/slides --out out/train --normalizer StainNet.pth --embedder efficientnet_b0.pth');
    console.log('  node graph.js --help    for every option; node graph.js inspect out/train    to check the output');
  }
}

/** Output errors, and where the report went when the dataset in --out was kept; true when it was kept. */
function tellKept(e: Ending): boolean {
  for (const line of e.paths.errors) console.error(`error: ${line}`);
  if (e.paths.keptBecause === undefined) return false;
  const where = e.paths.html === '' ? 'no report could be written' : `this run's report: ${e.paths.html} (and report.json)`;
  console.error(`The dataset in ${e.opts.out} was left as it was (${e.paths.keptBecause}); ${where}`);
  return true;
}

/**
 * What a rerun will reuse: counted from the checkpoint folder, since a slide can be committed in the instant
 * before the stop and before its 'done' event.
 */
async function countCheckpointed(inputs: JobInputs, checkpointDir: string): Promise<number> {
  let checkpointed = 0;
  for (const row of inputs.rows) {
    if ((await findCommitted(checkpointDir, slideCheckpointKey(await slideTask(inputs.slidesDir, row)))) !== undefined) checkpointed++;
  }
  return checkpointed;
}

async function ensureDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  return dir;
}
