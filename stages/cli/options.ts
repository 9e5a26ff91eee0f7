/**
 * Command-line options of the main job (`node graph.js [flags]`): parsing, defaults and --help.
 * Defaults are the seed's constants. Usage errors carry code E_USAGE (exit code 2).
 */
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { extname, resolve } from 'node:path';
import { EMBEDDER_ARCHS } from '../../models/embedders.js';
import { parseFormats, type OutputFormat } from '../slide-files/formats.js';
import { parsePrecision, PRECISION_FLAGS, PRECISION_HELP, type PrecisionOptions } from './precision-options.js';
import { UsageError } from './usage-error.js';
import type { JpegCheckSetting } from '../slides/tile-check.js';
import { QUEUE_FLAGS, QUEUE_HELP, queueOptions, type QueueOptions } from './queue-options.js';

export interface RunOptions extends PrecisionOptions {
  /** Absent for the demo run (no --csv): the demo set is generated and used. */
  readonly csv?: string;
  readonly slides?: string;
  readonly out: string;
  readonly workDir?: string;
  readonly tileSize: number;
  readonly downsample: number;
  readonly backgroundThreshold: number;
  readonly maxBackground: number;
  readonly maxTiles?: number;
  readonly workers: number;
  readonly batchSize: number;
  /** Tiles per micro-batch through normalization, embedding and histograms (split into model batches of batchSize). */
  readonly groupSize: number;
  /** An ONNX file, a StainNet .pth, or 'none'; absent: the demo StainNet. */
  readonly normalizer?: string;
  /** An ONNX file, or a .pth / .safetensors state dict (models/embedders.ts); absent: the demo EfficientNet-B0. */
  readonly embedder?: string;
  /** The embedder weights' architecture, named (models/embedders.ts EMBEDDER_ARCHS); absent: recognised from the keys. */
  readonly embedderArch?: string;
  readonly shards?: number;
  readonly failFast: boolean;
  readonly resume: boolean;
  /** Idle workers join the slides still running at the end of the job (default true). */
  readonly shareSlides: boolean;
  readonly tileBudget: number;
  /** Megabytes of embedding rows kept in memory across all patients before bags spill to the work folder. */
  readonly bagMemoryMb: number;
  readonly progress: 'auto' | 'bars' | 'lines' | 'none';
  /** --formats: the outputs written (tfrecord always; h5, geojson: one file per slide). */
  readonly formats: readonly OutputFormat[];
  /** Process slides that are not 8-bit RGB brightfield, mapped to RGB as stated in the report (default: refuse them). */
  readonly allowNonRgb: boolean;
  /** --jpeg-check: how each JPEG tile of a TIFF / SVS is checked for corrupt data before it is decoded (default 'quick'). */
  readonly jpegCheck: JpegCheckSetting;
  /** --queue: the slides run through BullMQ on Redis (stages/cli/queue-run.ts); --workers may then be 0. */
  readonly queue?: QueueOptions;
}

export { UsageError } from './usage-error.js';

export const HELP = `Usage:
  node graph.js                                   run on the built-in demo data (out/demo/)
  node graph.js --csv FILE --slides DIR --out DIR [options]
  node graph.js split --csv FILE --out DIR [--fractions 0.8,0.1,0.1] [--seed N]
  node graph.js inspect OUT_DIR
  node graph.js models build --out DIR [--stainnet FILE.pth] [--efficientnet FILE.pth|FILE.safetensors]

Main job options (defaults are the seed's constants):
  --csv FILE                 image_id,center_id,patient_id,image_num[,label] (no label column: inference);
                             UTF-8, read once (a FIFO works); - reads it from standard input
  --slides DIR               folder holding <image_id>.<ext> (svs, tif, tiff, ndpi, mrxs, scn, ...)
  --out DIR                  output folder: TFRecord shards, report.json, report.html
  --tile-size N              tile side at level 0, pixels (448)
  --downsample N             thumbnail downsample for tile selection (16)
  --background-threshold N   thumbnail pixel is background when R, G and B are all > N (190)
  --max-background F         keep a tile when at most F of its thumbnail pixels are background (0.1)
  --max-tiles N              keep at most N tiles per slide, row-major (all)
  --workers N                slide worker processes (cores: ${availableParallelism()})
  --batch-size N             tiles per model batch (1; see bench/RESULTS.md)
  --group-size N             tiles each stage takes at a time, in model batches of --batch-size (8)
  --normalizer X             StainNet: an ONNX file, a StainNet .pth, or none (demo StainNet, untrained)
  --embedder X               an ONNX file, or a .pth / .bin / .safetensors of EfficientNet-B0, ResNet50-trunc or a ViT
                             (timm, transformers) (demo EfficientNet-B0, untrained)
  --embedder-arch NAME       the architecture of --embedder's weights (default: recognised from its keys):
                             \${EMBEDDER_ARCHS.join(', ')}
  --shards N                 number of TFRecord shards (from the data size)
  --formats LIST             outputs, a comma list of tfrecord (required), h5 (<image_id>.h5 per slide:
                             features, coords; CLAM/TRIDENT layout), geojson (<image_id>.geojson per slide:
                             the kept tiles as QuPath annotations) (tfrecord)
  --work-dir DIR             checkpoints and temporary files (<out>/.work)
  --tile-budget N            most tiles resident in memory across all processes (256)
  --bag-memory-mb N          embeddings kept in memory across all patients; the rest spill to the work dir (256)
  --fail-fast                stop at the first failed slide (default: report it and go on)
  --resume / --no-resume     reuse finished slides' checkpoints from an interrupted run (default: resume)
  --no-share                 a slide is read by one worker only (default: once no slide is left to start, idle
                             workers join the slides still running and take runs of their tiles)
  --progress MODE            auto | bars | lines | none (auto: bars on a terminal, lines otherwise)
  --allow-non-rgb            process fluorescence / 16-bit / single-channel slides, mapped to 8-bit RGB as
                             report.json states per slide (default: they fail with E_SLIDE_NOT_BRIGHTFIELD)
  --jpeg-check MODE          quick | full | off: check each JPEG tile of a TIFF / SVS before it is decoded; a corrupt
                             one fails its slide with E_TILE_CORRUPT (default quick: markers and lost data; full:
                             every Huffman code too, more CPU)
${PRECISION_HELP}  -h, --help                 this help

Environment:
  WSI_CACHE_DIR              the cache folder (demo set, models, StainNet lookup table, int8 copies) for every run
                             of this user, shared safely by concurrent runs (default ./.cache)
  REDIS_PASSWORD             the queue's Redis password when neither the URL nor --queue-password-file gives one

${QUEUE_HELP}`;

/** --jpeg-check: quick (default), full or off. */
function jpegCheck(value: string | undefined): JpegCheckSetting {
  if (value === undefined) return 'quick';
  if (value === 'quick' || value === 'full' || value === 'off') return value;
  throw new UsageError(`--jpeg-check must be quick, full or off, got "${value}"`);
}

function positiveInt(name: string, value: string | undefined, fallback: number): number;
function positiveInt(name: string, value: string | undefined, fallback: undefined): number | undefined;
function positiveInt(name: string, value: string | undefined, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer, got "${value}"`);
  return n;
}

function fraction(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new UsageError(`--${name} must be a number in [0, 1], got "${value}"`);
  return n;
}

/** Parses the main job's flags; returns 'help' for -h/--help. */
export function parseRunOptions(argv: readonly string[]): RunOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: false,
      strict: true,
      options: {
        csv: { type: 'string' },
        slides: { type: 'string' },
        out: { type: 'string' },
        'work-dir': { type: 'string' },
        'tile-size': { type: 'string' },
        downsample: { type: 'string' },
        'background-threshold': { type: 'string' },
        'max-background': { type: 'string' },
        'max-tiles': { type: 'string' },
        workers: { type: 'string' },
        'batch-size': { type: 'string' },
        'group-size': { type: 'string' },
        normalizer: { type: 'string' },
        embedder: { type: 'string' },
        'embedder-arch': { type: 'string' },
        shards: { type: 'string' },
        'tile-budget': { type: 'string' },
        'bag-memory-mb': { type: 'string' },
        'fail-fast': { type: 'boolean' },
        resume: { type: 'boolean' },
        'no-resume': { type: 'boolean' },
        'no-share': { type: 'boolean' },
        progress: { type: 'string' },
        formats: { type: 'string' },
        'allow-non-rgb': { type: 'boolean' },
        'jpeg-check': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...PRECISION_FLAGS,
        ...QUEUE_FLAGS,
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if ((v.csv === undefined) !== (v.slides === undefined)) {
    throw new UsageError('--csv and --slides go together (omit both for the demo run)');
  }
  if (v.csv !== undefined && v.out === undefined) throw new UsageError('--out is required with --csv');
  if (v.resume && v['no-resume']) throw new UsageError('--resume and --no-resume contradict each other');
  const threshold = v['background-threshold'] === undefined ? 190 : Number(v['background-threshold']);
  if (!Number.isInteger(threshold) || threshold < 0 || threshold > 255) {
    throw new UsageError(`--background-threshold must be an integer in [0, 255], got "${v['background-threshold']}"`);
  }
  const progress = (v.progress ?? 'auto') as RunOptions['progress'];
  if (!['auto', 'bars', 'lines', 'none'].includes(progress)) {
    throw new UsageError(`--progress must be auto, bars, lines or none, got "${v.progress}"`);
  }
  const formats = parseFormats(v.formats ?? 'tfrecord');
  if (!Array.isArray(formats)) throw new UsageError(formats.error);
  checkEmbedderArch(v.embedder, v['embedder-arch']);
  const tileSize = positiveInt('tile-size', v['tile-size'], 448);
  const downsample = positiveInt('downsample', v.downsample, 16);
  if (downsample > tileSize) throw new UsageError(`--downsample (${downsample}) must not exceed --tile-size (${tileSize})`);
  // 1, not 16: EfficientNet-B0 costs less CPU per tile unbatched on this CPU (activations stay in cache) and the
  // onnxruntime arena stays small: 33 vs 44 CPU ms/tile, 729 vs 1579 MB peak with 2 workers (bench/RESULTS.md).
  const batchSize = positiveInt('batch-size', v['batch-size'], 1);
  // 8 tiles go through each stage one after another (each stage's code and tables stay in the caches), run by
  // EfficientNet one model batch at a time: 5-9% less CPU per tile than one tile at a time (bench/RESULTS.md, 26).
  const groupSize = Math.max(batchSize, positiveInt('group-size', v['group-size'], 8));
  const queue = queueOptions(v);
  // With --queue, 0 workers: this machine only coordinates (other machines run the slides).
  const workers = queue !== undefined && v.workers === '0' ? 0 : positiveInt('workers', v.workers, availableParallelism());
  const tileBudget = positiveInt('tile-budget', v['tile-budget'], 256);
  // Each worker gets floor(budget / workers) tiles and decodes at least one at a time: below one per worker the
  // budget could not hold (the run would keep more tiles in memory than asked).
  if (tileBudget < Math.max(1, workers)) {
    throw new UsageError(`--tile-budget ${tileBudget} is below --workers ${workers}: each worker holds at least 1 tile, so the run needs --tile-budget ${workers} or more (or fewer --workers)`);
  }
  return {
    ...(v.csv !== undefined && { csv: v.csv === '-' ? '-' : resolve(v.csv) }),
    ...(v.slides !== undefined && { slides: resolve(v.slides) }),
    out: resolve(v.out ?? 'out/demo'),
    ...(v['work-dir'] !== undefined && { workDir: resolve(v['work-dir']) }),
    tileSize,
    downsample,
    backgroundThreshold: threshold,
    maxBackground: fraction('max-background', v['max-background'], 0.1),
    ...(v['max-tiles'] !== undefined && { maxTiles: positiveInt('max-tiles', v['max-tiles'], undefined) }),
    workers,
    batchSize,
    groupSize,
    ...(v.normalizer !== undefined && { normalizer: v.normalizer === 'none' ? 'none' : resolve(v.normalizer) }),
    ...(v.embedder !== undefined && { embedder: resolve(v.embedder) }),
    ...(v['embedder-arch'] !== undefined && { embedderArch: v['embedder-arch'] }),
    ...(v.shards !== undefined && { shards: positiveInt('shards', v.shards, undefined) }),
    failFast: v['fail-fast'] ?? false,
    resume: !v['no-resume'],
    shareSlides: !v['no-share'],
    tileBudget,
    bagMemoryMb: positiveInt('bag-memory-mb', v['bag-memory-mb'], 256),
    progress,
    formats,
    allowNonRgb: v['allow-non-rgb'] ?? false,
    jpegCheck: jpegCheck(v['jpeg-check']),
    ...parsePrecision(v),
    ...(queue !== undefined && { queue }),
  };
}

/** `--embedder-arch` names the architecture of a weights file given with --embedder (not of an ONNX file). */
function checkEmbedderArch(embedder: string | undefined, arch: string | undefined): void {
  if (arch === undefined) return;
  if (embedder === undefined) throw new UsageError('--embedder-arch without --embedder (it names the architecture of the weights file)');
  if (!EMBEDDER_ARCHS.includes(arch)) throw new UsageError(`unknown --embedder-arch '${arch}': expected one of ${EMBEDDER_ARCHS.join(', ')}`);
  if (extname(embedder).toLowerCase() === '.onnx') throw new UsageError(`--embedder-arch ${arch} with an ONNX file (${embedder}): it names the architecture of a .pth / .bin / .safetensors weights file`);
}

/**
 * What the options will cost without stopping the run, said before it starts: more workers than cores (they
 * share the cores: more memory, no more speed), and a tile budget too small for full groups of tiles. Each worker
 * gets floor(budget / workers) tiles (engine/fanout.ts) and ProduceTiles holds one per decoded tile until it is
 * embedded; the Batch stage waits for --group-size tiles, so with fewer per worker every group is cut short by
 * the batch's wait (BATCH_WAIT_MS) and the models run on partial groups.
 */
/** How long the Batch stage waits for a full group of tiles (the job's batchMaxWaitMs, stages/cli/job.ts). */
export const BATCH_WAIT_MS = 50;

export function optionWarnings(opts: Pick<RunOptions, 'workers' | 'tileBudget' | 'groupSize'>, cores = availableParallelism()): string[] {
  const warnings: string[] = [];
  if (opts.workers > cores) warnings.push(`--workers ${opts.workers} is more than the ${cores} core(s) of this machine: the workers share the cores (more memory, no faster)`);
  if (opts.workers === 0) return warnings;
  const perWorker = Math.floor(opts.tileBudget / opts.workers);
  if (perWorker < opts.groupSize) {
    warnings.push(
      `--tile-budget ${opts.tileBudget} leaves each of the ${opts.workers} worker(s) ${perWorker} tile(s), fewer than a group (--group-size ${opts.groupSize}): ` +
        `each group is cut short and waits up to ${BATCH_WAIT_MS} ms for tiles the budget holds back (at most ${Math.floor((perWorker * 1000) / BATCH_WAIT_MS)} tiles/s per worker); ` +
        `--tile-budget ${opts.workers * opts.groupSize} or more avoids that`,
    );
  }
  return warnings;
}
