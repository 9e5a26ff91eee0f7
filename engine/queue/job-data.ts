/**
 * What crosses Redis for one fan-out item: paths, parameters and model hashes (never tiles or embeddings), the
 * summary a worker completes a job with, its progress, the job id (derived from the checkpoint, so adding the same
 * item twice is one job) and how an error's code survives BullMQ's failedReason (a string).
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import type { Queue } from 'bullmq';

/** The default queue (a worker takes jobs of any run on its queue; --queue-name separates groups of machines). */
export const QUEUE_NAME = 'wsi-items';
/** Key prefix in Redis. */
export const QUEUE_PREFIX = 'wsi';
/** Version of ItemJob; a worker refuses another (E_QUEUE_JOB). */
export const JOB_VERSION = 1;

export interface ItemJob {
  readonly v: number;
  /** The fan-out stage's name (for errors) and the export the worker's module runs. */
  readonly stage: string;
  readonly exportName: string;
  /** The export's config (v8-serializable plain data; travels as JSON). */
  readonly config: unknown;
  readonly item: unknown;
  readonly key: string;
  readonly checkpointKey: string;
  /** Where the committed result goes (shared storage; under the worker's --root). */
  readonly checkpointDir: string;
  /** sha256 of every file the config names that the worker must check (models), by path. */
  readonly sha256: Readonly<Record<string, string>>;
}

/** A completed job's return value. */
export interface ItemJobResult {
  readonly host: string;
  readonly pid: number;
  /** Results committed (elements of the checkpoint). */
  readonly count: number;
  readonly tiles: number;
  readonly seconds: number;
}

/** A running job's progress (job.updateProgress). */
export interface ItemJobProgress {
  readonly host: string;
  /** The worker process running the attempt; absent in the first report, sent as the job is taken (before its checks). */
  readonly pid?: number;
  readonly attempt: number;
  readonly tiles: number;
  readonly total?: number;
}

/** The job id of an item: the same checkpoint (folder and key) is the same job, whichever coordinator adds it. */
export function itemJobId(checkpointDir: string, checkpointKey: string): string {
  return createHash('sha256').update(`${resolve(checkpointDir)}\0${checkpointKey}`).digest('hex').slice(0, 40);
}

/** An error's text for BullMQ's failedReason: `E_CODE: message`, so the coordinator gets the code back. */
export function reasonOf(code: string, message: string): string {
  return `${code}: ${message}`;
}

/** The code and message of a failedReason written by reasonOf (or `fallback` for BullMQ's own, e.g. a stalled job). */
export function parseReason(reason: string, fallback: string): { code: string; message: string } {
  const m = /^(E_[A-Z0-9_]+): ([\s\S]*)$/.exec(reason);
  if (m !== null) return { code: m[1]!, message: m[2]! };
  return { code: /stalled/i.test(reason) ? 'E_QUEUE_STALLED' : fallback, message: reason };
}

/** The queue of item jobs, typed. */
export type ItemQueue = Queue<ItemJob, ItemJobResult, string, ItemJob, ItemJobResult, string>;
