/**
 * One "machine" of the control-plane bench (bench/queue-control.ts): a QueueWorker (engine/queue/worker.ts, the code
 * `node graph.js worker` runs) serving the tiny items of bench/queue-tiny.ts with `processes` local processes.
 * argv: URL ROOT PROCESSES. Prints `ready` once connected; SIGTERM finishes the jobs in hand and exits.
 */
import { queueConnection } from '../engine/queue/connection.js';
import { RootGuard } from '../engine/queue/roots.js';
import { QueueWorker } from '../engine/queue/worker.js';

const [url, root, processes] = process.argv.slice(2);
if (url === undefined || root === undefined || processes === undefined) throw new Error('usage: queue-control-worker URL ROOT PROCESSES');
const worker = new QueueWorker({
  connection: await queueConnection(url),
  roots: await RootGuard.open([root]),
  processes: Number(processes),
  tileLimit: 64,
  moduleUrl: new URL('./queue-tiny.js', import.meta.url).href,
  exportNames: ['tinyItem'],
  paths: async () => ({ reads: [], models: [] }),
  localConfig: (job) => job.config,
  lockMs: 30_000,
  stalledMs: 30_000,
  log: (line) => console.error(`[worker ${process.pid}] ${line}`),
});
await worker.start();
console.log('ready');
process.once('SIGTERM', () => {
  void worker.stop().then(() => process.exit(0));
});
