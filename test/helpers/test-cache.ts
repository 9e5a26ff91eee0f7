/**
 * The cache folder the tests' CLI runs share (WSI_CACHE_DIR): one per tap run, named for the tap runner's pid (every
 * test file is a child of it). What the CLI caches is deterministic (the demo slides and models) or keyed by content
 * (the lookup table by the model's sha256, int8 copies by their inputs), so a run's test files can share it: the
 * demo models and the 48 MB lookup table are built once per run instead of once per file. Tests of the cache itself
 * keep their own (startCli's `ownCache`). Removed after the run by test/helpers/test-cache-cleanup.ts (tap's
 * `after`); a folder left by a run that died (its runner gone) is removed by the next run's first e2e file.
 */
import { readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PREFIX = 'wsi-test-cache-';

/** The folder of the tap run whose runner is `runnerPid`. */
export function testCacheFor(runnerPid: number): string {
  return join(tmpdir(), `${PREFIX}${runnerPid}`);
}

/** This run's shared cache folder. */
export const TEST_CACHE = testCacheFor(process.ppid);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, another user's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes the folders of runs whose runner is gone. */
export function pruneDeadRunCaches(): void {
  for (const name of readdirSync(tmpdir())) {
    const m = new RegExp(`^${PREFIX}(\\d+)$`).exec(name);
    if (m !== null && !alive(Number(m[1]))) rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}
