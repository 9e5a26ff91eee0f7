/**
 * The main job's run lock (engine/lock.ts) on its output folder and on its work folder, for the job's whole life:
 * a second run into either is refused with exit code 2 (E_LOCKED, naming the holder), a stale lock is taken over
 * with a message. `split`, `inspect` and `models build` do not lock.
 */
import { join, resolve } from 'node:path';
import { RunLock } from '../../engine/lock.js';
import { redactArgs } from '../../engine/queue/connection.js';
import type { RunOptions } from './options.js';

/** What runJob holds while it runs; `release()` in its finally. */
export interface RunLockHandle {
  release(): Promise<void>;
}

/** Locks `--out` and the work folder (`--work-dir`, default `<out>/.work`, as readInputs has it), creating them. */
export async function lockRun(opts: RunOptions): Promise<RunLockHandle> {
  const out = resolve(opts.out);
  const work = resolve(opts.workDir ?? join(opts.out, '.work'));
  // The command is recorded in the lock (and told to a second run): without the Redis password of --queue.
  const argv = redactArgs(process.argv);
  const locks = [await RunLock.acquire(out, { what: 'output folder (--out)', argv })];
  try {
    if (work !== out) locks.push(await RunLock.acquire(work, { what: 'work folder (--work-dir)', argv }));
  } catch (err) {
    await locks[0]!.release();
    throw err;
  }
  return {
    async release(): Promise<void> {
      for (const lock of locks.reverse()) {
        // The run's outcome stands: a lock that cannot be removed is told, and is taken over as a stale one later.
        await lock.release().catch((err: unknown) => console.error(`warning: could not release the lock ${lock.path}: ${(err as Error).message}`));
      }
    },
  };
}
