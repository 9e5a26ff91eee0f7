/**
 * The queue flags, shared by the main job (`--queue` makes it a coordinator) and `node graph.js worker`: where Redis
 * is, where its password comes from, the queue's name, the lock and stalled-check periods (together the bound on how
 * long a dead machine's slides wait before another machine redoes them) and the --root folders.
 */
import { resolve } from 'node:path';
import { QUEUE_NAME } from '../../engine/queue/job-data.js';
import { UsageError } from './usage-error.js';

export interface QueueOptions {
  /** redis://[:password@]host:port[/db] or rediss://... (may hold the password: never print it, see engine/queue/connection.ts). */
  readonly url: string;
  readonly passwordFile?: string;
  readonly name: string;
  /** BullMQ's lockDuration: a job whose worker has not renewed its lock for this long is stalled. */
  readonly lockMs: number;
  /** BullMQ's stalledInterval: how often workers look for stalled jobs. */
  readonly stalledMs: number;
  /** Folders a worker may read and write (resolved). */
  readonly roots: readonly string[];
}

/** parseArgs' entries for the queue flags. */
export const QUEUE_FLAGS = {
  queue: { type: 'string' },
  'queue-password-file': { type: 'string' },
  'queue-name': { type: 'string' },
  'queue-lock-ms': { type: 'string' },
  'queue-stalled-ms': { type: 'string' },
  root: { type: 'string', multiple: true },
} as const;

export interface QueueFlagValues {
  readonly queue?: string;
  readonly 'queue-password-file'?: string;
  readonly 'queue-name'?: string;
  readonly 'queue-lock-ms'?: string;
  readonly 'queue-stalled-ms'?: string;
  readonly root?: string[];
}

/** Default lock duration and stalled-check interval (ms): a dead machine's slides are redone within about a minute. */
export const LOCK_MS = 30_000;
export const STALLED_MS = 30_000;

export const QUEUE_HELP = `Many machines (BullMQ on Redis >= 6.2; README "Many machines"):
  --queue URL                redis://[:password@]host:6379[/db] or rediss://...: run the slides through this queue;
                             the coordinator (this command) enqueues one job per slide, replays the checkpoints the
                             workers write and writes the dataset; with --workers 0 it only coordinates
  --queue-password-file FILE the Redis password (first line); else the URL's, else $REDIS_PASSWORD (never printed)
  --queue-name NAME          the queue (${QUEUE_NAME}); machines serving another group of runs use another name
  --queue-lock-ms N          a job's lock, renewed by its worker every N/2 ms (${LOCK_MS})
  --queue-stalled-ms N       how often workers look for stalled jobs (${STALLED_MS}); a dead or cut-off machine's
                             slides are redone elsewhere within about --queue-lock-ms + --queue-stalled-ms
  --root DIR                 (repeatable) folders a worker may read and write: a job naming a slide, model or
                             checkpoint folder outside them fails (E_QUEUE_PATH); the coordinator's own workers
                             default to the slides folder and the work folder

  node graph.js worker --queue URL --root DIR [--root DIR2] [--workers N] [--tile-budget N] [--lut-cache DIR]
                             serve the queue's slide jobs with N local worker processes (cores); SIGTERM: finish
                             the slides in hand, then exit; a second SIGTERM: stop now (the slides go back to the queue)
`;

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer, got "${value}"`);
  return n;
}

/** The queue options, or undefined without --queue (E_USAGE for a queue flag without it). */
export function queueOptions(v: QueueFlagValues): QueueOptions | undefined {
  if (v.queue === undefined) {
    const stray = (['queue-password-file', 'queue-name', 'queue-lock-ms', 'queue-stalled-ms', 'root'] as const).find((k) => v[k] !== undefined);
    if (stray !== undefined) throw new UsageError(`--${stray} needs --queue`);
    return undefined;
  }
  const name = v['queue-name'] ?? QUEUE_NAME;
  if (!/^[\w.-]{1,100}$/.test(name)) throw new UsageError(`--queue-name must be letters, digits, '.', '_' or '-', got "${name}"`);
  return {
    url: v.queue,
    ...(v['queue-password-file'] !== undefined && { passwordFile: resolve(v['queue-password-file']) }),
    name,
    lockMs: positive('queue-lock-ms', v['queue-lock-ms'], LOCK_MS),
    stalledMs: positive('queue-stalled-ms', v['queue-stalled-ms'], STALLED_MS),
    roots: (v.root ?? []).map((r) => resolve(r)),
  };
}
