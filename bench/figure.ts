/**
 * What the suite's driver (bench/run.ts) gives a figure module, and what a figure module gives the driver: the
 * parts it belongs to (--only), the inputs it prepares before any figure is measured, and its measurement.
 */
import type { BenchOptions } from './options.js';
import type { BenchRecord } from './record.js';
import type { Models } from './stage-costs.js';

export interface BenchContext {
  readonly opts: BenchOptions;
  /** The demo models (stages/cli/models-build.ts), built once under .cache/models. */
  readonly models: Models;
  /** StainNet's lookup table file. */
  readonly lutFile: string;
  readonly record: BenchRecord;
}

export interface Figure {
  /** For the log and the reader. */
  readonly name: string;
  /** Whether the run's options select it (their --only parts). */
  enabled(opts: BenchOptions): boolean;
  /** Generates or finds its inputs (slides, CSVs): excluded from every figure, done for all of them first. */
  prepare?(ctx: BenchContext): Promise<void>;
  /** Measures and records its figures (ctx.record). */
  measure(ctx: BenchContext): Promise<void>;
}
