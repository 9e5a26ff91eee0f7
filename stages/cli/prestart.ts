/**
 * A job's first worker process, started by graph.js before it loads the pipeline. This module imports only what
 * the decision needs (the option parser and the engine's process pool), not sharp or onnxruntime: the parent's
 * own module loading (~0.2 s) then overlaps the worker's start-up on another core instead of preceding it.
 */
import { prestartWorkers } from '../../engine/worker-proc.js';
import { parseRunOptions, UsageError } from './options.js';

/** The sub-commands of `node graph.js` (main.ts dispatches them); anything else is a job. */
export const SUBCOMMANDS: readonly string[] = ['split', 'inspect', 'models', 'worker'];

/**
 * Prestarts one worker for `workerModule` if `argv` runs a job: not for a sub-command, --help or a usage error
 * (main reports those). main() then prestarts the rest; its stopPrestarted() kills the worker if the job ends first.
 */
export function prestartFirstWorker(argv: readonly string[], workerModule: string): boolean {
  if (argv[0] !== undefined && SUBCOMMANDS.includes(argv[0])) return false;
  try {
    const opts = parseRunOptions(argv);
    if (opts === 'help' || opts.workers === 0) return false; // --queue --workers 0: no local worker
  } catch (err) {
    if (err instanceof UsageError) return false; // main() parses the options again and reports it
    throw err;
  }
  prestartWorkers(1, workerModule);
  return true;
}
