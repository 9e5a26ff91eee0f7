/**
 * One slot of a fan-out: a worker process and its loop. It takes items from the shared input one at a time,
 * replays an item from its checkpoint or runs it (with retries) on its process, hands a finished attempt to its
 * DeliveryQueue, and once the input has run dry (with `share`) joins the running items that have parts left.
 */
import { findCommitted, replayCommitted, Staging } from '../staging.js';
import { EngineError } from '../types.js';
import type { Outcome, WorkerProc } from '../worker-proc.js';
import { DeliveryQueue } from './delivery.js';
import type { FanOutRun } from './run.js';
import { SharedAttempt } from './share.js';

export class Slot<I, O> {
  private proc: WorkerProc | undefined;
  private readonly delivery = new DeliveryQueue(() => this.proc?.kill());

  constructor(private readonly run: FanOutRun<I, O>) {}

  /** The slot's whole life: the input's items, then (with `share`) the running items it can join. */
  async work(): Promise<void> {
    try {
      await this.takeItems();
      if (this.run.settings.opts.share) await this.joinRunning();
      await this.delivery.drained();
    } finally {
      await this.delivery.settled();
      await this.proc?.close();
    }
  }

  /** Items from the shared input until it runs dry, each counted busy on the board while it runs. */
  private async takeItems(): Promise<void> {
    const { run } = this;
    for (let r = await run.take(); !r.done; r = await run.take()) {
      run.ctx.signal.throwIfAborted();
      this.delivery.check();
      const item = r.value;
      await run.board.busy(() => this.runItem(item));
    }
  }

  /** The input has run dry: help the running items that have parts left, the one with the most first. */
  private async joinRunning(): Promise<void> {
    const { run } = this;
    const { board } = run;
    for (;;) {
      const target = board.pick(this.proc !== undefined && this.proc.alive);
      if (target === undefined) {
        if (!board.anyBusy) return;
        await board.changed; // an item's first process may still be starting: look again when something changes
        continue;
      }
      run.ctx.signal.throwIfAborted();
      const proc = await this.liveProc();
      if (!board.joinable(target)) continue; // it moved on while a process started
      run.item({ type: 'joined', stage: run.settings.stage, key: target.key, attempt: target.attempt, pid: proc.pid });
      const joined = proc.run(run.runId(), target.item, (v) => target.add(v), target.share(target.join()));
      target.joined.push(joined);
      if ((await joined).kind !== 'ok') target.stop();
    }
  }

  /** This slot's process, forked anew if it has none or it died. */
  private async liveProc(): Promise<WorkerProc> {
    if (this.proc === undefined || !this.proc.alive) this.proc = await this.run.spawn();
    return this.proc;
  }

  /** One item: replayed from its checkpoint, or run (and retried) on this slot's process. */
  private async runItem(item: I): Promise<void> {
    const { run } = this;
    const { stage, opts, retries, errorRetries } = run.settings;
    const key = opts.key(item);
    const checkpointKey = opts.checkpointKey?.(item) ?? key;
    if (await this.replay(key, checkpointKey)) return;
    let crashes = 0;
    let errors = 0;
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.runAttempt(item, key, checkpointKey, attempt);
      if (outcome.kind === 'ok') return;
      if (outcome.kind === 'aborted') throw outcome.error;
      run.ctx.signal.throwIfAborted();
      const crashed = outcome.kind === 'crash';
      if (crashed) crashes++;
      else errors++;
      if (crashed ? crashes <= retries : errors <= errorRetries) {
        run.item({ type: 'retry', stage, key, attempt, error: outcome.error });
        continue;
      }
      const err = new EngineError(crashed ? 'E_WORKER_CRASH' : 'E_WORKER_ITEM', stage, key, `item failed after ${attempt} attempt(s): ${outcome.error.message}`, {
        cause: outcome.error,
      });
      run.metrics.custom.items_failed++;
      run.item({ type: 'failed', stage, key, attempt, error: err });
      if (opts.failFast) throw err;
      return;
    }
  }

  /** Delivers the item's committed results from an earlier run, if there are any; whether it did. */
  private async replay(key: string, checkpointKey: string): Promise<boolean> {
    const { run } = this;
    const dir = run.settings.opts.checkpointDir;
    if (dir === undefined) return false;
    const committed = await findCommitted(dir, checkpointKey);
    if (committed === undefined) return false;
    await this.delivery.drained(); // replays stay in item order after the deliveries before them
    const count = await run.deliver(replayCommitted(committed));
    run.metrics.custom.items_replayed++;
    run.item({ type: 'replayed', stage: run.settings.stage, key, count });
    return true;
  }

  /**
   * One attempt of an item on this slot's process (open to joiners with `share`). Its results are staged (or, with
   * `stream` delivery, pushed downstream at once); a successful staged attempt goes to the delivery queue, any
   * other staging is discarded.
   */
  private async runAttempt(item: I, key: string, checkpointKey: string, attempt: number): Promise<Outcome> {
    const { run } = this;
    const { stage, opts, stageDir } = run.settings;
    const proc = await this.liveProc();
    run.item({ type: 'started', stage, key, attempt, pid: proc.pid });
    const t0 = performance.now();
    const staging = run.settings.delivery === 'staged' ? new Staging(stageDir, opts.stageMemory ?? 16, checkpointKey, opts.checkpointDir !== undefined) : undefined;
    let handedOff = false;
    let received = 0;
    const onResult = (v: unknown): Promise<void> => {
      run.item({ type: 'progress', stage, key, attempt, count: ++received, value: v });
      return staging ? staging.add(v) : run.out.push(v as O);
    };
    try {
      let outcome: Outcome;
      if (!opts.share) outcome = await proc.run(run.runId(), item, onResult);
      else {
        const shared = new SharedAttempt(key, item, attempt, onResult, () => run.board.notify());
        outcome = await run.board.runOpen(shared, () => proc.run(run.runId(), item, (v) => shared.add(v), shared.share(0)));
      }
      this.delivery.check();
      if (outcome.kind === 'ok') {
        const done = (count: number): void => {
          run.metrics.custom.items_done++;
          run.item({ type: 'done', stage, key, attempt, durationMs: performance.now() - t0, count });
        };
        if (staging) {
          this.delivery.commitAndDeliver(staging, (results) => run.deliver(results), done);
          handedOff = true;
        } else done(outcome.n);
      }
      return outcome;
    } finally {
      if (!handedOff) await staging?.discard();
    }
  }
}
