/**
 * The engine's contracts: what a stage is, what it is given, how reducers look.
 * Every other engine file implements these; every file in stages/ is written against them.
 */

/** Counters one stage keeps; the engine fills them, stages may add to `custom`. */
export interface StageMetrics {
  readonly name: string;
  /** Elements taken from upstream. */
  elementsIn: number;
  /** Elements handed downstream. */
  elementsOut: number;
  /** Milliseconds spent inside the stage's own code (between pulling an input and yielding an output). */
  busyMs: number;
  /** Milliseconds the stage waited because downstream was full (backpressure). */
  blockedMs: number;
  /** Elements currently queued on the stage's output edge(s), and the maximum seen. */
  queueDepth: number;
  maxQueueDepth: number;
  /** Free-form counters a stage may keep (tiles kept, bytes written...). */
  custom: Record<string, number>;
}

/** What every stage is given. */
export interface StageContext {
  /** One signal per run: aborted on the first error, on SIGINT/SIGTERM, or by the caller. */
  readonly signal: AbortSignal;
  /** The stage's name as declared in the graph; errors and metrics use it. */
  readonly name: string;
  readonly metrics: StageMetrics;
  /** The run-wide budget of tiles resident in memory (counted in tiles, not bytes). */
  readonly tiles: TileBudget;
  /**
   * Inside a worker process: where a sub-graph built per item reports its stages' final metrics (pass it
   * as GraphOptions.collect). The fan-out stage adds them up per stage name in the parent's metrics.
   */
  readonly collect?: (metrics: readonly StageMetrics[]) => void;
  /** Inside a worker process, for an item of a fan-out with `share`: see ItemShare. */
  readonly share?: ItemShare;
}

/**
 * An item several worker processes may run at once. Once a fan-out's input has run dry, an idle worker joins an
 * item still running instead of idling (a big last slide is finished by every worker, not by one). Every
 * participant splits the item into the same `total` parts and processes only the parts it claims; the
 * item's results are the union of the participants' results.
 */
export interface ItemShare {
  /** 0 for the worker the item was given to, 1, 2... for the workers that joined it. */
  readonly participant: number;
  /**
   * The next unclaimed part, out of `total` (every participant passes the same total): from 0 up, each index
   * handed out once. An index >= total means there is nothing left (or the item failed elsewhere): stop.
   */
  claim(total: number): Promise<number>;
}

/** A stage: a typed async-iterable transform. Cleanup belongs in its `finally`. */
export type Stage<I, O> = (source: AsyncIterable<I>, ctx: StageContext) => AsyncIterable<O>;

/** A source: produces elements, honours the signal. */
export type Source<O> = (ctx: StageContext) => AsyncIterable<O>;

/** A sink: consumes everything; resolves when done. */
export type Sink<I> = (source: AsyncIterable<I>, ctx: StageContext) => Promise<void>;

/**
 * Counts tiles resident in memory across the run and enforces a maximum.
 * A producer `acquire`s before it decodes a tile and the last consumer `release`s once the
 * tile's pixels are dropped. `acquire` waits (backpressure) while the budget is exhausted.
 */
export interface TileBudget {
  readonly limit: number;
  readonly inUse: number;
  readonly maxInUse: number;
  acquire(n: number, signal?: AbortSignal): Promise<void>;
  release(n: number): void;
}

/** Where a reducer's accumulator may put what it spills to disk. */
export interface CombineContext {
  /** The element key the accumulator is for. */
  readonly key: string;
  /** A private directory for this accumulator; the engine removes it after extractOutput, also on failure. */
  readonly spillDir: string;
  readonly signal: AbortSignal;
}

/**
 * A keyed reducer in Beam's CombineFn shape. Methods may be async so an accumulator can
 * spill to disk (for example a patient's bag of embeddings past a memory threshold).
 */
export interface CombineFn<I, A, O> {
  createAccumulator(ctx: CombineContext): A | Promise<A>;
  addInput(acc: A, input: I): A | Promise<A>;
  mergeAccumulators(accs: A[], ctx: CombineContext): A | Promise<A>;
  extractOutput(acc: A): O | Promise<O>;
  /** Frees what the accumulator holds (files, handles). Called once per accumulator, also on failure. */
  dispose?(acc: A): void | Promise<void>;
}

/** A keyed pair, as emitted by reducers and consumed by joins. */
export type KV<K extends string, V> = readonly [key: K, value: V];

/** Error codes the engine itself raises; stages add their own codes. */
export type EngineErrorCode =
  | 'E_STAGE' // a stage threw
  | 'E_ABORTED' // the run was aborted
  | 'E_WORKER_CRASH' // a worker process died while processing an item
  | 'E_WORKER_ITEM' // an item failed in a worker after its retries
  | 'E_GRAPH' // the graph is malformed (unconsumed node, cycle, duplicate name)
  | 'E_BUDGET'; // a tile budget was asked for more than its limit, or released more than was held

/** An error that says where it happened: the stage name and the element key, with the original as `cause`. */
export class EngineError extends Error {
  readonly code: string;
  readonly stage: string;
  readonly key: string | undefined;

  constructor(code: string, stage: string, key: string | undefined, message: string, options?: { cause?: unknown }) {
    super(`[${stage}${key === undefined ? '' : ` key=${key}`}] ${message}`, options);
    this.name = 'EngineError';
    this.code = code;
    this.stage = stage;
    this.key = key;
  }
}
