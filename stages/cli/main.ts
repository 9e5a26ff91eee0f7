/**
 * `node graph.js ...`: dispatches the sub-commands (split, inspect, models build) and the main job (job.ts),
 * and turns errors that mean "bad input, nothing was done" into exit code 2. Exit codes: 0 every slide
 * succeeded; 1 finished, some slides failed; 2 usage or CSV error, before any work; 130 / 143 stopped by
 * SIGINT / SIGTERM (the shell's 128 + signal number).
 */
import { stopPrestarted } from '../../engine/index.js';
import { UsageError } from './options.js';
import { runJob, type MainDeps } from './job.js';
import { modelsBuild } from './models-build.js';
import { split } from './split.js';
import { inspect } from './inspect.js';
import { workerCommand } from './worker.js';

export type { MainDeps } from './job.js';

/** Errors that mean "bad input, nothing was done": exit code 2 (E_LOCKED: another run holds --out or the work folder). */
function isUsageError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  // E_OUTPUT_IO, E_DATASET_SWAP: only from openDataset, before any slide (the job catches them afterwards).
  return code === 'E_USAGE' || code === 'E_CSV' || code === 'E_WEIGHTS' || code === 'E_MODEL' || code === 'E_LOCKED' || code === 'E_LOCK' || code === 'E_OUTPUT_IO' || code === 'E_DATASET_SWAP' || isQueueStartError(code);
}
/** The queue's errors before any work (engine/queue/): a bad URL or --root, Redis unreachable or too old. */
function isQueueStartError(code: unknown): boolean {
  return code === 'E_QUEUE_URL' || code === 'E_QUEUE_UNREACHABLE' || code === 'E_QUEUE_REDIS' || code === 'E_QUEUE_ROOT';
}

export async function main(argv: readonly string[], deps: MainDeps): Promise<number> {
  const [command, ...rest] = argv;
  try {
    // The sub-commands; prestart.ts's SUBCOMMANDS lists the same names (graph.js forks no worker for them).
    if (command === 'split') {
      await split(rest, { log: (l) => console.log(l), warn: (l) => console.error(l) });
      return 0;
    }
    if (command === 'inspect') return await inspect(rest);
    if (command === 'worker') return await workerCommand(rest, deps.workerModule);
    if (command === 'models') {
      if (rest[0] !== 'build') throw new UsageError(`unknown models command "${rest[0] ?? ''}" (expected: models build)`);
      return await modelsBuild(rest.slice(1));
    }
    return await runJob(argv, deps);
  } catch (err) {
    if (isUsageError(err)) {
      console.error(`error: ${(err as Error).message}`);
      if ((err as { code?: string }).code === 'E_USAGE') console.error('Run `node graph.js --help` for the options.');
      return 2;
    }
    throw err;
  } finally {
    stopPrestarted(); // any the run did not take (it failed before its workers started, or needed fewer)
  }
}

