/**
 * The suite's options (bench/run.ts's command line) and the places it works in. Options: --full, --json FILE,
 * --only a,b (parts: stages, pipeline, memory, overhead; `scaling`, `single-level`, `queue-throughput`, `queue-control` and `jpeg-check` run only when named), --job-args "..." (extra
 * flags for every job run: A/B of defaults), --repeat N (stage-cost and pipeline runs, medians; 3),
 * --memory-repeat N (runs of each memory-series slide, the highest peak kept; 2). Part `embed-batch` (named only):
 * --embed-model FILE (an embedder .onnx; the demo EfficientNet-B0), --precision LABEL (recorded with it; fp32),
 * --embed-threads N (1), --embed-variant NAME (a bench/session-variants.ts name; base).
 */
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseRunOptions, type RunOptions } from '../stages/cli/options.js';

/** The repository (dist/bench/*.js is two folders down). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CACHE = join(ROOT, '.cache');
/** The suite's generated slides (cached). */
export const SLIDES = join(CACHE, 'bench');
export const CORES = os.availableParallelism();

export interface BenchOptions {
  /** --full: the 100k memory slide and the short job too. */
  readonly full: boolean;
  /** --json FILE: where results.json (and results.svg beside it) go. */
  readonly jsonOut: string | undefined;
  /** Extra flags for every job the suite starts. */
  readonly jobArgs: readonly string[];
  /** Runs of the stage costs and of the pipeline; the figures are their medians (the machine is shared and noisy). */
  readonly repeat: number;
  /** Tiles per group in the jobs (their --group-size, default or from --job-args): the serialize stage takes groups this size. */
  readonly jobGroupSize: number;
  /** Runs of each memory-series slide; its figure is the highest peak (2). */
  readonly memoryRepeat: number;
  /** Part `embed-batch`: the embedder measured (undefined: the demo model), its precision label, threads, option set. */
  readonly embedModel: string | undefined;
  readonly precision: string;
  readonly embedThreads: number;
  readonly embedVariant: string;
  /** Whether a part runs: those named by --only, or every part but the named-only ones (NAMED_ONLY). */
  runs(part: string): boolean;
}

/** Parts that run only when --only names them: long, and not among the README's figures. */
const NAMED_ONLY = new Set(['scaling', 'single-level', 'embed-batch', 'embedders', 'slide-files', 'queue-throughput', 'queue-control', 'jpeg-check', 'queue-counts']);

export function benchOptions(argv: readonly string[]): BenchOptions {
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const only = flag('--only')?.split(',');
  const jobArgs = flag('--job-args')?.split(' ').filter(Boolean) ?? [];
  return {
    full: argv.includes('--full'),
    jsonOut: flag('--json'),
    jobArgs,
    repeat: Number(flag('--repeat') ?? 3),
    jobGroupSize: (parseRunOptions(jobArgs.filter((a) => a !== '--help' && a !== '-h')) as RunOptions).groupSize,
    memoryRepeat: Math.max(1, Number(flag('--memory-repeat') ?? 2)),
    embedModel: flag('--embed-model'),
    precision: flag('--precision') ?? 'fp32',
    embedThreads: Math.max(1, Number(flag('--embed-threads') ?? 1)),
    embedVariant: flag('--embed-variant') ?? 'base',
    runs: (part) => (only === undefined ? !NAMED_ONLY.has(part) : only.includes(part)),
  };
}
