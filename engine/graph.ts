/**
 * Declaring and running a DAG of stages. Nodes are declared with `source`, `pipe`, `merge`, `join`,
 * `sink`...; `run()` connects every edge with a bounded Channel (one per consumer, so consuming a node
 * twice is a bounded tee: a slow branch throttles the shared upstream), runs every node concurrently,
 * and stops everything on the first error.
 */
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { Budget } from './budget.js';
import { Channel, ChannelCancelled } from './channel.js';
import type { ItemEvent, ItemFailure, WorkerEvent } from './events.js';
import { addMetrics, copyMetrics, newMetrics, type MetricsSnapshot } from './metrics.js';
import { EngineError, type KV, type Sink, type Source, type Stage, type StageContext, type StageMetrics, type TileBudget } from './types.js';
import type { CombineFn } from './types.js';
import { batchStage, type BatchOptions } from './batch.js';
import type { RunEnv } from './run-env.js';
import { combineStage } from './combine.js';
import { joinStage, type JoinOutput } from './join.js';
import { fanOutStage, type FanOutOptions } from './fanout.js';
import type { FanOutRunner } from './fanout/runner.js';

export interface GraphOptions {
  /** Used in error messages and metrics snapshots. */
  readonly name: string;
  /** Default capacity of every edge, in elements (2). */
  readonly highWaterMark?: number;
  /** Run-wide tile budget limit (256), or an existing budget to share (a worker's sub-graph uses ctx.tiles). */
  readonly tileBudget?: number | TileBudget;
  /** Aborting it stops the run with E_ABORTED. */
  readonly signal?: AbortSignal;
  /** Parent of the run's temporary directory (os.tmpdir()). */
  readonly tmpDir?: string;
  /** Abort the run on SIGINT/SIGTERM (false). */
  readonly handleSignals?: boolean;
  /** Period of the 'metrics' event (250 ms); 0 turns the periodic event off (the final one is still sent). */
  readonly metricsIntervalMs?: number;
  /** Receives the stages' final metrics when the run ends, however it ends (a worker's sub-graph passes ctx.collect). */
  readonly collect?: (metrics: readonly StageMetrics[]) => void;
  /** Runs the fan-out stages' items another way than the local worker pool (e.g. through a queue, engine/queue/). */
  readonly fanOutRunner?: FanOutRunner;
}

export interface PipeOptions<I> {
  /** Capacity of this node's output edge(s), in elements. */
  readonly highWaterMark?: number;
  /** Names the element in error messages. */
  readonly key?: (value: I) => string;
}

export interface RunResult {
  readonly metrics: StageMetrics[];
  readonly tiles: { readonly max: number; readonly limit: number };
  readonly items: { readonly done: number; readonly failed: ItemFailure[]; readonly replayed: number };
  readonly elapsedMs: number;
}

type Body = (inputs: AsyncIterable<unknown>[], ctx: StageContext, env: RunEnv) => AsyncIterable<unknown> | Promise<void>;

interface Spec {
  readonly name: string;
  readonly inputs: Node<unknown>[];
  readonly body: Body;
  readonly sink: boolean;
  readonly hwm: number;
  readonly key: ((v: unknown) => string) | undefined;
  consumers: number;
}

/** A declared node: its output can be consumed by one or several stages (a branch). */
export class Node<T> {
  /** @internal */
  constructor(
    readonly graph: Graph,
    /** @internal */ readonly spec: Spec,
  ) {}

  get name(): string {
    return this.spec.name;
  }

  /** A stage consuming this node. */
  pipe<O>(name: string, stage: Stage<T, O>, opts: PipeOptions<T> = {}): Node<O> {
    return this.graph.add<O>(name, [this], (ins, ctx) => stage(ins[0] as AsyncIterable<T>, ctx), opts as PipeOptions<unknown>);
  }

  /** Keeps the elements for which `keep` is true. */
  filter<S extends T>(name: string, keep: (value: T) => value is S, opts?: PipeOptions<T>): Node<S>;
  filter(name: string, keep: (value: T) => boolean | Promise<boolean>, opts?: PipeOptions<T>): Node<T>;
  filter(name: string, keep: (value: T) => boolean | Promise<boolean>, opts: PipeOptions<T> = {}): Node<T> {
    return this.pipe(
      name,
      async function* (src) {
        for await (const v of src) if (await keep(v)) yield v;
      },
      opts,
    );
  }

  /** One output per input. */
  map<O>(name: string, fn: (value: T) => O | Promise<O>, opts: PipeOptions<T> = {}): Node<O> {
    return this.pipe(
      name,
      async function* (src) {
        for await (const v of src) yield await fn(v);
      },
      opts,
    );
  }

  /** Node<U[]> -> Node<U>. */
  flatten<U>(this: Node<readonly U[]>, name: string, opts: PipeOptions<readonly U[]> = {}): Node<U> {
    return this.pipe<U>(
      name,
      async function* (src) {
        for await (const arr of src) yield* arr;
      },
      opts,
    );
  }

  /** Micro-batches of at most `size`, flushed on size, `maxWaitMs` after a batch's first element, and at the end. */
  batch(name: string, opts: BatchOptions): Node<T[]> {
    return this.pipe(name, batchStage<T>(opts), { highWaterMark: opts.highWaterMark });
  }

  /** A keyed reducer: one `[key, output]` per key at the end of input, in sorted key order. */
  combinePerKey<A, O>(name: string, key: (value: T) => string, fn: CombineFn<T, A, O>, opts: PipeOptions<T> = {}): Node<KV<string, O>> {
    return this.graph.add<KV<string, O>>(
      name,
      [this],
      (ins, ctx, env) => combineStage(ins[0] as AsyncIterable<T>, ctx, env.tmpDir, key, fn),
      { ...opts, key } as PipeOptions<unknown>,
    );
  }

  /** Fans items out to a pool of worker processes, each running `module[exportName](config)` per item. */
  fanOut<O>(name: string, opts: FanOutOptions<T>): Node<O> {
    return this.graph.add<O>(name, [this], (ins, ctx, env) => fanOutStage<T, O>(ins[0] as AsyncIterable<T>, ctx, env, opts), {
      highWaterMark: opts.highWaterMark,
      key: opts.key,
    } as PipeOptions<unknown>);
  }

  /** Consumes everything; a sink ends a branch. */
  sink(name: string, sink: Sink<T>, opts: PipeOptions<T> = {}): void {
    this.graph.add<never>(name, [this], (ins, ctx) => sink(ins[0] as AsyncIterable<T>, ctx), opts as PipeOptions<unknown>, true);
  }
}

export interface GraphEvents {
  metrics: [MetricsSnapshot];
  item: [ItemEvent];
  worker: [WorkerEvent];
}

export class Graph extends EventEmitter<GraphEvents> {
  readonly name: string;
  private readonly hwm: number;
  private readonly nodes: Spec[] = [];
  private readonly budget: TileBudget;
  private started = false;
  private controller = new AbortController();
  private cancelledByOutput = false;

  constructor(private readonly opts: GraphOptions) {
    super();
    this.name = opts.name;
    this.hwm = opts.highWaterMark ?? 2;
    const tb = opts.tileBudget ?? 256;
    this.budget = typeof tb === 'number' ? new Budget(tb) : tb;
  }

  /** Builds a sub-graph and returns its output as an async iterable (what a worker's per-item function returns). */
  static stream<T>(opts: GraphOptions, build: (g: Graph) => Node<T>): AsyncIterable<T> {
    const g = new Graph(opts);
    return g.output(build(g));
  }

  /** The run's tile budget. */
  get tiles(): TileBudget {
    return this.budget;
  }

  /** A source node. */
  source<O>(name: string, source: Source<O>, opts: PipeOptions<O> = {}): Node<O> {
    return this.add<O>(name, [], (_ins, ctx) => source(ctx), opts as PipeOptions<unknown>);
  }

  /** Elements of all inputs, interleaved as they come (inputs are consumed concurrently). */
  merge<N extends Node<unknown>[]>(name: string, ...inputs: N): Node<N[number] extends Node<infer U> ? U : never> {
    return this.add(name, inputs, (ins, ctx) => mergeIterables(ins, ctx.signal, this.hwm));
  }

  /** CoGroupByKey: one `[key, {input: values[]}]` per key over all inputs, sorted by key; `[]` where an input lacks the key. */
  join<R extends Record<string, Node<KV<string, unknown>>>>(name: string, inputs: R): Node<KV<string, JoinOutput<R>>> {
    const names = Object.keys(inputs);
    return this.add(name, Object.values(inputs), (ins) => joinStage(names, ins as AsyncIterable<KV<string, unknown>>[])) as Node<
      KV<string, JoinOutput<R>>
    >;
  }

  /**
   * Marks `node` as the graph's output: iterating the returned iterable runs the graph and yields the
   * node's elements. Returning early stops the run.
   */
  output<T>(node: Node<T>): AsyncIterable<T> {
    let ch: Channel<T> | undefined;
    node.sink(`${node.name}:output`, async (src) => {
      for await (const v of src) await (ch as Channel<T>).push(v);
    });
    const self = this;
    return {
      async *[Symbol.asyncIterator]() {
        const out = new Channel<T>(self.hwm);
        ch = out;
        let finished = false;
        const done = self.run().then(
          () => out.close(),
          (e: unknown) => out.fail(e),
        );
        try {
          for await (const v of out) yield v;
          finished = true;
        } finally {
          if (!finished) {
            self.cancelledByOutput = true;
            self.controller.abort(new EngineError('E_ABORTED', self.name, undefined, 'output consumer stopped'));
          }
          await done;
        }
      },
    };
  }

  /** @internal */
  add<O>(name: string, inputs: Node<unknown>[], body: Body, opts: PipeOptions<unknown> = {}, sink = false): Node<O> {
    if (this.started) throw new EngineError('E_GRAPH', name, undefined, 'cannot add a node to a graph that already ran');
    for (const i of inputs) {
      if (i.graph !== this) throw new EngineError('E_GRAPH', name, undefined, `input ${i.name} belongs to another graph`);
      i.spec.consumers++;
    }
    const spec: Spec = { name, inputs, body, sink, hwm: opts.highWaterMark ?? this.hwm, key: opts.key, consumers: 0 };
    this.nodes.push(spec);
    return new Node<O>(this, spec);
  }

  /** Runs the graph to completion. Rejects with the first error (an EngineError naming stage and key). */
  async run(): Promise<RunResult> {
    if (this.started) throw new EngineError('E_GRAPH', this.name, undefined, 'a graph runs once');
    this.started = true;
    this.validate();
    const t0 = performance.now();
    const runDir = await mkdtemp(joinPath(this.opts.tmpDir ?? tmpdir(), `${this.name.replace(/[^\w.-]/g, '_')}-`));
    const tally = new RunTally();
    const env = this.runEnv(runDir, tally);
    const stop = new FirstError(this.controller);
    const unlisten = this.listenForStops(stop);
    const edges = this.connect(stop.channels);
    const metrics = this.nodes.map((s) => newMetrics(s.name));
    const snapshot = (final: boolean): MetricsSnapshot => this.snapshot(metrics, edges.outs, tally.sub, t0, final);
    const period = this.opts.metricsIntervalMs ?? 250;
    const timer = period > 0 ? setInterval(() => this.emit('metrics', snapshot(false)), period) : undefined;
    timer?.unref();

    try {
      const { signal } = this.controller;
      const runs = this.nodes.map((s, idx) => {
        const ctx: StageContext = { signal, name: s.name, metrics: metrics[idx] as StageMetrics, tiles: this.budget };
        return runNode(s, ctx, env, edges.ins.get(s) ?? [], edges.outs.get(s) ?? []).catch((e: unknown) => stop.fail(e));
      });
      await Promise.all(runs);
    } finally {
      if (timer) clearInterval(timer);
      unlisten();
      await rm(runDir, { recursive: true, force: true });
    }
    this.opts.collect?.(metrics.map(copyMetrics));
    this.emit('metrics', snapshot(true));
    if (stop.failed && !(this.cancelledByOutput && isAbort(stop.error))) throw stop.error;
    return {
      metrics: snapshot(true).stages.slice(),
      tiles: { max: this.budget.maxInUse, limit: this.budget.limit },
      items: { done: tally.done, failed: tally.failed, replayed: tally.replayed },
      elapsedMs: performance.now() - t0,
    };
  }

  /** What the run's node bodies get besides their StageContext: the run's folder, budget and event sinks. */
  private runEnv(tmpDir: string, tally: RunTally): RunEnv {
    return {
      tmpDir,
      budget: this.budget,
      item: (ev) => {
        tally.count(ev);
        this.emit('item', ev);
      },
      worker: (ev) => this.emit('worker', ev),
      subMetrics: (parent, stages) => tally.addSub(parent, stages),
      ...(this.opts.fanOutRunner && { fanOutRunner: this.opts.fanOutRunner }),
    };
  }

  /**
   * What stops the run besides a stage's error: the caller's signal, SIGINT/SIGTERM (handleSignals), an abort of
   * the run's own signal (output consumer stopped). Returns what removes the listeners on the caller's objects.
   */
  private listenForStops(stop: FirstError): () => void {
    const onExternalAbort = (): void =>
      stop.fail(new EngineError('E_ABORTED', this.name, undefined, 'run aborted', { cause: this.opts.signal?.reason }));
    if (this.opts.signal?.aborted) onExternalAbort();
    this.opts.signal?.addEventListener('abort', onExternalAbort, { once: true });
    const onSignal = (sig: NodeJS.Signals): void => stop.fail(new EngineError('E_ABORTED', this.name, undefined, `received ${sig}`));
    if (this.opts.handleSignals) {
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    }
    // An abort that does not come from a stage error (output consumer stopped).
    const { signal } = this.controller;
    signal.addEventListener('abort', () => stop.fail(signal.reason), { once: true });
    return () => {
      this.opts.signal?.removeEventListener('abort', onExternalAbort);
      if (this.opts.handleSignals) {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    };
  }

  /** One channel per consumer edge: each node's input channels and output channels; every channel also into `all`. */
  private connect(all: Channel<unknown>[]): { ins: Map<Spec, Channel<unknown>[]>; outs: Map<Spec, Channel<unknown>[]> } {
    const outs = new Map<Spec, Channel<unknown>[]>();
    const ins = new Map<Spec, Channel<unknown>[]>();
    for (const s of this.nodes) {
      outs.set(s, []);
      ins.set(s, []);
    }
    for (const s of this.nodes) {
      for (const i of s.inputs) {
        const c = new Channel<unknown>(i.spec.hwm);
        all.push(c);
        outs.get(i.spec)?.push(c);
        ins.get(s)?.push(c);
      }
    }
    return { ins, outs };
  }

  /** The run's metrics now: every node's (with its output edges' queue depths), then the workers' stages by name. */
  private snapshot(metrics: StageMetrics[], outs: Map<Spec, Channel<unknown>[]>, sub: Map<string, StageMetrics>, t0: number, final: boolean): MetricsSnapshot {
    this.nodes.forEach((s, idx) => {
      const m = metrics[idx] as StageMetrics;
      const cs = outs.get(s) ?? [];
      m.queueDepth = Math.max(0, ...cs.map((c) => c.depth));
      m.maxQueueDepth = Math.max(m.maxQueueDepth, ...cs.map((c) => c.maxDepth));
    });
    return {
      graph: this.name,
      elapsedMs: performance.now() - t0,
      stages: [...metrics, ...[...sub.values()].sort((a, b) => a.name.localeCompare(b.name))].map(copyMetrics),
      tiles: { inUse: this.budget.inUse, maxInUse: this.budget.maxInUse, limit: this.budget.limit },
      final,
    };
  }

  private validate(): void {
    const seen = new Set<string>();
    for (const s of this.nodes) {
      if (seen.has(s.name)) throw new EngineError('E_GRAPH', s.name, undefined, `duplicate stage name in graph ${this.name}`);
      seen.add(s.name);
      if (!s.sink && s.consumers === 0) {
        throw new EngineError('E_GRAPH', s.name, undefined, `output of stage is never consumed (add a sink or a consumer)`);
      }
    }
  }
}

/** First error wins: it aborts the run's signal and fails every edge; later errors are dropped. */
class FirstError {
  failed = false;
  error: unknown;
  /** Every edge of the run (filled once they exist; an error before that fails only the signal). */
  readonly channels: Channel<unknown>[] = [];

  constructor(private readonly controller: AbortController) {}

  fail(e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.error = e;
    this.controller.abort(e);
    for (const c of this.channels) c.fail(e);
  }
}

/** What a run counts of its fan-outs' items, and the metrics of the stages that ran inside worker processes. */
class RunTally {
  done = 0;
  replayed = 0;
  readonly failed: ItemFailure[] = [];
  /** Stages that ran inside worker processes, named `<fan-out stage>/<stage>`. */
  readonly sub = new Map<string, StageMetrics>();

  count(ev: ItemEvent): void {
    if (ev.type === 'done') this.done++;
    else if (ev.type === 'replayed') this.replayed++;
    else if (ev.type === 'failed') this.failed.push({ stage: ev.stage, key: ev.key, error: ev.error });
  }

  addSub(parent: string, stages: readonly StageMetrics[]): void {
    for (const m of stages) {
      const name = `${parent}/${m.name}`;
      let into = this.sub.get(name);
      if (into === undefined) this.sub.set(name, (into = newMetrics(name)));
      addMetrics(into, m);
    }
  }
}

function isAbort(e: unknown): boolean {
  return e instanceof EngineError && e.code === 'E_ABORTED';
}

/** Turns anything a stage threw into an EngineError naming the stage and, when known, the element key. */
export function toEngineError(e: unknown, stage: string, key: string | undefined): EngineError {
  if (e instanceof EngineError) return e;
  const code = typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : 'E_STAGE';
  const msg = e instanceof Error ? e.message : String(e);
  return new EngineError(code, stage, key, msg, { cause: e });
}

/** Runs one node: pulls its inputs through metered iterables and pushes its outputs into every consumer's channel. */
async function runNode(s: Spec, ctx: StageContext, env: RunEnv, inputs: Channel<unknown>[], outs: Channel<unknown>[]): Promise<void> {
  const m = ctx.metrics;
  // Time spent waiting for input, as the union of the waits: a join or merge waits on several inputs at
  // once, and summing overlapping waits would count the same wall time twice (busy time below zero).
  let waitMs = 0;
  let waiting = 0;
  let waitStart = 0;
  /** Total input-wait time up to now, including a wait still in progress. */
  const waited = (now: number): number => waitMs + (waiting > 0 ? now - waitStart : 0);
  let last: { v: unknown } | undefined;
  const metered = inputs.map((c) => meter(c));
  function meter(c: Channel<unknown>): AsyncIterable<unknown> {
    return {
      [Symbol.asyncIterator]: () => ({
        async next() {
          if (waiting++ === 0) waitStart = performance.now();
          try {
            const r = await c.next();
            if (!r.done) {
              m.elementsIn++;
              last = { v: r.value };
            }
            return r;
          } finally {
            if (--waiting === 0) waitMs += performance.now() - waitStart;
          }
        },
        async return() {
          c.cancel();
          return { done: true, value: undefined };
        },
      }),
    };
  }
  const keyOf = (): string | undefined => {
    if (last === undefined || s.key === undefined) return undefined;
    try {
      return s.key(last.v);
    } catch {
      return undefined; // the key function itself failed on this element: report without a key
    }
  };

  try {
    const t0 = performance.now();
    const result = s.body(metered, ctx, env);
    if (s.sink || !(Symbol.asyncIterator in (result as object))) {
      await result;
      const t = performance.now();
      m.busyMs += t - t0 - waited(t);
      return;
    }
    const it = (result as AsyncIterable<unknown>)[Symbol.asyncIterator]();
    let active = outs.slice();
    try {
      for (;;) {
        const t1 = performance.now();
        const w1 = waited(t1);
        const r = await it.next();
        const t2 = performance.now();
        // A stage may yield while it still waits for input (a batcher flushing on time): only the time
        // spent neither waiting for input nor for downstream counts as busy.
        m.busyMs += t2 - t1 - (waited(t2) - w1);
        if (r.done) break;
        m.elementsOut++;
        const pushed = await Promise.allSettled(active.map((c) => c.push(r.value)));
        m.blockedMs += performance.now() - t2;
        const rejected = pushed.find((p) => p.status === 'rejected' && !(p.reason instanceof ChannelCancelled));
        if (rejected) throw (rejected as PromiseRejectedResult).reason;
        active = active.filter((c) => !c.isCancelled);
        if (active.length === 0) break; // every consumer went away: stop producing
      }
      for (const c of outs) c.close();
    } finally {
      await it.return?.();
    }
  } catch (e) {
    throw toEngineError(e, s.name, keyOf());
  } finally {
    for (const c of inputs) c.cancel();
  }
}

/** Interleaves several iterables; each is pumped concurrently into a small bounded channel. */
async function* mergeIterables(inputs: AsyncIterable<unknown>[], signal: AbortSignal, hwm: number): AsyncGenerator<unknown> {
  const ch = new Channel<unknown>(hwm);
  let open = inputs.length;
  const pumps = inputs.map(async (src) => {
    try {
      for await (const v of src) await ch.push(v);
    } catch (e) {
      if (!(e instanceof ChannelCancelled)) ch.fail(e);
    } finally {
      if (--open === 0) ch.close();
    }
  });
  const onAbort = (): void => ch.fail(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    yield* ch;
  } finally {
    signal.removeEventListener('abort', onAbort);
    ch.cancel();
    await Promise.all(pumps);
  }
}
