/**
 * The worker side of a queue run: a BullMQ Worker that takes item jobs of any run and runs each on one of its local
 * processes (ProcessPool: the heavy work stays off this event loop, so BullMQ keeps renewing its locks), after the
 * checks a queue needs (every path under a --root, every model's sha256). The attempt's results are staged into the
 * job's checkpoint folder in the committed format (tmp + rename, engine/staging.ts) and the job completes with a small
 * summary. `stop()`: finish the jobs in hand, take no more; `stop(true)`: put them back on the queue now.
 */
import { hostname } from 'node:os';
import { Worker, UnrecoverableError, type Job } from 'bullmq';
import { Staging } from '../staging.js';
import { EngineError } from '../types.js';
import type { QueueConnection } from './connection.js';
import { JOB_VERSION, QUEUE_NAME, QUEUE_PREFIX, reasonOf, type ItemJob, type ItemJobProgress, type ItemJobResult } from './job-data.js';
import { ModelHashes } from './model-check.js';
import { ProcessPool } from './processes.js';
import type { RootGuard } from './roots.js';

/** What the domain tells the worker about a job (the engine does not know what a slide or a model is). */
export interface JobPaths {
  /** Files and folders the item reads (checked against the roots). */
  readonly reads: readonly string[];
  /** Model files the config names: under a root and with the sha256 the job names. */
  readonly models: readonly string[];
}

export interface QueueWorkerOptions {
  readonly connection: QueueConnection;
  readonly roots: RootGuard;
  /** The queue's name (QUEUE_NAME). */
  readonly queueName?: string;
  /** Local processes (BullMQ concurrency). */
  readonly processes: number;
  /** Each process's tile budget. */
  readonly tileLimit: number;
  /** The worker module (this machine's copy) and the exports a job may name. */
  readonly moduleUrl: string;
  readonly exportNames: readonly string[];
  /**
   * The paths a job's config and item name (resolved by the domain, e.g. a slide's file). `roots` lets the hook check a
   * folder before it looks inside it (every path it returns is checked again).
   */
  readonly paths: (job: ItemJob, roots: RootGuard) => Promise<JobPaths>;
  /** The config as this machine runs it (its own caches, threads). */
  readonly localConfig: (job: ItemJob) => unknown;
  /** How far a result takes the item: the total when it becomes known, tiles done. */
  readonly measure?: (value: unknown) => { total?: number; tiles?: number };
  /** How long a job's lock lasts without renewal, and how often stalled jobs are looked for (ms). */
  readonly lockMs: number;
  readonly stalledMs: number;
  /** Node flags for the processes (process.execArgv). */
  readonly execArgv?: string[];
  /** Lines for the log (job taken, done, failed; connection trouble), already redacted. */
  readonly log?: (line: string) => void;
}

const host = hostname();
/** Progress is sent at most this often per job. */
const PROGRESS_MS = 1000;

export class QueueWorker {
  private readonly worker: Worker<ItemJob, ItemJobResult>;
  private readonly pool: ProcessPool;
  private readonly hashes = new ModelHashes();
  private readonly active = new Map<string, { job: Job<ItemJob, ItemJobResult>; token: string }>();
  private nextId = 0;
  private stopping: Promise<void> | undefined;

  constructor(private readonly opts: QueueWorkerOptions) {
    this.pool = new ProcessPool(opts.processes, opts.execArgv ?? process.execArgv);
    this.worker = new Worker<ItemJob, ItemJobResult>(opts.queueName ?? QUEUE_NAME, (job, token) => this.process(job, token ?? ''), {
      connection: opts.connection.options,
      prefix: QUEUE_PREFIX,
      concurrency: opts.processes,
      lockDuration: opts.lockMs,
      stalledInterval: opts.stalledMs,
      maxStalledCount: 2,
      autorun: false,
    });
    // Connection trouble (Redis restarting) and late completions refused by BullMQ (a lock lost while cut off): told, never fatal.
    this.worker.on('error', (err) => this.log(`queue: ${opts.connection.redact(err.message)}`));
  }

  /** Starts taking jobs; resolves once connected. */
  async start(): Promise<void> {
    void this.worker.run().catch((err: unknown) => this.log(`queue worker stopped: ${this.opts.connection.redact((err as Error).message)}`));
    await this.worker.waitUntilReady();
  }

  /** Jobs in hand now. */
  get busy(): number {
    return this.active.size;
  }

  /**
   * Graceful (default): no new jobs, the ones in hand finish, then the processes end. `now`: the jobs in hand go
   * back to the queue at once (another worker takes them), the processes are killed.
   */
  stop(now = false): Promise<void> {
    if (now) {
      const force = (async () => {
        for (const { job, token } of this.active.values()) {
          await job.moveToWait(token).catch((err: unknown) => this.log(`could not hand back ${job.id} (it will be taken again once its lock expires): ${this.opts.connection.redact((err as Error).message)}`));
        }
        await this.pool.killAll();
        await this.worker.close(true);
      })();
      this.stopping = force;
      return force;
    }
    this.stopping ??= (async () => {
      await this.worker.close();
      await this.pool.closeAll();
    })();
    return this.stopping;
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  private async process(job: Job<ItemJob, ItemJobResult>, token: string): Promise<ItemJobResult> {
    const data = job.data;
    const id = job.id ?? '';
    this.active.set(id, { job, token });
    this.log(`took ${data.key} attempt ${attemptOf(job)}`);
    // Who has the job, at once: the coordinator's counts name this host while the checks run and a process starts.
    this.sendProgress(job, { host, attempt: attemptOf(job), tiles: 0 });
    try {
      await this.check(data);
      const result = await this.runOnProcess(job, data);
      this.log(`done ${data.key} (${result.tiles} tiles, ${result.seconds.toFixed(1)} s)`);
      return result;
    } catch (err) {
      this.log(`failed ${data.key}: ${err instanceof EngineError ? err.code : 'E_WORKER_CRASH'}: ${this.opts.connection.redact((err as Error).message)}`);
      // A checked or deterministic failure fails the job at once; a crashed process is retried (job attempts).
      if (err instanceof EngineError && err.code !== 'E_WORKER_CRASH') throw new UnrecoverableError(reasonOf(err.code, this.opts.connection.redact(err.message)));
      throw err;
    } finally {
      this.active.delete(id);
    }
  }

  /** job.updateProgress, not awaited (a failure is logged: the next report or the job's end says more). */
  private sendProgress(job: Job<ItemJob, ItemJobResult>, p: ItemJobProgress): void {
    job.updateProgress(p).catch((err: unknown) => this.log(`progress of ${job.data.key} not sent: ${this.opts.connection.redact((err as Error).message)}`));
  }

  /** The job's version and export, its checkpoint folder and every path it names under a root, its models' hashes. */
  private async check(data: ItemJob): Promise<void> {
    const stage = typeof data.stage === 'string' ? data.stage : 'queue';
    const key = typeof data.key === 'string' ? data.key : '?';
    if (data.v !== JOB_VERSION) throw new EngineError('E_QUEUE_JOB', stage, key, `job format ${String(data.v)}, this worker reads ${JOB_VERSION} (update the worker or the coordinator)`);
    if (!this.opts.exportNames.includes(data.exportName)) throw new EngineError('E_QUEUE_JOB', stage, key, `the job names the export ${JSON.stringify(data.exportName)}, not one this worker runs`);
    await this.opts.roots.check(data.checkpointDir, 'checkpoint folder', stage, key);
    const paths = await this.opts.paths(data, this.opts.roots);
    for (const p of paths.reads) await this.opts.roots.check(p, 'input', stage, key);
    for (const m of paths.models) {
      const real = await this.opts.roots.check(m, 'model', stage, key);
      await this.hashes.check(real, data.sha256[m], stage, key);
    }
  }

  /** One attempt on a local process, staged into the checkpoint folder and committed on success. */
  private async runOnProcess(job: Job<ItemJob, ItemJobResult>, data: ItemJob): Promise<ItemJobResult> {
    const t0 = performance.now();
    const proc = await this.pool.acquire({ moduleUrl: this.opts.moduleUrl, exportName: data.exportName, config: this.opts.localConfig(data), stage: data.stage, tileLimit: this.opts.tileLimit });
    const staging = new Staging(data.checkpointDir, 0, data.checkpointKey, true);
    const progress: { -readonly [K in keyof ItemJobProgress]: ItemJobProgress[K] } = { host, pid: proc.pid, attempt: attemptOf(job), tiles: 0 };
    let sent = 0;
    const report = (force: boolean): void => {
      if (!force && performance.now() - sent < PROGRESS_MS) return;
      sent = performance.now();
      this.sendProgress(job, { ...progress });
    };
    let committed = false;
    try {
      report(true);
      const outcome = await proc.run(this.nextId++, data.item, async (v) => {
        const m = this.opts.measure?.(v);
        if (m?.total !== undefined) progress.total = m.total;
        progress.tiles += m?.tiles ?? 0;
        report(m?.total !== undefined);
        await staging.add(v);
      });
      if (outcome.kind === 'crash') throw new EngineError('E_WORKER_CRASH', data.stage, data.key, outcome.error.message, { cause: outcome.error });
      if (outcome.kind !== 'ok') {
        const e = outcome.error as Error & { code?: unknown };
        throw new EngineError(typeof e.code === 'string' ? e.code : 'E_WORKER_ITEM', data.stage, data.key, e.message ?? String(e), { cause: e });
      }
      await staging.commit();
      committed = true;
      return { host, pid: proc.pid, count: staging.count, tiles: progress.tiles, seconds: (performance.now() - t0) / 1000 };
    } finally {
      this.pool.release(proc);
      if (!committed) await staging.discard();
    }
  }
}

/** The job's attempt now, counting the ones cut short by a lost machine (stalled: BullMQ counts them as started, not made). */
function attemptOf(job: Job<ItemJob, ItemJobResult>): number {
  return Math.max(job.attemptsStarted ?? 0, job.attemptsMade + 1);
}
