/**
 * `node graph.js ...`: dispatches the sub-commands and runs the main job around the pipeline declared in
 * graph.ts: options, demo data, models, checkpoints (resume), progress, run report and exit codes
 * (0: every slide succeeded; 1: finished, some slides failed; 2: usage or CSV error, before any work;
 * 130 / 143: stopped by SIGINT / SIGTERM, the shell's 128 + signal number).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { Graph, prestartWorkers, stopPrestarted, type RunResult } from '../../engine/index.js';
import type { PipelineConfig, PipelineHooks, SlideConfig } from '../../graph.js';
import type { SlideResult, SlideSummary } from '../types.js';
import { HELP, parseRunOptions, UsageError, type RunOptions } from '../lib/options.js';
import { createProgress } from '../lib/progress.js';
import { sampleTreeRss } from '../lib/proc-tree.js';
import { slidePicture, writeReport, type RunReport, type SlidePictures, type SlideReport } from '../lib/report.js';
import { CsvError, readCsv } from '../lib/csv.js';
import { makeDemo } from './make-demo.js';
import { ensureModels, modelsBuild } from './models-build.js';
import { prepareModel } from '../lib/model-files.js';
import { normalizerMode } from '../lib/lut.js';
import { split } from './split.js';
import { inspect } from './inspect.js';
import type { WriteSummary } from '../write-tfrecords.js';
import type { CsvRow } from '../types.js';
import { patientData } from '../combine-patient-data.js';
import { findCommitted } from '../../engine/staging.js';
import { slideTask, slideCheckpointKey } from '../slide-tasks.js';

export interface MainDeps {
  readonly pipeline: (g: Graph, c: PipelineConfig, hooks: PipelineHooks) => Graph;
  readonly workerModule: string;
}

/** Errors that mean "bad input, nothing was done": exit code 2. */
function isUsageError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === 'E_USAGE' || code === 'E_CSV' || code === 'E_WEIGHTS' || code === 'E_MODEL';
}

export async function main(argv: readonly string[], deps: MainDeps): Promise<number> {
  const [command, ...rest] = argv;
  try {
    // The sub-commands; prestart.ts's SUBCOMMANDS lists the same names (graph.js forks no worker for them).
    if (command === 'split') {
      await split(rest, { log: (l) => console.log(l) });
      return 0;
    }
    if (command === 'inspect') return await inspect(rest);
    if (command === 'models') {
      if (rest[0] !== 'build') throw new UsageError(`unknown models command "${rest[0] ?? ''}" (expected: models build)`);
      return await modelsBuild(rest.slice(1));
    }
    return await runJob(argv, deps);
  } catch (err) {
    if (isUsageError(err)) {
      console.error(`error: ${(err as Error).message}`);
      if ((err as { code?: string }).code === 'E_USAGE') console.error('Run `node graph.js --help` for the options.');
      return 2;
    }
    throw err;
  } finally {
    stopPrestarted(); // any the run did not take (it failed before its workers started, or needed fewer)
  }
}

/** Version of what a slide checkpoint holds (2: per-slide histogram sums instead of per-tile histograms; 3: embeddings packed per group of tiles). */
const CHECKPOINT_FORMAT = 3;

/** The error of a slide the run never finished (interrupted, or stopped by another failure). */
const NOT_PROCESSED = 'not processed';

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function runJob(argv: readonly string[], deps: MainDeps): Promise<number> {
  const parsed = parseRunOptions(argv);
  if (parsed === 'help') {
    console.log(HELP);
    return 0;
  }
  const opts: RunOptions = parsed;
  const started = new Date();
  const t0 = performance.now();
  // Every 500 ms: each sample reads /proc for the whole tree (~1 ms of the parent's CPU); the bench samples finer.
  const rss = sampleTreeRss(500);

  // Inputs: the user's, or the built-in demo set (generated once into a cache folder).
  const cacheDir = resolve('.cache');
  const demo = opts.csv === undefined ? await makeDemo(join(cacheDir, 'demo')) : undefined;
  const csvFile = opts.csv ?? demo!.csv;
  const slidesDir = opts.slides ?? demo!.slidesDir;
  const workDir = opts.workDir ?? join(opts.out, '.work');
  // The CSV is read and validated whole before any slide is opened (E_CSV: exit code 2).
  const csv = await readCsv(csvFile);
  if (csv.rows.length === 0) throw new CsvError(csvFile, 1, 'the CSV has a header but no rows: nothing to do');
  const withLabel = csv.header.includes('label');
  await checkPatients(csv.rows);
  // Fewer slides than workers: with sharing the idle workers join the slides (more processes beat more
  // onnxruntime threads per process); without, a worker per slide and the spare cores as onnxruntime threads.
  const workers = opts.shareSlides ? opts.workers : Math.min(opts.workers, csv.rows.length || 1);
  // A worker per slide starts now: node's start-up and imports overlap the preparation below. Workers that can
  // only join start when there is something to join, so they do not slow down the first slide's start.
  prestartWorkers(Math.min(workers, csv.rows.length || 1), deps.workerModule);

  // Models: demo ONNX files built once; user weights imported (and checked) into the work folder.
  const demoModels = await ensureModels(join(cacheDir, 'models'));
  const normalizer = opts.normalizer === 'none' ? 'none' : await prepareModel(opts.normalizer, 'stainnet', demoModels.stainnet, join(workDir, 'models'));
  const embedder = await prepareModel(opts.embedder, 'efficientnet', demoModels.efficientnet, join(workDir, 'models'));
  const models: RunReport['models'] = {};
  for (const [name, file] of [['normalizer', normalizer], ['embedder', embedder]] as const) {
    if (file === 'none') continue;
    const sha256 = await sha256File(file);
    models[name] = { path: file, sha256, weights: file.startsWith(cacheDir) ? 'demo-untrained' : relative(process.cwd(), file) };
  }

  const slide: SlideConfig = {
    tile: {
      tileSize: opts.tileSize,
      downsample: opts.downsample,
      backgroundThreshold: opts.backgroundThreshold,
      maxBackground: opts.maxBackground,
      ...(opts.maxTiles !== undefined && { maxTiles: opts.maxTiles }),
    },
    batchSize: opts.batchSize,
    groupSize: opts.groupSize,
    batchMaxWaitMs: 50,
    normalizer,
    embedder,
    lutCacheDir: join(cacheDir, 'lut'),
    ...(normalizer !== 'none' && { normalizerMode: await normalizerMode(normalizer, join(cacheDir, 'lut'), availableParallelism()) }),
    threads: Math.max(1, Math.floor(availableParallelism() / workers)),
  };
  // Checkpoints are valid only for the same tile parameters and the same model bytes.
  const fingerprint = createHash('sha256')
    .update(JSON.stringify({ format: CHECKPOINT_FORMAT, tile: slide.tile, normalizer: models.normalizer?.sha256 ?? 'none', embedder: models.embedder?.sha256 }))
    .digest('hex')
    .slice(0, 16);
  const checkpointDir = join(workDir, 'checkpoints', fingerprint);
  if (!opts.resume) await rm(checkpointDir, { recursive: true, force: true });
  await mkdir(checkpointDir, { recursive: true });

  const config: PipelineConfig = {
    rows: csv.rows,
    slidesDir,
    slide,
    withLabel,
    outDir: opts.out,
    ...(opts.shards !== undefined && { shards: opts.shards }),
    workers,
    retries: 1,
    failFast: opts.failFast,
    shareSlides: opts.shareSlides,
    checkpointDir,
    bagMemoryBytes: opts.bagMemoryMb * 2 ** 20,
  };

  // What the run report collects while the graph runs.
  const patientOf = new Map(csv.rows.map((r) => [r.image_id, r.patient_id]));
  const slides = new Map<string, SlideReport>(
    csv.rows.map((r) => [r.image_id, { image_id: r.image_id, patient_id: r.patient_id, status: 'failed', error: NOT_PROCESSED, width: null, height: null, tiles_total: null, tiles_kept: null, seconds: null }]),
  );
  const pictures: SlidePictures = new Map();
  const dropped: RunReport['patients']['dropped'] = [];
  let written: WriteSummary | undefined;
  const progress = createProgress(opts.progress, csv.rows.length);
  const hooks: PipelineHooks = {
    onSummary(s: SlideSummary) {
      const r = slides.get(s.image_id)!;
      Object.assign(r, { width: s.width, height: s.height, tiles_total: s.tiles_total, tiles_kept: s.tiles_kept, backend: s.backend, levels: s.levels, thumbnail_level: s.thumbnailLevel });
      // Shrunk now, while the other slides run; a failure surfaces when the report is written.
      const picture = slidePicture({ width: s.width, height: s.height, positions: s.positions, thumbnailPng: s.thumbnailPng, maskPng: s.maskPng, tileSize: opts.tileSize });
      picture.catch(() => undefined);
      pictures.set(s.image_id, picture);
    },
    onDropped(patient_id, reason) {
      const failedSlides = csv.rows.filter((r) => r.patient_id === patient_id && slides.get(r.image_id)?.status === 'failed');
      dropped.push({ patient_id, reason: failedSlides.length > 0 ? `${reason}: slide(s) failed: ${failedSlides.map((r) => r.image_id).join(', ')}` : `${reason}: no tissue tiles` });
    },
    onWritten(summary) {
      written = summary;
    },
  };

  const controller = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    stoppedBy = sig;
    controller.abort(new Error(`interrupted by ${sig}`));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const g = new Graph({ name: 'wsi-dataset', highWaterMark: 2, tileBudget: opts.tileBudget, signal: controller.signal, tmpDir: await ensureDir(join(workDir, 'tmp')) });
  g.on('item', (e) => {
    const r = slides.get(e.key);
    if (!r) return;
    if (e.type === 'started') {
      progress.slideStarted(e.key);
      r.workers = 1;
    } else if (e.type === 'joined') r.workers = (r.workers ?? 1) + 1;
    else if (e.type === 'progress') {
      // Results stream in while the slide is processed: the summary first (tiles to come), then the embeddings, a group of tiles at a time.
      const value = e.value as SlideResult;
      if (value.kind === 'summary') progress.slideTotal(e.key, value.tiles_kept);
      else if (value.kind === 'embeddings') progress.slideTiles(e.key, value.x.length);
    }
    else if (e.type === 'done' || e.type === 'replayed') {
      Object.assign(r, { status: 'ok', error: null, seconds: e.type === 'done' ? e.durationMs / 1000 : 0, resumed: e.type === 'replayed' });
      progress.slideDone(e.key, r.tiles_kept ?? 0, r.seconds ?? 0, e.type === 'replayed');
    } else if (e.type === 'failed') {
      Object.assign(r, { status: 'failed', error: e.error.message });
      progress.slideFailed(e.key, e.error.message);
    }
  });
  let maxInflight = 0;
  g.on('metrics', (m) => (maxInflight = Math.max(maxInflight, m.tiles.maxInUse)));

  let result: RunResult | undefined;
  let fatal: unknown;
  try {
    result = await deps.pipeline(g, config, hooks).run();
  } catch (err) {
    fatal = err;
  } finally {
    progress.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const failed = [...slides.values()].filter((s) => s.status === 'failed');
  const interrupted = stoppedBy !== undefined;
  const exitCode = interrupted ? (stoppedBy === 'SIGTERM' ? 143 : 130) : fatal !== undefined ? 1 : failed.length > 0 ? 1 : 0;
  const report: RunReport = {
    started_at: started.toISOString(),
    elapsed_s: (performance.now() - t0) / 1000,
    exit_code: exitCode,
    params: { csv: csvFile, slides: slidesDir, out: opts.out, work_dir: workDir, ...slide, workers, tile_budget: opts.tileBudget, bag_memory_mb: opts.bagMemoryMb, fail_fast: opts.failFast, resume: opts.resume, share_slides: opts.shareSlides },
    models,
    slides: [...slides.values()],
    patients: { written: written?.records ?? 0, dropped },
    shards: (written?.shards ?? []).map((s) => ({ file: s.file, records: s.records, bytes: s.bytes })),
    stages: (result?.metrics ?? []).map((m) => ({
      name: m.name,
      elements_in: m.elementsIn,
      elements_out: m.elementsOut,
      busy_ms: m.busyMs,
      blocked_ms: m.blockedMs,
      max_queue_depth: m.maxQueueDepth,
      throughput_per_s: m.busyMs > 0 ? (m.elementsOut * 1000) / m.busyMs : 0,
    })),
    peak_rss_mb: rss.stop() / 2 ** 20,
    max_tiles_in_flight: Math.max(maxInflight, result?.tiles.max ?? 0),
    tile_budget: opts.tileBudget,
    tiles_written: [...slides.values()].reduce((n, s) => n + (s.status === 'ok' ? s.tiles_kept ?? 0 : 0), 0),
  };
  const paths = await writeReport(opts.out, report, pictures);

  // When the run stopped early (Ctrl-C, --fail-fast, a fatal error) the slides it never finished are not
  // failures of their own: count them instead of listing each one.
  const stoppedEarly = fatal !== undefined || interrupted;
  for (const s of failed) {
    if (stoppedEarly && s.error === NOT_PROCESSED) continue;
    console.error(`slide ${s.image_id} (patient ${patientOf.get(s.image_id)}) failed: ${s.error}`);
  }
  // What a rerun will reuse: counted from the checkpoint folder, since a slide can be committed in the
  // instant before the stop and before its 'done' event.
  let checkpointed = 0;
  if (stoppedEarly) {
    for (const row of csv.rows) {
      if ((await findCommitted(checkpointDir, slideCheckpointKey(await slideTask(slidesDir, row)))) !== undefined) checkpointed++;
    }
    console.error(`${checkpointed} of ${slides.size} slide(s) finished and checkpointed.`);
  }
  if (fatal !== undefined) {
    // --fail-fast: the fatal error is the failed slide's, already listed above.
    const message = (fatal as Error).message;
    if (!failed.some((s) => s.error === message)) console.error(`error: ${message}`);
    if (interrupted) console.error(`Stopped. ${checkpointed} finished slide(s) are checkpointed in ${checkpointDir}; run the same command again to resume.`);
  } else {
    console.log(`\nWrote ${report.patients.written} patients (${report.tiles_written} tiles) to ${written?.shards.length ?? 0} shard(s) in ${opts.out}`);
    if (dropped.length > 0) console.log(`Dropped ${dropped.length} patient(s) without tiles: ${dropped.map((d) => d.patient_id).join(', ')}`);
    console.log(`Report: ${paths.html} (and report.json); ${report.elapsed_s.toFixed(1)} s, peak RSS ${report.peak_rss_mb.toFixed(0)} MB, max ${report.max_tiles_in_flight} tiles in flight`);
    if (demo) {
      console.log('\nThis was the demo (synthetic slides, untrained demo models). On your data:');
      console.log('  node graph.js --csv train.csv --slides /path/to/slides --out out/train --normalizer StainNet.pth --embedder efficientnet_b0.pth');
      console.log('  node graph.js --help    for every option; node graph.js inspect out/train    to check the output');
    }
  }
  return exitCode;
}

/**
 * A patient's rows must agree on center and label (and not repeat an image_num). The graph checks this
 * too (GroupPatientData), but only once workers run; checked here first so a bad CSV is exit code 2
 * before any slide is opened, with the same message naming the patient, the values and the CSV lines.
 */
async function checkPatients(rows: readonly CsvRow[]): Promise<void> {
  const fn = patientData();
  const byPatient = new Map<string, CsvRow[]>();
  for (const r of rows) {
    const list = byPatient.get(r.patient_id);
    if (list) list.push(r);
    else byPatient.set(r.patient_id, [r]);
  }
  for (const [key, list] of byPatient) {
    try {
      let acc = await fn.createAccumulator({ key, spillDir: '', signal: new AbortController().signal });
      for (const r of list) acc = await fn.addInput(acc, r);
      await fn.extractOutput(acc);
    } catch (err) {
      const e = new Error(`E_CSV: ${(err as Error).message}`, { cause: err });
      throw Object.assign(e, { code: 'E_CSV' });
    }
  }
}

async function ensureDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  return dir;
}
