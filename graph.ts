/**
 * The pipeline, declared. Read it as the seed's diagram; running it is the engine's job (engine/),
 * and the command line around it lives in stages/cli/.
 *
 *   ParseCSV ─┬─► GroupPatientData (keyed by patient; center and label must agree) ─────────┐
 *             └─► SlideTasks ─► LargestFirst ─► PerSlide (worker processes, a slide each;   │
 *                                                 idle ones join running slides at the end):│
 *                     ProduceTiles ─► Batch ─► NormalizeTiles ─┬─► EmbedTiles               │
 *                                                              └─► ColorHistograms ─► SumHistograms (per slide)
 *                   ├─► Embeddings ─► CombineEmbeddings (a bag per patient) ───────────────► MergeData (join on patient)
 *                   ├─► Histograms ─► CombineHistograms (mean per patient) ────────────────►   └─► DropNoTiles ─► ToExample ─► WriteTFRecords
 *                   └─► Summaries (tile selection, for the run report)
 *
 * With --formats h5 / geojson, the slides' facts join too and each kept patient passes two writers before ToExample:
 *                   ├─► SlideFacts ─► CombineSlideFacts (size, scale, histogram per slide) ─► MergeData
 *     MergeData ─► WriteH5 (<image_id>.h5 per slide) ─► WriteGeoJSON (<image_id>.geojson) ─► DropNoTiles ─► ...
 */
import { Channel, Graph, type KV, type Node, type StageContext } from './engine/index.js';
import type { CsvRow, EmbeddingBag, MeanHistogram, PatientData, SlideHistogram, SlideResult, SlideSummary, SlideTask, TileEmbeddings, TileParams } from './stages/types.js';
import { parseCsv } from './stages/parse-csv.js';
import { produceTiles } from './stages/produce-tiles.js';
import { normalizeTiles } from './stages/normalize-tiles.js';
import { embedTiles } from './stages/embed-tiles.js';
import { colorHistograms } from './stages/color-histograms.js';
import { releaseTiles } from './stages/release-tiles.js';
import { sumHistograms } from './stages/sum-histograms.js';
import { slideTasks, slideCheckpointKey } from './stages/slide-tasks.js';
import { largestFirst } from './stages/largest-first.js';
import { patientData } from './stages/combine-patient-data.js';
import { combineEmbeddings } from './stages/combine-embeddings.js';
import { combineHistograms } from './stages/combine-histograms.js';
import { dropNoTiles, type DropReason } from './stages/drop-no-tiles.js';
import { toExample } from './stages/to-example.js';
import { writeTfrecords, type WriteSummary } from './stages/write-tfrecords.js';
import { configureSharpForWorker } from './stages/slides/backend-sharp.js';
import type { JpegCheckSetting } from './stages/slides/tile-check.js';
import { combineSlideFacts, type SlideFactsInput } from './stages/slide-files/slide-facts.js';
import type { SlideFilesConfig } from './stages/slide-files/formats.js';
import type { SlideFilesElement } from './stages/slide-files/slide-tiles.js';
import { writeH5 } from './stages/slide-files/write-h5.js';
import { writeGeoJson } from './stages/slide-files/write-geojson.js';

/** What the per-slide sub-pipeline needs; crosses to the worker processes (plain data). */
export interface SlideConfig {
  readonly tile: TileParams;
  /** Tiles per onnxruntime run of the embedder. */
  readonly batchSize: number;
  /** Tiles per micro-batch through normalization, embedding (in runs of batchSize) and histograms. */
  readonly groupSize: number;
  /** Longest a partial group waits for more tiles before it goes to the stages. */
  readonly batchMaxWaitMs: number;
  /** StainNet ONNX file, or 'none'. */
  readonly normalizer: string;
  /** EfficientNet-B0 ONNX file. */
  readonly embedder: string;
  /** Where StainNet's 2^24-colour lookup table is cached. */
  readonly lutCacheDir: string;
  /** StainNet as its lookup table or through onnxruntime, decided once by the parent (default: each worker checks the model). */
  readonly normalizerMode?: 'lut' | 'onnx';
  /** onnxruntime threads per worker process (workers x threads <= cores). */
  readonly threads: number;
  /** Read slides that are not 8-bit RGB brightfield, mapped to RGB (--allow-non-rgb; default: E_SLIDE_NOT_BRIGHTFIELD). */
  readonly allowNonRgb?: boolean;
  /** The corrupt-JPEG-tile check (--jpeg-check; default 'quick': stages/slides/tile-check.ts). */
  readonly jpegCheck?: JpegCheckSetting;
}

export interface PipelineConfig {
  readonly rows: readonly CsvRow[];
  readonly slidesDir: string;
  readonly slide: SlideConfig;
  readonly withLabel: boolean;
  readonly outDir: string;
  readonly shards?: number;
  readonly workers: number;
  readonly retries: number;
  readonly failFast: boolean;
  /** Once no slide is left to start, idle workers join running slides (fan-out `share`; default true). */
  readonly shareSlides?: boolean;
  /** Committed per-slide results (resume); keyed by a hash of parameters and models. */
  readonly checkpointDir: string;
  /** Embedding rows kept in memory across all patients' bags; past it the largest bag spills to disk. */
  readonly bagMemoryBytes: number;
  /** Per-slide files besides the shards (--formats h5, geojson); absent: TFRecord only. */
  readonly slideFiles?: SlideFilesConfig;
}

/** What the pipeline reports besides the engine's own events. */
export interface PipelineHooks {
  onSummary(summary: SlideSummary): void;
  onDropped(patient_id: string, reason: DropReason): void;
  onWritten(summary: WriteSummary): void;
}

/**
 * Per slide, inside a worker process: tiles at full resolution, stain-normalized in micro-batches, then
 * two branches over the normalized tiles (embeddings and colour histograms), merged back into one stream
 * of results for the parent. Built once per process; the returned function runs once per slide.
 */
export function perSlide(config: SlideConfig): (task: SlideTask, ctx: StageContext) => AsyncIterable<SlideResult> {
  configureSharpForWorker();
  // Built once per worker process: model sessions and the lookup table live as long as the process.
  // Loaded eagerly, in the background, while the first slide opens and its thumbnail is read.
  // In place: ProduceTiles' tiles are this pipeline's own, and nothing needs their raw pixels once normalized.
  const normalize = normalizeTiles({ model: config.normalizer, lutCacheDir: config.lutCacheDir, mode: config.normalizerMode ?? 'auto', threads: config.threads, eager: true, inPlace: true });
  const embed = embedTiles({ model: config.embedder, threads: config.threads, eager: true, modelBatch: config.batchSize });
  const histograms = colorHistograms();
  return (task, ctx) =>
    Graph.stream<SlideResult>({ name: `slide ${task.image_id}`, tileBudget: ctx.tiles, signal: ctx.signal, metricsIntervalMs: 0, ...(ctx.collect && { collect: ctx.collect }) }, (g) => {
      // The tile selection's summary (for the run report) joins the slide's results.
      const summary = new Channel<SlideSummary>(1);
      // A shared slide (see ItemShare): every participant selects the same tiles and reads the runs it claims.
      const read = produceTiles(config.tile, { onSummary: (s) => void summary.push(s), slide: { allowNonRgb: config.allowNonRgb === true, jpegCheck: config.jpegCheck ?? 'quick' }, ...(ctx.share && { share: ctx.share }) });
      const tiles = g.source('ProduceTiles', (c) => closing(read(once(task), c), summary));
      const normalized = tiles.batch('Batch', { size: config.groupSize, maxWaitMs: config.batchMaxWaitMs }).pipe('NormalizeTiles', normalize);
      const embeddings = normalized.pipe('EmbedTiles', embed); // packed per group: one record per group to the parent
      const colours = normalized.pipe('ColorHistograms', histograms).flatten('Histograms').pipe('SumHistograms', sumHistograms({ part: ctx.share?.participant ?? 0 }));
      return g.merge('SlideResults', g.source('Summary', () => summary), embeddings, colours).pipe('ReleaseTiles', releaseTiles());
    });
}

/** The whole job as one graph: returns the graph, ready to run. */
export function pipeline(g: Graph, c: PipelineConfig, hooks: PipelineHooks): Graph {
  // Tabular data: CSV rows keyed by patient, combined per patient (center and label must agree).
  const rows = g.source('ParseCSV', parseCsv(c.rows)); // the rows the job read and checked (the CSV is read once)
  const patients = rows.combinePerKey('GroupPatientData', keyRows, patientData());

  // Slides: largest first (the job ends on small ones), fanned out to worker processes, one slide per worker at a
  // time (see perSlide); once none is left to start, idle workers join the running ones (share).
  const results: Node<SlideResult> = rows
    .pipe('SlideTasks', slideTasks(c.slidesDir))
    .pipe('LargestFirst', largestFirst())
    .fanOut('PerSlide', {
      module: import.meta.url,
      exportName: 'perSlide',
      config: c.slide,
      key: (t: SlideTask) => t.image_id,
      checkpointKey: slideCheckpointKey,
      refuse: (t: SlideTask) => t.unresolved, // a slide with no file fails in the parent (local pool), not in a worker
      workers: c.workers,
      retries: c.retries,
      failFast: c.failFast,
      checkpointDir: c.checkpointDir,
      share: c.shareSlides ?? true,
    });

  // Per patient: the bag of embeddings and the mean colour histogram.
  const bags = results
    .filter('Embeddings', (r): r is TileEmbeddings => r.kind === 'embeddings')
    .combinePerKey('CombineEmbeddings', (e) => e.patient_id, combineEmbeddings({ memoryBudgetBytes: c.bagMemoryBytes }));
  const histograms = results
    .filter('Histograms', (r): r is SlideHistogram => r.kind === 'slide-histogram')
    .combinePerKey('CombineHistograms', (h) => h.patient_id, combineHistograms());
  results
    .filter('Summaries', (r): r is SlideSummary => r.kind === 'summary')
    .sink('CollectSummaries', async (source) => {
      for await (const s of source) hooks.onSummary(s);
    });

  // Join on patient id (with the slides' facts when per-slide files are asked for, written on the way), drop
  // patients without tiles, encode and write.
  const merged = c.slideFiles === undefined ? g.join('MergeData', { patient: patients, embeddings: bags, histograms }) : slideFiles(g, c, c.slideFiles, { patients, bags, histograms, results });
  merged
    .pipe('DropNoTiles', dropNoTiles({ onDropped: hooks.onDropped }))
    .pipe('ToExample', toExample({ withLabel: c.withLabel }))
    .sink('WriteTFRecords', writeTfrecords({ outDir: c.outDir, ...(c.shards !== undefined && { shards: c.shards }), expectedPatients: new Set(c.rows.map(keyRows)).size, onSummary: hooks.onWritten }));
  return g;
}

const keyRows = (row: CsvRow): string => row.patient_id;

/** The join with each patient's SlideFacts, then a writer per per-slide format (each passes the patient on). */
function slideFiles(
  g: Graph,
  c: PipelineConfig,
  files: SlideFilesConfig,
  n: { patients: Node<KV<string, PatientData>>; bags: Node<KV<string, EmbeddingBag>>; histograms: Node<KV<string, MeanHistogram>>; results: Node<SlideResult> },
): Node<SlideFilesElement> {
  const facts = n.results
    .filter('SlideFacts', (r): r is SlideFactsInput => r.kind === 'summary' || r.kind === 'slide-histogram')
    .combinePerKey('CombineSlideFacts', (r) => r.patient_id, combineSlideFacts());
  let joined: Node<SlideFilesElement> = g.join('MergeData', { patient: n.patients, embeddings: n.bags, histograms: n.histograms, slides: facts });
  if (files.formats.includes('h5')) joined = joined.pipe('WriteH5', writeH5({ outDir: c.outDir, tile: c.slide.tile, encoder: files.encoder, precision: files.precision }));
  if (files.formats.includes('geojson')) joined = joined.pipe('WriteGeoJSON', writeGeoJson({ outDir: c.outDir, tileSize: c.slide.tile.tileSize }));
  return joined;
}

async function* once<T>(value: T): AsyncIterable<T> {
  yield value;
}

/** Passes `source` through and closes `channel` when it ends, however it ends. */
async function* closing<T>(source: AsyncIterable<T>, channel: Channel<unknown>): AsyncIterable<T> {
  try {
    yield* source;
  } finally {
    channel.close();
  }
}

/**
 * `node graph.js ...`: the main job, or the split / inspect / models sub-commands. The command line is
 * imported on demand, so that worker processes, which import this file for perSlide, do not load it.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const cli = await import('./stages/cli/main.js');
  return cli.main(argv, { pipeline, workerModule: import.meta.url });
}
