/**
 * What the slots of one fan-out run share: the input (one item at a time, whichever slot asks), the output
 * channel, the worker processes and how they are started, attempt ids, the sharing board and the run's events.
 */
import { Budget } from '../budget.js';
import { Channel } from '../channel.js';
import type { ItemEvent } from '../events.js';
import type { RunEnv } from '../run-env.js';
import { EngineError, type StageContext, type StageMetrics } from '../types.js';
import { WorkerProc } from '../worker-proc.js';
import type { FanOutSettings } from './options.js';
import { ShareBoard } from './share.js';

export class FanOutRun<I, O> {
  readonly out: Channel<O>;
  readonly board: ShareBoard;
  private readonly procs = new Set<WorkerProc>();
  private readonly input: AsyncIterator<I>;
  private pulling: Promise<unknown> = Promise.resolve();
  private nextId = 0;

  constructor(
    source: AsyncIterable<I>,
    readonly ctx: StageContext,
    private readonly env: RunEnv,
    readonly settings: FanOutSettings<I>,
  ) {
    this.out = new Channel<O>(Math.max(1, settings.opts.highWaterMark ?? 2));
    this.input = source[Symbol.asyncIterator]();
    this.board = new ShareBoard(settings.shareMinParts);
    const m = ctx.metrics;
    m.custom.items_done = 0;
    m.custom.items_failed = 0;
    m.custom.items_replayed = 0;
    m.custom.workers = 0;
  }

  get metrics(): StageMetrics {
    return this.ctx.metrics;
  }

  /** The next item from the shared input, one pull at a time whichever slot asks. */
  take(): Promise<IteratorResult<I>> {
    const p = this.pulling.then(() => this.input.next());
    this.pulling = p.catch(() => undefined);
    return p;
  }

  /** A new attempt id (unique within the run, across slots). */
  runId(): number {
    return this.nextId++;
  }

  /** Reports an item event of this stage. */
  item(event: ItemEvent): void {
    this.env.item(event);
  }

  /** Hands `results` downstream one by one (waiting for room on the output edge); returns how many. */
  async deliver(results: AsyncIterable<unknown>): Promise<number> {
    let n = 0;
    for await (const v of results) {
      await this.out.push(v as O);
      n++;
    }
    return n;
  }

  /** Forks a worker process and waits until it has loaded the module (E_STAGE if it could not). */
  async spawn(): Promise<WorkerProc> {
    const { stage, moduleUrl, window, tileLimit, opts } = this.settings;
    const m = this.metrics;
    const p = new WorkerProc({
      init: { type: 'init', module: moduleUrl, exportName: opts.exportName, config: opts.config, window, tileLimit, stage },
      execArgv: opts.execArgv,
      onMetrics: (stages) => this.env.subMetrics(stage, stages),
      onTiles: (pid, inUse, max) => {
        if (this.env.budget instanceof Budget) this.env.budget.report(`${stage}:${pid}`, inUse, max);
      },
      onExit: (pid, code, signal) => {
        this.procs.delete(p);
        m.custom.workers = this.procs.size;
        this.env.worker({ type: 'exit', stage, pid, code, signal });
      },
    });
    this.procs.add(p);
    m.custom.workers = this.procs.size;
    this.env.worker({ type: 'spawn', stage, pid: p.pid });
    try {
      await p.ready;
    } catch (e) {
      p.kill();
      throw new EngineError('E_STAGE', stage, undefined, `worker could not load ${moduleUrl}#${opts.exportName}: ${(e as Error).message}`, { cause: e });
    }
    return p;
  }

  /** Kills every worker process (SIGKILL). */
  killAll(): void {
    for (const p of this.procs) p.kill();
  }

  /** A slot failed or the run was aborted: kill the workers, fail the output with `reason`. */
  fail(reason: unknown): void {
    this.killAll();
    this.out.fail(reason);
  }

  /** After the consumer stopped: no more output, every process killed and gone, the slots and the input ended. */
  async shutdown(slots: Promise<void>): Promise<void> {
    this.out.cancel();
    this.killAll();
    await Promise.all([...this.procs].map((p) => p.closed));
    await slots;
    await this.input.return?.();
  }
}
