/**
 * The coordinator's wait for its jobs: QueueEvents say when a job completed, failed or progressed, and a slow sweep
 * asks Redis for the state of the jobs still awaited (an event missed while Redis restarted is found within
 * `sweepMs`). A wait ends with the job's final state, `missing` when Redis no longer has it (lost in a restart), or
 * the caller's abort.
 */
import { Job, type QueueEvents } from 'bullmq';
import type { ItemJob, ItemJobProgress, ItemJobResult, ItemQueue } from './job-data.js';

export type Finished = { readonly state: 'completed' | 'failed'; readonly job: Job<ItemJob, ItemJobResult> } | { readonly state: 'missing' };

interface Waiter {
  readonly resolve: (f: Finished) => void;
  readonly onProgress: (p: ItemJobProgress) => void;
}

/** Jobs whose state one sweep asks for, at most (the rest wait for the next sweep). */
const SWEEP_BATCH = 500;

export class JobWaits {
  private readonly waiters = new Map<string, Waiter>();
  private readonly timer: NodeJS.Timeout;
  private sweeping = false;
  private cursor = 0;

  constructor(
    private readonly queue: ItemQueue,
    events: QueueEvents,
    sweepMs: number,
    private readonly onError: (err: Error) => void,
  ) {
    events.on('completed', ({ jobId }) => void this.settle(jobId));
    events.on('failed', ({ jobId }) => void this.settle(jobId));
    events.on('progress', ({ jobId, data }) => {
      if (typeof data === 'object' && data !== null) this.waiters.get(jobId)?.onProgress(data as ItemJobProgress);
    });
    this.timer = setInterval(() => void this.sweep(), sweepMs);
    this.timer.unref();
  }

  /** Until job `jobId` has finished (or is missing); `signal` aborts the wait (rejects with its reason). */
  wait(jobId: string, signal: AbortSignal, onProgress: (p: ItemJobProgress) => void): Promise<Finished> {
    return new Promise<Finished>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(jobId);
        reject(signal.reason);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.set(jobId, {
        resolve: (f) => {
          signal.removeEventListener('abort', onAbort);
          resolve(f);
        },
        onProgress,
      });
      void this.settle(jobId); // it may have finished before the wait began
    });
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Resolves the wait for `jobId` if the job is finished or gone. */
  private async settle(jobId: string): Promise<void> {
    if (!this.waiters.has(jobId)) return;
    try {
      const finished = await finishedState(this.queue, jobId);
      const w = this.waiters.get(jobId);
      if (finished === undefined || w === undefined) return;
      this.waiters.delete(jobId);
      w.resolve(finished);
    } catch (err) {
      this.onError(err as Error); // Redis away: the next event or sweep tries again
    }
  }

  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const ids = [...this.waiters.keys()];
      if (this.cursor >= ids.length) this.cursor = 0;
      const batch = ids.slice(this.cursor, this.cursor + SWEEP_BATCH);
      this.cursor += batch.length;
      for (const id of batch) await this.settle(id);
    } finally {
      this.sweeping = false;
    }
  }
}

/**
 * The job's final state, `missing` when Redis no longer has it, or undefined while it is not finished. Read from the
 * job's own hash (BullMQ sets `finishedOn` when a job completed or failed for good, in the script that moves it) and
 * one sorted-set lookup, not Queue.getJobState: that searches the wait list for every waiting job (LPOS, linear in the
 * queue's length; bench/queue-counts.ts measures both).
 */
export async function finishedState(queue: ItemQueue, jobId: string): Promise<Finished | undefined> {
  const job = await Job.fromId<ItemJob, ItemJobResult>(queue, jobId);
  if (job === undefined) return { state: 'missing' };
  if (job.finishedOn === undefined) return undefined; // waiting, active, delayed or to be retried
  if (await job.isCompleted()) return { state: 'completed', job };
  if (await job.isFailed()) return { state: 'failed', job };
  return undefined;
}
