/**
 * `node graph.js worker --queue URL --root DIR [--root DIR2] [--workers N] [--tile-budget N] [--lut-cache DIR]`: this
 * machine serves the queue's slide jobs (of any run) with N local worker processes until SIGTERM / SIGINT: the first
 * signal finishes the slides in hand and exits (0), a second stops at once (the slides go back to the queue; 143/130).
 * Redis unreachable at start, or a --root that does not exist: exit 2 before any work.
 */
import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { checkReachable, queueConnection } from '../../engine/queue/connection.js';
import { RootGuard } from '../../engine/queue/roots.js';
import { QueueWorker } from '../../engine/queue/worker.js';
import { QUEUE_FLAGS, QUEUE_HELP, queueOptions } from './queue-options.js';
import { slideWorkerParts } from './queue-items.js';
import { UsageError } from './usage-error.js';

function positive(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer, got "${value}"`);
  return n;
}

/** Runs the worker command; resolves with its exit code once it has stopped. */
export async function workerCommand(argv: readonly string[], workerModule: string): Promise<number> {
  let values;
  try {
    values = parseArgs({ args: [...argv], allowPositionals: false, strict: true, options: { ...QUEUE_FLAGS, workers: { type: 'string' }, 'tile-budget': { type: 'string' }, 'lut-cache': { type: 'string' }, help: { type: 'boolean', short: 'h' } } }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) {
    console.log(QUEUE_HELP);
    return 0;
  }
  const q = queueOptions(values);
  if (q === undefined) throw new UsageError('worker needs --queue redis://host:port');
  if (q.roots.length === 0) throw new UsageError('worker needs at least one --root DIR (the shared storage it may read and write)');
  const processes = positive('workers', values.workers, availableParallelism());
  const tileBudget = positive('tile-budget', values['tile-budget'], 256);
  const connection = await queueConnection(q.url, { ...(q.passwordFile !== undefined && { passwordFile: q.passwordFile }) });
  const roots = await RootGuard.open(q.roots);
  await checkReachable(connection);
  const log = (line: string): void => console.error(`[${new Date().toISOString()}] ${line}`);
  const worker = new QueueWorker({
    connection,
    roots,
    queueName: q.name,
    processes,
    tileLimit: Math.max(1, Math.floor(tileBudget / processes)),
    moduleUrl: workerModule,
    lockMs: q.lockMs,
    stalledMs: q.stalledMs,
    log,
    ...slideWorkerParts(processes, values['lut-cache'] === undefined ? undefined : resolve(values['lut-cache'])),
  });
  let signals = 0;
  let stoppedBy: NodeJS.Signals | undefined;
  let stopped: Promise<void> | undefined;
  let onSignal: (sig: NodeJS.Signals) => void = () => undefined;
  const done = new Promise<void>((resolveDone) => {
    onSignal = (sig: NodeJS.Signals): void => {
      signals++;
      if (signals === 1) {
        log(`${sig}: finishing the ${worker.busy} slide(s) in hand, then exiting (again to stop now)`);
        stopped = worker.stop();
      } else {
        stoppedBy = sig;
        log(`${sig} again: stopping now; the slides in hand go back to the queue`);
        stopped = worker.stop(true);
      }
      void stopped.then(() => resolveDone());
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await worker.start();
  // The ready line (scripts and tests wait for it): connected, taking jobs.
  log(`worker: ready on ${connection.display} (queue ${q.name}, ${processes} processes, host ${hostname()}, roots ${roots.folders.join(', ')})`);
  try {
    await done;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
  log('worker stopped');
  return stoppedBy === undefined ? 0 : stoppedBy === 'SIGTERM' ? 143 : 130;
}
