/** A fan-out's options (FanOutOptions, the caller's) and what they resolve to for one run (FanOutSettings). */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RunEnv } from '../run-env.js';
import { EngineError } from '../types.js';

export interface FanOutOptions<I> {
  /** The worker module, as a file URL (e.g. `import.meta.url`) or a path. */
  readonly module: string | URL;
  /** Its export called once per process with `config`; returns `(item, ctx) => AsyncIterable<O>`. */
  readonly exportName: string;
  /** Passed to the export; must be v8-serializable. */
  readonly config?: unknown;
  /** Names the item in events, errors and checkpoint files. */
  readonly key: (item: I) => string;
  /** Worker processes (os.availableParallelism()). */
  readonly workers?: number;
  /** Retries of an item whose worker process died (1); each retry runs on a fresh process. */
  readonly retries?: number;
  /** Retries of an item whose function threw (0: a thrown error is usually deterministic). */
  readonly errorRetries?: number;
  /** Stop the run on the first failed item (false: report it and go on). */
  readonly failFast?: boolean;
  /** Results a worker may send ahead of what the parent took out of its buffer (32). */
  readonly window?: number;
  readonly delivery?: 'staged' | 'stream';
  /** Staged results kept in memory per attempt before spilling to a file (16). */
  readonly stageMemory?: number;
  /** Keep committed items here and replay them on later runs (staged delivery only). */
  readonly checkpointDir?: string;
  /**
   * What identifies an item's checkpoint (default: `key`). Put everything the results depend on here (for a
   * slide: its patient and image number, the file's size and mtime) so a changed input is recomputed.
   */
  readonly checkpointKey?: (item: I) => string;
  /**
   * The error an item's worker would fail it with, when the parent already knows it (a slide with no file), else
   * undefined. On the local pool such an item fails at once, without a worker or an attempt: one 'failed' event,
   * attempt 0 (another runner, the queue, runs every item).
   */
  readonly refuse?: (item: I) => Error | undefined;
  /** Each worker's tile budget (floor(run limit / workers)). */
  readonly workerTileBudget?: number;
  /** Capacity of the output edge(s), in elements. */
  readonly highWaterMark?: number;
  /** Node flags for the workers (process.execArgv). */
  readonly execArgv?: string[];
  /**
   * Once the input has run dry, idle workers join running items (false). The item function must split its work
   * with ctx.share (ItemShare). A worker joins an item only while at least `shareMinParts` of its parts are
   * unclaimed (8): joining costs the item's set-up again (for a slide, its open and tile selection).
   */
  readonly share?: boolean;
  readonly shareMinParts?: number;
}

/** The options with their defaults filled in, for one run of the stage `stage`. */
export interface FanOutSettings<I> {
  readonly opts: FanOutOptions<I>;
  readonly stage: string;
  readonly workers: number;
  readonly retries: number;
  readonly errorRetries: number;
  readonly window: number;
  readonly delivery: 'staged' | 'stream';
  /** The worker module as a URL. */
  readonly moduleUrl: string;
  /** Each worker's tile budget. */
  readonly tileLimit: number;
  /** Where staged attempts spill and checkpoints go: checkpointDir, or a folder of the run's tmpDir. */
  readonly stageDir: string;
  readonly shareMinParts: number;
}

/** Fills in the defaults; a checkpointDir without staged delivery is E_GRAPH. */
export function fanOutSettings<I>(stage: string, opts: FanOutOptions<I>, env: RunEnv): FanOutSettings<I> {
  const workers = opts.workers ?? availableParallelism();
  const delivery = opts.delivery ?? 'staged';
  if (opts.checkpointDir !== undefined && delivery !== 'staged') {
    throw new EngineError('E_GRAPH', stage, undefined, 'checkpointDir needs staged delivery');
  }
  return {
    opts,
    stage,
    workers,
    retries: opts.retries ?? 1,
    errorRetries: opts.errorRetries ?? 0,
    window: opts.window ?? 32,
    delivery,
    moduleUrl: opts.module instanceof URL ? opts.module.href : /^[a-z]+:/i.test(opts.module) ? opts.module : pathToFileURL(opts.module).href,
    tileLimit: opts.workerTileBudget ?? Math.max(1, Math.floor(env.budget.limit / workers)),
    stageDir: opts.checkpointDir ?? join(env.tmpDir, `fanout-${stage.replace(/[^\w.-]/g, '_')}`),
    shareMinParts: Math.max(1, opts.shareMinParts ?? 8),
  };
}
