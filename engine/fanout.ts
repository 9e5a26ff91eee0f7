/**
 * Fan-out to worker processes: N slots, each pulls the next item, runs it on its worker process and
 * delivers the results. `staged` delivery (default) stages an attempt's results (memory, then a spill
 * file) and delivers them only once the attempt succeeded, so a crashed attempt's partial results are
 * never counted; with `checkpointDir` committed items are kept and replayed by later runs.
 * `stream` delivery hands results downstream as they arrive (a retried item may deliver twice).
 * With `share`, a worker left without items joins a running item (see ItemShare): the job's tail is finished
 * by every worker instead of one; the item's attempt succeeds when all its participants did.
 */
import { availableParallelism } from 'node:os';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Budget } from './budget.js';
import { Channel } from './channel.js';
import type { RunEnv } from './run-env.js';
import { findCommitted, removePartials, replayCommitted, Staging } from './staging.js';
import { EngineError, type StageContext } from './types.js';
import { WorkerProc, type Outcome, type RunShare } from './worker-proc.js';

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

/**
 * One attempt of a shared item: the parts counter every participant claims from, and the participants that
 * joined it. Results from all participants reach `onResult` one at a time (staging appends one by one).
 */
class SharedAttempt {
  private next = 0;
  private total: number | undefined;
  private stopped = false;
  private participants = 1;
  private chain: Promise<void> = Promise.resolve();
  /** The joiners' runs; the attempt is over when these and the first worker's run are. */
  readonly joined: Array<Promise<Outcome>> = [];

  constructor(
    readonly key: string,
    readonly item: unknown,
    readonly attempt: number,
    private readonly onResult: (v: unknown) => Promise<void>,
    /** Called when the number of parts becomes known (a process not yet started may now decide to join). */
    private readonly onTotal: () => void,
  ) {}

  /** Parts not yet claimed: unknown (Infinity) until a participant has said how many there are. */
  get remaining(): number {
    if (this.stopped) return 0;
    return this.total === undefined ? Infinity : this.total - this.next;
  }

  /** Whether a participant has said how many parts there are. */
  get sized(): boolean {
    return this.total !== undefined;
  }

  /** What a participant's WorkerProc answers its claims with. */
  share(participant: number): RunShare {
    return { participant, claim: (total) => this.claim(total) };
  }

  /** A new participant's number (1, 2...). */
  join(): number {
    return this.participants++;
  }

  /** No more parts for anyone: a participant failed, so the attempt has, and the others should stop soon. */
  stop(): void {
    this.stopped = true;
  }

  add(v: unknown): Promise<void> {
    const p = this.chain.then(() => this.onResult(v));
    this.chain = p.catch(() => undefined);
    return p;
  }

  /**
   * The attempt's outcome once every participant is done: the first worker's `own` unless a joiner's run went
   * worse (aborted, then crash, then error: the worst decides whether the item is retried).
   */
  async outcome(own: Outcome): Promise<Outcome> {
    if (own.kind !== 'ok') this.stop();
    const all = [own, ...(await Promise.all(this.joined))];
    const rank = { aborted: 0, crash: 1, error: 2, ok: 3 } as const;
    const worst = all.reduce((a, b) => (rank[b.kind] < rank[a.kind] ? b : a));
    return worst.kind === 'ok' ? { kind: 'ok', n: all.reduce((n, o) => n + (o.kind === 'ok' ? o.n : 0), 0) } : worst;
  }

  private claim(total: number): number {
    if (this.total === undefined) {
      this.total = total;
      this.onTotal();
    }
    return this.stopped ? total : this.next++;
  }
}

export async function* fanOutStage<I, O>(source: AsyncIterable<I>, ctx: StageContext, env: RunEnv, opts: FanOutOptions<I>): AsyncGenerator<O> {
  const stage = ctx.name;
  const workers = opts.workers ?? availableParallelism();
  const retries = opts.retries ?? 1;
  const errorRetries = opts.errorRetries ?? 0;
  const window = opts.window ?? 32;
  const shareMinParts = Math.max(1, opts.shareMinParts ?? 8);
  /** Shared items' attempts running now, which idle workers may join. */
  const running = new Set<SharedAttempt>();
  /** Slots with an item in hand (its process may still be starting); an idle slot waits while there are any. */
  let busySlots = 0;
  let wake: () => void = () => undefined;
  let changed = new Promise<void>((resolve) => (wake = resolve));
  const notify = (): void => {
    wake();
    changed = new Promise<void>((resolve) => (wake = resolve));
  };
  const delivery = opts.delivery ?? 'staged';
  if (opts.checkpointDir !== undefined && delivery !== 'staged') {
    throw new EngineError('E_GRAPH', stage, undefined, 'checkpointDir needs staged delivery');
  }
  const moduleUrl = opts.module instanceof URL ? opts.module.href : /^[a-z]+:/i.test(opts.module) ? opts.module : pathToFileURL(opts.module).href;
  const tileLimit = opts.workerTileBudget ?? Math.max(1, Math.floor(env.budget.limit / workers));
  const stageDir = opts.checkpointDir ?? join(env.tmpDir, `fanout-${stage.replace(/[^\w.-]/g, '_')}`);
  await mkdir(stageDir, { recursive: true });
  if (opts.checkpointDir !== undefined) await removePartials(stageDir);
  const m = ctx.metrics;
  m.custom.items_done = 0;
  m.custom.items_failed = 0;
  m.custom.items_replayed = 0;
  m.custom.workers = 0;

  const out = new Channel<O>(Math.max(1, opts.highWaterMark ?? 2));
  const procs = new Set<WorkerProc>();
  const input = source[Symbol.asyncIterator]();
  let pulling: Promise<unknown> = Promise.resolve();
  let nextId = 0;
  const onAbort = (): void => {
    notify();
    for (const p of procs) p.kill();
    out.fail(ctx.signal.reason);
  };
  ctx.signal.addEventListener('abort', onAbort, { once: true });

  /** One item at a time from the shared input, whichever slot asks. */
  const take = (): Promise<IteratorResult<I>> => {
    const p = pulling.then(() => input.next());
    pulling = p.catch(() => undefined);
    return p;
  };

  const spawn = async (): Promise<WorkerProc> => {
    const p = new WorkerProc({
      init: { type: 'init', module: moduleUrl, exportName: opts.exportName, config: opts.config, window, tileLimit, stage },
      execArgv: opts.execArgv,
      onMetrics: (stages) => env.subMetrics(stage, stages),
      onTiles: (pid, inUse, max) => {
        if (env.budget instanceof Budget) env.budget.report(`${stage}:${pid}`, inUse, max);
      },
      onExit: (pid, code, signal) => {
        procs.delete(p);
        m.custom.workers = procs.size;
        env.worker({ type: 'exit', stage, pid, code, signal });
      },
    });
    procs.add(p);
    m.custom.workers = procs.size;
    env.worker({ type: 'spawn', stage, pid: p.pid });
    try {
      await p.ready;
    } catch (e) {
      p.kill();
      throw new EngineError('E_STAGE', stage, undefined, `worker could not load ${moduleUrl}#${opts.exportName}: ${(e as Error).message}`, { cause: e });
    }
    return p;
  };

  const deliver = async (results: AsyncIterable<unknown>): Promise<number> => {
    let n = 0;
    for await (const v of results) {
      await out.push(v as O);
      n++;
    }
    return n;
  };

  const slot = async (): Promise<void> => {
    let proc: WorkerProc | undefined;
    // The last finished item's commit (fsync, rename) and delivery downstream, running while the worker already
    // works on the next item: a worker never waits for the disk or for downstream between two items. One at a
    // time per slot, in item order; a failure fails the slot (at the next item boundary or at the end).
    let delivering: Promise<void> = Promise.resolve();
    let deliveryError: unknown;
    const commitAndDeliver = (staging: Staging, key: string, attempt: number, t0: number): void => {
      const previous = delivering;
      delivering = (async () => {
        try {
          await previous;
          await staging.commit();
          const count = await deliver(staging.replay());
          m.custom.items_done++;
          env.item({ type: 'done', stage, key, attempt, durationMs: performance.now() - t0, count });
        } finally {
          await staging.discard();
        }
      })();
      // A failure stops the worker's current item at once (its process is killed) and is the slot's error.
      delivering.catch((e: unknown) => {
        deliveryError ??= e;
        proc?.kill();
      });
    };
    try {
      for (let r = await take(); !r.done; r = await take()) {
        ctx.signal.throwIfAborted();
        if (deliveryError !== undefined) throw deliveryError;
        busySlots++;
        try {
          await runItem(r.value);
        } finally {
          busySlots--;
          notify();
        }
      }
      // The input has run dry: help the running items that have parts left, the one with the most first.
      while (opts.share) {
        // A slot without a live process starts one only for an item known to have enough parts left (a job of
        // small slides never forks it); one with a process joins a running item before it is sized.
        const idle = proc !== undefined && proc.alive;
        let target: SharedAttempt | undefined;
        for (const a of running) if (a.remaining >= shareMinParts && (idle || a.sized) && (target === undefined || a.remaining > target.remaining)) target = a;
        if (target === undefined) {
          if (busySlots === 0) break;
          await changed; // an item's first process may still be starting: look again when something changes
          continue;
        }
        ctx.signal.throwIfAborted();
        if (proc === undefined || !proc.alive) proc = await spawn();
        if (!running.has(target) || target.remaining < shareMinParts) continue; // it moved on while a process started
        const joining = target;
        env.item({ type: 'joined', stage, key: joining.key, attempt: joining.attempt, pid: proc.pid });
        const run = proc.run(nextId++, joining.item, (v) => joining.add(v), joining.share(joining.join()));
        joining.joined.push(run);
        if ((await run).kind !== 'ok') joining.stop();
      }
      await delivering;
    } finally {
      await delivering.catch(() => undefined); // its error, if any, was thrown above or loses to the one in flight
      await proc?.close();
    }

    /** One item: replayed from its checkpoint, or run (and retried) on this slot's process. */
    async function runItem(item: I): Promise<void> {
      const key = opts.key(item);
      const checkpointKey = opts.checkpointKey?.(item) ?? key;
      if (opts.checkpointDir !== undefined) {
        const committed = await findCommitted(opts.checkpointDir, checkpointKey);
        if (committed !== undefined) {
          await delivering; // replays stay in item order after the deliveries before them
          const count = await deliver(replayCommitted(committed));
          m.custom.items_replayed++;
          env.item({ type: 'replayed', stage, key, count });
          return;
        }
      }
      let crashes = 0;
      let errors = 0;
      for (let attempt = 1; ; attempt++) {
        if (proc === undefined || !proc.alive) proc = await spawn();
        env.item({ type: 'started', stage, key, attempt, pid: proc.pid });
        const t0 = performance.now();
        const staging = delivery === 'staged' ? new Staging(stageDir, opts.stageMemory ?? 16, checkpointKey, opts.checkpointDir !== undefined) : undefined;
        let outcome: Outcome;
        let handedOff = false;
        let received = 0;
        const onResult = (v: unknown): Promise<void> => {
          env.item({ type: 'progress', stage, key, attempt, count: ++received, value: v });
          return staging ? staging.add(v) : out.push(v as O);
        };
        const shared = opts.share ? new SharedAttempt(key, item, attempt, onResult, notify) : undefined;
        try {
          if (shared === undefined) outcome = await proc.run(nextId++, item, onResult);
          else {
            running.add(shared);
            notify();
            try {
              outcome = await proc.run(nextId++, item, (v) => shared.add(v), shared.share(0));
            } finally {
              running.delete(shared);
            }
            outcome = await shared.outcome(outcome);
          }
          if (deliveryError !== undefined) throw deliveryError;
          if (outcome.kind === 'ok') {
            if (staging) {
              commitAndDeliver(staging, key, attempt, t0);
              handedOff = true;
            } else {
              m.custom.items_done++;
              env.item({ type: 'done', stage, key, attempt, durationMs: performance.now() - t0, count: outcome.n });
            }
            break;
          }
        } finally {
          if (!handedOff) await staging?.discard();
        }
        if (outcome.kind === 'aborted') throw outcome.error;
        ctx.signal.throwIfAborted();
        const crashed = outcome.kind === 'crash';
        if (crashed) crashes++;
        else errors++;
        if (crashed ? crashes <= retries : errors <= errorRetries) {
          env.item({ type: 'retry', stage, key, attempt, error: outcome.error });
          continue;
        }
        const err = new EngineError(
          crashed ? 'E_WORKER_CRASH' : 'E_WORKER_ITEM',
          stage,
          key,
          `item failed after ${attempt} attempt(s): ${outcome.error.message}`,
          { cause: outcome.error },
        );
        m.custom.items_failed++;
        env.item({ type: 'failed', stage, key, attempt, error: err });
        if (opts.failFast) throw err;
        break;
      }
    }
  };
  const slots = Array.from({ length: Math.max(1, workers) }, () => slot());
  const all = Promise.all(slots).then(
    () => out.close(),
    (e: unknown) => {
      for (const p of procs) p.kill();
      out.fail(e);
    },
  );
  try {
    yield* out;
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    out.cancel();
    for (const p of procs) p.kill();
    await Promise.all([...procs].map((p) => p.closed));
    await all;
    await input.return?.();
    if (opts.checkpointDir === undefined) await rm(stageDir, { recursive: true, force: true });
  }
}
