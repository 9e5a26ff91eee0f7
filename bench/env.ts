/**
 * The suite's two environments. The stages are measured in the suite's process (and in its stage-cost and
 * no-engine children), so it runs under the allocator settings the workers start with (engine/allocator.ts):
 * without them every stage would cost more here than in a worker. The suite re-runs itself once with them; the
 * jobs it starts get the user's environment back, so that a job's parent runs as a user's does and forks its
 * workers with the settings itself.
 */
import { spawnSync } from 'node:child_process';
import { workerEnv } from '../engine/allocator.js';

const USER_TUNABLES = 'BENCH_USER_GLIBC_TUNABLES';

/** Re-runs this process under the workers' allocator settings and exits with its status, unless it already is that run. */
export function runUnderWorkerAllocator(): void {
  if (process.env[USER_TUNABLES] !== undefined) return;
  const again = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...workerEnv(), [USER_TUNABLES]: process.env.GLIBC_TUNABLES ?? '' },
  });
  process.exit(again.status ?? 1);
}

/** The environment the suite was started with (for the jobs). */
export function userEnv(): NodeJS.ProcessEnv {
  const { [USER_TUNABLES]: tunables, GLIBC_TUNABLES: _ours, ...rest } = process.env;
  return tunables ? { ...rest, GLIBC_TUNABLES: tunables } : rest;
}
