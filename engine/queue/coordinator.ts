/**
 * The coordinator side of a queue run (a FanOutRunner, engine/fanout/runner.ts): per item, a committed checkpoint is
 * replayed as on the local pool; otherwise the item becomes a BullMQ job whose id is derived from its checkpoint (so a
 * restarted coordinator adds nothing twice), whichever machine takes it writes the checkpoint on shared storage, and
 * once the job completed the coordinator replays that file downstream. Downstream sees exactly what a local run
 * delivers, so the output is the same. A job failed on every attempt is the item failed (its event, the run goes on,
 * or stops with failFast); a wait never outlives the run (abort) and never misses an end (events plus a sweep).
 */
import { setMaxListeners } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { Queue, QueueEvents, type Job } from 'bullmq';
import { Channel } from '../channel.js';
import type { FanOutOptions, FanOutSettings } from '../fanout/options.js';
import type { FanOutRunner } from '../fanout/runner.js';
import type { RunEnv } from '../run-env.js';
import { findCommitted, removePartials, replayCommitted } from '../staging.js';
import { EngineError, type StageContext } from '../types.js';
import type { QueueConnection } from './connection.js';
import { itemJobId, JOB_VERSION, parseReason, QUEUE_NAME, QUEUE_PREFIX, type ItemJob, type ItemJobProgress, type ItemJobResult, type ItemQueue } from './job-data.js';
import { RunJobCounts, type QueueCounts } from './counts.js';
import { JobWaits } from './wait.js';

export interface QueueRunnerOptions {
  readonly connection: QueueConnection;
  readonly queueName?: string;
  /** sha256 of each model file the fan-out's config names, by path (checked by every worker). */
  readonly sha256: Readonly<Record<string, string>>;
  /** Attempts of a job whose worker process died (a thrown error fails at once), and the first retry's delay (doubling). */
  readonly attempts: number;
  readonly backoffMs?: number;
  /** How often the jobs still awaited are looked at besides their events (2000 ms). */
  readonly sweepMs?: number;
  /** Lines for the log (connection trouble), already redacted. */
  readonly log?: (line: string) => void;
  /**
   * This run's jobs as the queue holds them (waiting, active per host, retrying, completed, failed), every `countsMs`
   * (1500 ms; one Redis round trip each, counts.ts) and once more, `final`, when every item is done.
   */
  readonly onCounts?: (counts: QueueCounts) => void;
  readonly countsMs?: number;
}

/** Times a job lost by Redis (a restart without its last writes) is added again before the item fails. */
const MAX_READDS = 3;

export class QueueRunner implements FanOutRunner {
  constructor(private readonly opts: QueueRunnerOptions) {}

  async *run<I, O>(source: AsyncIterable<I>, ctx: StageContext, env: RunEnv, settings: FanOutSettings<I>): AsyncGenerator<O> {
    const dir = settings.opts.checkpointDir;
    if (dir === undefined) throw new EngineError('E_GRAPH', ctx.name, undefined, 'a queue runner needs checkpointDir (workers hand results back as checkpoint files)');
    await mkdir(dir, { recursive: true });
    const name = this.opts.queueName ?? QUEUE_NAME;
    const redact = this.opts.connection.redact;
    const log = (err: Error): void => this.opts.log?.(`queue: ${redact(err.message)}`);
    const queue: ItemQueue = new Queue(name, { connection: this.opts.connection.options, prefix: QUEUE_PREFIX });
    queue.on('error', log);
    const events = new QueueEvents(name, { connection: this.opts.connection.options, prefix: QUEUE_PREFIX });
    events.on('error', log);
    const waits = new JobWaits(queue, events, this.opts.sweepMs ?? 2000, log);
    const onCounts = this.opts.onCounts;
    const counts = onCounts === undefined ? undefined : new RunJobCounts(queue, onCounts, log);
    const run = new QueueRun<I, O>(this.opts, queue, waits, counts, ctx, env, settings, dir);
    const m = ctx.metrics;
    m.custom.items_done = 0;
    m.custom.items_failed = 0;
    m.custom.items_replayed = 0;
    try {
      await events.waitUntilReady();
      counts?.start(this.opts.countsMs ?? 1500);
      const all = run.all(source).then(
        () => run.out.close(),
        (e: unknown) => run.out.fail(e),
      );
      let finished = false;
      try {
        yield* run.out;
        finished = true;
      } finally {
        run.out.cancel();
        run.stop();
        await all;
      }
      // Every item is committed or failed: partial files left by machines that died mid-item go (a late one from a
      // machine cut off then fails its rename, and its job was redone elsewhere anyway).
      if (finished) await removePartials(dir);
      if (finished) await counts?.refresh(true);
    } finally {
      counts?.close();
      waits.close();
      await events.close();
      await queue.close();
    }
  }
}

/** One run of the stage through the queue: its items, their jobs, deliveries one at a time. */
class QueueRun<I, O> {
  readonly out: Channel<O>;
  private delivering: Promise<unknown> = Promise.resolve();
  private readonly controller = new AbortController();
  private readonly fo: FanOutOptions<I>;

  constructor(
    private readonly opts: QueueRunnerOptions,
    private readonly queue: ItemQueue,
    private readonly waits: JobWaits,
    private readonly counts: RunJobCounts | undefined,
    private readonly ctx: StageContext,
    private readonly env: RunEnv,
    private readonly settings: FanOutSettings<I>,
    private readonly dir: string,
  ) {
    this.out = new Channel<O>(Math.max(1, settings.opts.highWaterMark ?? 2));
    this.fo = settings.opts;
    // Every awaited job listens for this run's stop: one listener per item (node warns past 10 by default).
    setMaxListeners(0, this.controller.signal);
    ctx.signal.addEventListener('abort', () => this.stop(), { once: true });
  }

  stop(): void {
    this.controller.abort(this.ctx.signal.reason ?? new EngineError('E_ABORTED', this.settings.stage, undefined, 'output consumer stopped'));
  }

  /** Every item of `source`, each added (or replayed) as it is read; resolves when all are done or failed. */
  async all(source: AsyncIterable<I>): Promise<void> {
    const items: Array<Promise<void>> = [];
    let first: unknown;
    const fail = (e: unknown): void => {
      first ??= e;
      this.stop();
    };
    for await (const item of source) {
      if (this.controller.signal.aborted) break;
      items.push(this.item(item).catch(fail));
    }
    await Promise.all(items);
    if (first !== undefined) throw first;
    this.ctx.signal.throwIfAborted();
  }

  private async item(item: I): Promise<void> {
    const { stage } = this.settings;
    const key = this.fo.key(item);
    const checkpointKey = this.fo.checkpointKey?.(item) ?? key;
    if (await this.replay(key, checkpointKey, undefined)) return;
    const jobId = itemJobId(this.dir, checkpointKey);
    const data: ItemJob = { v: JOB_VERSION, stage, exportName: this.fo.exportName, config: this.fo.config ?? null, item, key, checkpointKey, checkpointDir: this.dir, sha256: this.opts.sha256 };
    const t0 = performance.now();
    let attempt = 0;
    for (let adds = 0; ; adds++) {
      if (await this.ensureJob(jobId, data, key, checkpointKey)) return;
      this.counts?.track(jobId);
      const finished = await this.waits.wait(jobId, this.controller.signal, (p) => {
        this.counts?.changed(jobId);
        if (p.pid === undefined) return; // taken, not yet on a process: the attempt starts with the first report that names one
        if (p.attempt !== attempt) {
          attempt = p.attempt;
          this.env.item({ type: 'started', stage, key, attempt, pid: p.pid, host: p.host });
        }
        this.env.item({ type: 'remote-progress', stage, key, attempt, tiles: p.tiles, ...(p.total !== undefined && { total: p.total }) });
      });
      this.counts?.changed(jobId);
      if (finished.state === 'completed') return this.completed(finished.job, key, checkpointKey, t0);
      if (finished.state === 'failed') return this.failed(finished.job, key);
      if (await this.replay(key, checkpointKey, undefined)) return; // lost by Redis after its checkpoint was written
      if (adds + 1 >= MAX_READDS) return this.failItem(key, 0, new EngineError('E_QUEUE_LOST', stage, key, `the job was lost by Redis ${MAX_READDS} times`));
    }
  }

  /**
   * Adds the job unless Redis has it: waiting or running (a coordinator restarted mid-run) it is awaited as it is; a
   * failure or a completion of an earlier run whose checkpoint is gone is removed and added afresh. True when the
   * item turned out to be committed meanwhile (and was replayed).
   */
  private async ensureJob(jobId: string, data: ItemJob, key: string, checkpointKey: string): Promise<boolean> {
    const state = await this.queue.getJobState(jobId);
    if (state === 'completed' || state === 'failed') {
      if (state === 'completed' && (await this.replay(key, checkpointKey, undefined))) return true;
      await this.queue.remove(jobId);
    } else if (state !== 'unknown') return false;
    await this.queue.add(this.settings.stage, data, {
      jobId,
      attempts: Math.max(1, this.opts.attempts),
      backoff: { type: 'exponential', delay: this.opts.backoffMs ?? 1000 },
      removeOnComplete: { age: 24 * 3600 },
      removeOnFail: { age: 7 * 24 * 3600 },
    });
    return false;
  }

  private async completed(job: Job<ItemJob, ItemJobResult>, key: string, checkpointKey: string, t0: number): Promise<void> {
    const r = job.returnvalue;
    const facts = { host: r?.host ?? '?', stalls: job.stalledCounter ?? 0 };
    if (await this.replay(key, checkpointKey, { attempt: attemptsOf(job), durationMs: r !== undefined && r !== null ? r.seconds * 1000 : performance.now() - t0, ...facts })) return;
    this.failItem(key, job.attemptsMade, new EngineError('E_QUEUE_NO_CHECKPOINT', this.settings.stage, key, `the job completed on ${facts.host} but its checkpoint is not in ${this.dir} (is the work folder on storage every machine shares?)`), facts);
  }

  private failed(job: Job<ItemJob, ItemJobResult>, key: string): void {
    const { code, message } = parseReason(job.failedReason ?? 'failed', 'E_WORKER_CRASH');
    const cause = Object.assign(new Error(message), { code });
    const attempts = attemptsOf(job);
    const err = new EngineError(code === 'E_WORKER_CRASH' ? 'E_WORKER_CRASH' : 'E_WORKER_ITEM', this.settings.stage, key, `item failed after ${attempts} attempt(s): ${message}`, { cause });
    this.failItem(key, attempts, err, { host: lastHost(job), stalls: job.stalledCounter ?? 0 });
  }

  private failItem(key: string, attempt: number, error: EngineError, facts: { host?: string; stalls?: number } = {}): void {
    this.ctx.metrics.custom.items_failed = (this.ctx.metrics.custom.items_failed ?? 0) + 1;
    this.env.item({ type: 'failed', stage: this.settings.stage, key, attempt, error, ...facts });
    if (this.fo.failFast) throw error;
  }

  /** Replays the item's committed file downstream if there is one (done: the event of a job just finished; else 'replayed'). */
  private async replay(key: string, checkpointKey: string, done: { attempt: number; durationMs: number; host: string; stalls: number } | undefined): Promise<boolean> {
    const committed = await findCommitted(this.dir, checkpointKey);
    if (committed === undefined) return false;
    const delivery = this.delivering.then(async () => {
      let count = 0;
      for await (const v of replayCommitted(committed)) {
        await this.out.push(v as O);
        count++;
      }
      return count;
    });
    this.delivering = delivery.catch(() => undefined);
    const count = await delivery;
    const { stage } = this.settings;
    const m = this.ctx.metrics.custom;
    if (done === undefined) {
      m.items_replayed = (m.items_replayed ?? 0) + 1;
      this.counts?.replayed();
      this.env.item({ type: 'replayed', stage, key, count });
    } else {
      m.items_done = (m.items_done ?? 0) + 1;
      this.env.item({ type: 'done', stage, key, count, ...done });
    }
    return true;
  }
}

/** The host of a failed job's last attempt, from its progress. */
function lastHost(job: Job<ItemJob, ItemJobResult>): string | undefined {
  const p = job.progress as Partial<ItemJobProgress> | number | undefined;
  return typeof p === 'object' && p !== null && typeof p.host === 'string' ? p.host : undefined;
}

/** Attempts a finished job took, the ones cut short by a lost machine included (BullMQ counts those as started only). */
function attemptsOf(job: Job<ItemJob, ItemJobResult>): number {
  return Math.max(1, job.attemptsStarted ?? 0, job.attemptsMade);
}
