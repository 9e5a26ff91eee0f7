/**
 * The dataset in `--out` is replaced only as a whole, and only by a finished run. The commit protocol:
 *
 *   1. Staging. A run writes its shards and report into `<out>/.staging-<runid>/` (inside `<out>`, hence on
 *      the same file system: the renames below stay atomic), every file fsynced. `<runid>` is
 *      `<random>-<pid>-<host>`, so a later run can tell a dead run's leftovers from a live one's.
 *   2. Manifest. `manifest.json` (every file with its size and sha256, see manifest.ts) is written into the
 *      staging folder last; the staging folder is fsynced.
 *   3. Commit point. The journal `<out>/.dataset-commit.json` (the staging folder's name, the files to move
 *      in with the manifest last, the old dataset's files to remove; names relative to `<out>`, so that any
 *      machine mounting the folder anywhere can read it) is written as `.dataset-commit.json.tmp-<runid>`,
 *      fsynced, and renamed into place: that one rename is the commit. Before it, the old dataset is whole
 *      and the staging folder is garbage; after it, the new dataset is decided.
 *   4. Swap (rollForward), each step idempotent: remove the old `manifest.json` (only while the new one is
 *      still staged), remove the old dataset's other files, rename each staged file over its final name (a
 *      folder, the report's `report-files/`, moves as a whole: the old folder of that name is removed first),
 *      fsync, rename the manifest last, fsync, remove the staging folder, remove the journal.
 *
 * So at every instant `<out>` holds either the old dataset with its manifest, or the new one with its
 * manifest, or (inside step 4) no manifest and a journal saying how to finish. A run killed anywhere (SIGKILL,
 * power loss) is repaired by the next run's `recover`, before it does anything else: a journal is rolled
 * forward (step 4 again, from wherever it stopped), then the staging folders and journal temporaries of
 * dead runs on this host are removed. `inspect` reports a pending journal as a problem.
 *
 * On a shared network file system (NFS): rename and unlink are single server operations, atomic for every
 * client; nothing relies on locks, hard links or mtimes. A rename whose reply is lost and is retransmitted can
 * answer ENOENT although it was done: each rename here checks its target before treating ENOENT as an error.
 * Files are fsynced before they are renamed (close-to-open consistency then gives other clients whole files),
 * and the journal is found by opening it by name (an open revalidates the folder), never from a cached listing.
 * Leftovers of a run on another host are left for a run on that host (or for removal by hand): a run cannot
 * tell whether a process on another machine is still alive. Two runs into one `<out>` at once are kept apart
 * by the run lock (engine/lock.ts), not by this protocol.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { naming, outputError, readTextIfThere, syncDir, unlinkIfThere, writeDurable, writeSynced } from './io.js';
import { MANIFEST, readManifest, type Manifest } from './manifest.js';
import { shardPattern } from '../write-tfrecords.js';

/** The journal: its presence after the rename is the commit point. */
export const JOURNAL = '.dataset-commit.json';
const STAGING = '.staging-';
/** The shard prefix the pipeline writes: stale shards of an older dataset (without a manifest) match it. */
const PREFIX = 'data';

/** A run's staging folder inside `outDir`. */
export interface Staging {
  readonly outDir: string;
  readonly dir: string;
  readonly runId: string;
}

/** What the journal records (names relative to outDir). */
export interface Journal {
  readonly format: 1;
  readonly run_id: string;
  /** The staging folder's name inside outDir. */
  readonly staging: string;
  /** Staged files to move in, `manifest.json` last. */
  readonly files: readonly string[];
  /** Files of the old dataset that the new one does not replace. */
  readonly remove: readonly string[];
}

/** One idempotent step of the swap. */
export interface SwapStep {
  readonly what: string;
  run(): Promise<void>;
}

function swapError(message: string): Error {
  return Object.assign(new Error(`E_DATASET_SWAP: ${message}`), { code: 'E_DATASET_SWAP' });
}

/** A new run id: `<random>-<pid>-<host>`. */
export function newRunId(): string {
  return `${randomBytes(4).toString('hex')}-${process.pid}-${hostname()}`;
}

/** Creates this run's staging folder (recover first). */
export async function openStaging(outDir: string, runId: string = newRunId()): Promise<Staging> {
  const dir = join(outDir, `${STAGING}${runId}`);
  await naming('create', dir, () => mkdir(dir, { recursive: true }));
  return { outDir, dir, runId };
}

/** Removes a staging folder that will not be committed. */
export async function discardStaging(staging: Staging): Promise<void> {
  await naming('remove', staging.dir, () => rm(staging.dir, { recursive: true, force: true }));
}

/**
 * Steps 2 and 3: writes the manifest into the staging folder (last), then the journal, whose rename is the
 * commit point. Returns the journal; the swap (rollForward) is still to do.
 */
export async function prepareCommit(staging: Staging, manifest: Manifest): Promise<Journal> {
  const { outDir, dir, runId } = staging;
  await writeDurable(join(dir, MANIFEST), JSON.stringify(manifest, null, 2) + '\n', runId);
  await syncDir(dir);
  const staged = (await naming('list', dir, () => readdir(dir))).filter((n) => !n.startsWith('.') && n !== MANIFEST).sort();
  const files = [...staged, MANIFEST];
  // Another run's commit not yet swapped in (killed inside its swap): finish it first, never overwrite its journal.
  await recoverJournal(outDir);
  const keep = new Set(files);
  const remove = (await oldDatasetFiles(outDir)).filter((f) => !keep.has(f));
  const journal: Journal = { format: 1, run_id: runId, staging: basename(dir), files, remove };
  const tmp = join(outDir, `${JOURNAL}.tmp-${runId}`);
  await writeSynced(tmp, JSON.stringify(journal, null, 2) + '\n');
  await renameCommitPoint(tmp, outDir, runId);
  return journal;
}

/**
 * Commits a staging folder whose files are complete: prepareCommit, then the swap. Returns once the new
 * dataset is in place. An error after the commit point carries `committed: true` (the next run finishes the swap).
 */
export async function commitStaging(staging: Staging, manifest: Manifest): Promise<void> {
  const journal = await prepareCommit(staging, manifest);
  try {
    await syncDir(staging.outDir);
    await rollForward(staging.outDir, journal);
  } catch (err) {
    throw Object.assign(err as Error, { committed: true });
  }
}

/** The commit point: the journal's rename. A retransmitted NFS rename may answer ENOENT although it was done. */
async function renameCommitPoint(tmp: string, outDir: string, runId: string): Promise<void> {
  const target = join(outDir, JOURNAL);
  await naming('commit', target, async () => {
    try {
      await rename(tmp, target);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || (await readJournal(outDir))?.run_id !== runId) throw err;
    }
  });
}

/** The files of the dataset now in outDir: its manifest's files, and any shard (a dataset from before manifests). */
async function oldDatasetFiles(outDir: string): Promise<string[]> {
  const names = new Set<string>();
  // An unreadable old manifest only costs its list: the shards are still found by name below.
  const old = await readManifest(outDir).catch((err: { code?: string }) => {
    if (err.code === 'E_MANIFEST_INVALID') return undefined;
    throw err;
  });
  // A file in a folder (report-files/x.jpg) goes with its folder: the swap moves and removes top-level names.
  for (const f of [...(old?.shards ?? []), ...(old?.files ?? [])]) names.add(f.file.split('/')[0]!);
  const pattern = shardPattern(PREFIX);
  for (const n of await naming('list', outDir, () => readdir(outDir))) if (pattern.test(n)) names.add(n);
  names.delete(MANIFEST);
  return [...names].sort();
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

async function isFolder(path: string): Promise<boolean> {
  return stat(path).then(
    (st) => st.isDirectory(),
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

/** Removes a file or a folder of the old dataset; nothing there (a step done before a kill): nothing to do. */
async function removeOld(path: string): Promise<void> {
  await naming('remove', path, () => rm(path, { recursive: true, force: true }));
}

/**
 * A staged folder (report-files/) cannot be renamed over the old folder of that name: the old one goes first,
 * while the new one is still staged (once moved in, the folder in outDir is the new one and stays). A staged
 * file: nothing to do (a folder in its way is not removed: the move in fails, naming it).
 */
async function clearFolderFor(outDir: string, stagingDir: string, name: string): Promise<void> {
  const to = join(outDir, name);
  if ((await isFolder(join(stagingDir, name))) && (await isFolder(to))) await removeOld(to);
}

/** Renames staged `name` over its final name; already moved (a step done before a kill): nothing to do. */
async function moveIn(outDir: string, stagingDir: string, name: string): Promise<void> {
  const from = join(stagingDir, name);
  const to = join(outDir, name);
  await naming('move in', to, async () => {
    try {
      await rename(from, to);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (!(await exists(to))) throw swapError(`${join(outDir, JOURNAL)} names ${name}, which is neither in ${stagingDir} nor in ${outDir}`);
    }
  });
}

/** The swap's steps, in order; each may run again after a kill, any number of times. */
export function swapSteps(outDir: string, journal: Journal): SwapStep[] {
  const stagingDir = join(outDir, journal.staging);
  const steps: SwapStep[] = [];
  steps.push({
    what: `remove the old ${MANIFEST}`,
    // Only while the new manifest is still staged: once moved in, the manifest in outDir is the new one.
    run: async () => void ((await exists(join(stagingDir, MANIFEST))) && (await unlinkIfThere(join(outDir, MANIFEST)))),
  });
  for (const name of journal.remove) steps.push({ what: `remove ${name}`, run: () => removeOld(join(outDir, name)) });
  for (const name of journal.files) {
    if (name === MANIFEST) continue;
    steps.push({ what: `clear the way for ${name} (an old folder of that name)`, run: () => clearFolderFor(outDir, stagingDir, name) });
    steps.push({ what: `move in ${name}`, run: () => moveIn(outDir, stagingDir, name) });
  }
  steps.push({ what: 'sync', run: () => syncDir(outDir) });
  steps.push({ what: `move in ${MANIFEST}`, run: () => moveIn(outDir, stagingDir, MANIFEST) });
  steps.push({ what: 'sync', run: () => syncDir(outDir) });
  steps.push({ what: `remove ${journal.staging}`, run: () => naming('remove', stagingDir, () => rm(stagingDir, { recursive: true, force: true })) });
  steps.push({ what: `remove ${JOURNAL}`, run: async () => void (await unlinkIfThere(join(outDir, JOURNAL))) });
  steps.push({ what: 'sync', run: () => syncDir(outDir) });
  return steps;
}

/** Step 4 of the protocol: all of the swap's steps. */
export async function rollForward(outDir: string, journal: Journal): Promise<void> {
  for (const step of swapSteps(outDir, journal)) await step.run();
}

/** The pending journal in outDir, if any. */
export async function readJournal(outDir: string): Promise<Journal | undefined> {
  const path = join(outDir, JOURNAL);
  const text = await readTextIfThere(path).catch((err: unknown) => {
    throw outputError(err, 'read', path);
  });
  if (text === undefined) return undefined;
  let j: Journal;
  try {
    j = JSON.parse(text) as Journal;
  } catch {
    throw swapError(`${path} is not valid JSON`);
  }
  const safe = (n: unknown): boolean => typeof n === 'string' && n.length > 0 && !n.includes('/') && !n.includes('\\') && n !== '.' && n !== '..';
  if (j.format !== 1 || !safe(j.staging) || !j.staging.startsWith(STAGING) || !Array.isArray(j.files) || !Array.isArray(j.remove) || ![...j.files, ...j.remove].every(safe) || j.files.at(-1) !== MANIFEST) {
    throw swapError(`${path} is not a journal this version can roll forward`);
  }
  return j;
}

/** Rolls a pending journal forward; returns its run id, or undefined when there was none. */
async function recoverJournal(outDir: string): Promise<string | undefined> {
  const journal = await readJournal(outDir);
  if (journal === undefined) return undefined;
  await rollForward(outDir, journal);
  return journal.run_id;
}

/** True when `runId` names a process of this host that is gone. */
function deadLocalRun(runId: string): boolean {
  const m = /^[0-9a-f]{8}-(\d+)-(.+)$/.exec(runId);
  if (m === null || m[2] !== hostname()) return false;
  const pid = Number(m[1]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

export interface Recovered {
  /** The run whose commit was finished here. */
  readonly rolledForward: string | undefined;
  /** Staging folders and journal temporaries of dead runs, removed. */
  readonly removed: readonly string[];
}

/** Before a run: finishes an interrupted swap, then removes dead local runs' staging folders and journal temporaries. */
export async function recover(outDir: string): Promise<Recovered> {
  const rolledForward = await recoverJournal(outDir);
  const removed: string[] = [];
  const tmpPrefix = `${JOURNAL}.tmp-`;
  for (const name of await naming('list', outDir, () => readdir(outDir))) {
    const runId = name.startsWith(STAGING) ? name.slice(STAGING.length) : name.startsWith(tmpPrefix) ? name.slice(tmpPrefix.length) : undefined;
    if (runId === undefined || !deadLocalRun(runId)) continue;
    const path = join(outDir, name);
    await naming('remove', path, () => rm(path, { recursive: true, force: true }));
    removed.push(name);
  }
  return { rolledForward, removed };
}
