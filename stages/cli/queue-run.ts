/**
 * The main job as a queue coordinator (`--queue`): Redis checked before any work (exit 2), every model copied into
 * the run's work folder (shared storage: each machine loads the same bytes, checked by sha256), the fan-out's items
 * run through a QueueRunner, and with --workers N > 0 this machine also serves the queue with N local processes
 * (the same QueueWorker as `node graph.js worker`).
 */
import { copyFile, mkdir, rename, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { checkReachable, queueConnection, type QueueConnection } from '../../engine/queue/connection.js';
import { QueueRunner } from '../../engine/queue/coordinator.js';
import type { QueueCounts } from '../../engine/queue/counts.js';
import { RootGuard } from '../../engine/queue/roots.js';
import { QueueWorker } from '../../engine/queue/worker.js';
import type { QueueOptions } from './queue-options.js';
import { slideWorkerParts } from './queue-items.js';

/** Parses the URL, finds the password and pings Redis: E_QUEUE_URL / E_QUEUE_UNREACHABLE (exit 2) before any work. */
export async function openQueue(q: QueueOptions): Promise<QueueConnection> {
  const connection = await queueConnection(q.url, { ...(q.passwordFile !== undefined && { passwordFile: q.passwordFile }) });
  await checkReachable(connection);
  return connection;
}

/**
 * `file` as the run's copy in `<workDir>/models/` (named by kind and hash; copied once, tmp + rename): the path every
 * machine loads. A file already in the work folder is used where it is.
 */
export async function modelInWorkDir(file: string, kind: string, sha256: string, workDir: string): Promise<string> {
  const dir = resolve(workDir, 'models');
  if (resolve(file).startsWith(dir + sep)) return resolve(file);
  const copy = join(dir, `${kind}-${sha256.slice(0, 16)}.onnx`);
  const there = await stat(copy).catch(() => undefined);
  if (there?.isFile() === true && there.size === (await stat(file)).size) return copy;
  await mkdir(dir, { recursive: true });
  const tmp = `${copy}.${process.pid}.tmp`;
  await copyFile(file, tmp);
  await rename(tmp, copy);
  return copy;
}

export interface QueueRunParts {
  readonly connection: QueueConnection;
  readonly queue: QueueOptions;
  /** sha256 of each model file the slide config names, by path. */
  readonly sha256: Readonly<Record<string, string>>;
  /** Local worker processes serving the queue (0: coordinate only). */
  readonly workers: number;
  /** Crash retries per slide (attempts = retries + 1). */
  readonly retries: number;
  readonly tileBudget: number;
  readonly slidesDir: string;
  readonly workDir: string;
  readonly workerModule: string;
  readonly lutCacheDir: string;
  readonly log: (line: string) => void;
  /** This run's jobs as the queue counts them, every refresh (the progress display's overall bar). */
  readonly onCounts?: (counts: QueueCounts) => void;
}

export interface QueueRun {
  readonly runner: QueueRunner;
  /**
   * Stops the local workers: once the run is over, after the jobs they hold (of another run on the same queue);
   * `now` (the run was interrupted): those go back to the queue at once.
   */
  stop(now: boolean): Promise<void>;
}

/** The runner for the graph, and this machine's own workers when --workers > 0 (started now). */
export async function startQueueRun(p: QueueRunParts): Promise<QueueRun> {
  const runner = new QueueRunner({ connection: p.connection, queueName: p.queue.name, sha256: p.sha256, attempts: p.retries + 1, log: p.log, ...(p.onCounts !== undefined && { onCounts: p.onCounts }) });
  if (p.workers === 0) return { runner, stop: async () => undefined };
  const roots = await RootGuard.open(p.queue.roots.length > 0 ? p.queue.roots : [p.slidesDir, p.workDir]);
  const worker = new QueueWorker({
    connection: p.connection,
    roots,
    queueName: p.queue.name,
    processes: p.workers,
    tileLimit: Math.max(1, Math.floor(p.tileBudget / p.workers)),
    moduleUrl: p.workerModule,
    lockMs: p.queue.lockMs,
    stalledMs: p.queue.stalledMs,
    log: p.log,
    ...slideWorkerParts(p.workers, p.lutCacheDir),
  });
  await worker.start();
  return { runner, stop: (now) => worker.stop(now) };
}
