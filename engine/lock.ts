/**
 * A run lock on a folder: one file `<dir>/.run.lock` holding JSON {pid, host, started_at, run_id, argv, boot_id,
 * proc_start}, present for as long as its run lives. Made to work for processes of one host and of several
 * hosts sharing the folder over NFS:
 * - Created atomically: the content is written to a private temporary file, then hard-linked to the lock's name
 *   (link fails with EEXIST when the name exists; atomic on local file systems and on every NFS version, and a
 *   lock never appears half-written). A link whose reply was lost on NFS is recognised by the link count.
 * - Heartbeat: the holder rewrites the same bytes every `refreshMs` (an unref'd timer), which sets the file's
 *   mtime; on NFS the server stamps it. Its age is measured against the mtime of a probe file created in the
 *   same folder, so clocks need not agree across hosts.
 * - Stale: on the holder's own host, at once when its pid is gone (`kill(pid, 0)` -> ESRCH), when the pid now
 *   belongs to another process (start time in /proc/PID/stat differs) or when the host has rebooted (boot_id);
 *   from another host, only when the heartbeat is older than `staleMs`.
 * - Takeover without a race: only the holder of the takeover mutex `<lock>.takeover` (made like the lock, held for
 *   milliseconds) may move a stale lock aside. Under it the contender reads the lock again and moves it only when
 *   it is still the very file judged stale (inode and bytes), renaming it to a name of its own and checking again.
 *   So a lock another contender linked meanwhile is never moved aside: each lock file is judged and removed by
 *   one contender at a time, and the link that follows has one winner. A mutex left by a contender that died in
 *   its takeover is stale by the same rules as a lock and moved aside the same way (the one remaining window: two
 *   contenders taking over a dead contender's mutex while a third takes over the lock).
 * - Released in `release()` (the caller's finally), on process exit, and on SIGINT / SIGTERM when no handler of
 *   the signal was added after the lock was taken (then the signal is raised again, so the process still ends by
 *   it). A SIGKILL leaves the file: that is the stale case.
 * - A holder whose file was removed or replaced (its heartbeat stalled past the timeout and another host took
 *   over) notices at its next heartbeat and says so on stderr; it does not stop its run.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { link, mkdir, open, rename, rmdir, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { dirname, join, resolve } from 'node:path';

/** The lock file's name inside the locked folder. */
export const LOCK_FILE = '.run.lock';

/** What a lock file says about its holder. */
export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  /** ISO time the lock was taken. */
  readonly started_at: string;
  readonly run_id: string;
  readonly argv: readonly string[];
  /** /proc/sys/kernel/random/boot_id of the holder's host, where there is one. */
  readonly boot_id?: string;
  /** Field 22 of /proc/PID/stat (start time in clock ticks since boot), where there is one: tells a reused pid. */
  readonly proc_start?: number;
}

export interface LockOptions {
  /** Another host's lock is stale when its heartbeat is older than this (30 s). */
  readonly staleMs?: number;
  /** The holder refreshes its heartbeat this often (5 s). */
  readonly refreshMs?: number;
  /** Where takeovers and a lost lock are told (stderr). */
  readonly log?: (line: string) => void;
  /** Recorded as the holder's command (process.argv). */
  readonly argv?: readonly string[];
  /** Names the folder in messages ("output folder"). */
  readonly what?: string;
  /** How long a contender waits for another live contender's takeover to end before E_LOCK (staleMs + 10 s). */
  readonly takeoverWaitMs?: number;
}

export type LockCode = 'E_LOCKED' | 'E_LOCK';

/** E_LOCKED: another live run holds the lock (`holder` says which). E_LOCK: the lock could not be made or read. */
export class LockError extends Error {
  readonly code: LockCode;
  readonly stage = 'RunLock';
  /** The lock file. */
  readonly key: string;
  readonly holder: LockHolder | undefined;

  constructor(code: LockCode, key: string, message: string, holder?: LockHolder, options?: { cause?: unknown }) {
    super(`${code}: ${message}`, options);
    this.name = 'LockError';
    this.code = code;
    this.key = key;
    this.holder = holder;
  }
}

export const DEFAULT_STALE_MS = 30_000;
export const DEFAULT_REFRESH_MS = 5_000;
/** Acquire gives up after this many rounds of "exists, stale, taken over, someone else was faster". */
const MAX_ROUNDS = 8;
/** How often a contender looks again while another contender holds the takeover mutex (held for milliseconds). */
const TAKEOVER_POLL_MS = 20;

/** The lock file as a contender read it: for the takeover's "is it still the same file" check. */
export interface SeenLock {
  readonly ino: number;
  readonly mtimeMs: number;
  readonly raw: string;
  readonly holder: LockHolder | undefined;
}

/** A held lock: `RunLock.acquire(dir)`, then `release()` in a finally. */
export class RunLock {
  readonly path: string;
  readonly holder: LockHolder;
  /** Why the lock was lost (its file removed or replaced by another run), once it was. */
  lost: string | undefined;
  private readonly bytes: Buffer;
  private readonly fd: FileHandle;
  private readonly ino: number;
  private readonly log: (line: string) => void;
  private readonly timer: NodeJS.Timeout;
  private readonly createdDirs: readonly string[];
  private released = false;
  private pending: Promise<void> | undefined;

  private constructor(path: string, holder: LockHolder, bytes: Buffer, fd: FileHandle, ino: number, createdDirs: readonly string[], opts: LockOptions) {
    this.path = path;
    this.holder = holder;
    this.bytes = bytes;
    this.fd = fd;
    this.ino = ino;
    this.createdDirs = createdDirs;
    this.log = opts.log ?? ((l) => console.error(l));
    this.timer = setInterval(() => {
      if (this.pending !== undefined) return; // the last refresh is still on its way (a slow NFS server)
      this.pending = this.refresh()
        .catch((err: unknown) => this.log(`warning: could not refresh the lock ${this.path}: ${(err as Error).message}`))
        .finally(() => (this.pending = undefined));
    }, opts.refreshMs ?? DEFAULT_REFRESH_MS);
    this.timer.unref();
    held.add(this);
    watchProcess();
  }

  /**
   * Takes the lock on `dir` (created with its parents when missing), taking over a stale one with a message.
   * Throws LockError E_LOCKED naming the holder when a live run has it, E_LOCK when it cannot be made.
   */
  static async acquire(dir: string, opts: LockOptions = {}): Promise<RunLock> {
    const folder = resolve(dir);
    const path = join(folder, LOCK_FILE);
    const createdDirs = await makeDirs(folder, path);
    const holder = ownHolder(opts.argv ?? process.argv);
    const bytes = Buffer.from(JSON.stringify(holder, null, 1) + '\n');
    const tmp = `${path}.${holder.run_id}.tmp`;
    try {
      await writeNew(tmp, bytes, path);
      await linkLock(tmp, bytes, path, holder, opts);
      const fd = await open(path, 'r+').catch((err: unknown) => fail('E_LOCK', path, `cannot open the lock just made: ${(err as Error).message}`, err));
      const st = await fd.stat();
      return new RunLock(path, holder, bytes, fd, st.ino, createdDirs, opts);
    } catch (err) {
      await unlink(tmp).catch(ignoreMissing); // before the folders, which it would keep from being empty
      await removeDirs(createdDirs);
      throw err;
    } finally {
      await unlink(tmp).catch(ignoreMissing);
    }
  }

  /** Refreshes the heartbeat (the timer calls it); notices, once, when the lock file is no longer this lock. */
  async refresh(): Promise<void> {
    if (this.released || this.lost !== undefined) return;
    const now = inodeOf(this.path);
    if (now !== this.ino) {
      this.lost = now === undefined ? 'its file was removed' : 'its file was replaced by another run';
      this.log(`warning: lost the lock ${this.path}: ${this.lost} (another run may be writing to the same folder)`);
      return;
    }
    await this.fd.write(this.bytes, 0, this.bytes.length, 0);
    await this.fd.sync(); // NFS: the write (and so the server's mtime) reaches the server now
  }

  /** Removes the lock file (when it is still this lock) and the folders acquire created, when left empty. */
  async release(): Promise<void> {
    if (this.released) return;
    clearInterval(this.timer); // no new refresh starts; one on its way ends first (it writes through the fd)
    await this.pending;
    this.releaseSync();
    await this.fd.close();
  }

  /** The synchronous part of release: for process exit and signals, where nothing asynchronous runs. */
  releaseSync(): void {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    held.delete(this);
    unwatchProcess();
    if (this.lost === undefined && inodeOf(this.path) === this.ino) unlinkSync(this.path);
    for (const d of this.createdDirs) {
      if (!rmdirIfEmptySync(d)) break;
    }
  }
}

/** Locks held by this process: released on exit and on an unhandled SIGINT / SIGTERM. */
const held = new Set<RunLock>();

function releaseAll(): void {
  for (const l of [...held]) l.releaseSync();
}

/**
 * SIGINT / SIGTERM: when no handler was added since the lock was taken (the job's own, which stops the run
 * gracefully and whose caller's finally releases), the signal would end the process: release, then raise it
 * again without this listener, so that the process ends by the signal as before (exit status 130 / 143).
 * Listeners that were there before (signal-exit's, which only re-raises when alone) do not count as handlers.
 */
function onSignal(sig: NodeJS.Signals): void {
  const before = listenersBefore.get(sig);
  if (process.listeners(sig).some((l) => l !== onSignal && !before?.has(l))) return;
  releaseAll();
  unwatchProcess();
  process.kill(process.pid, sig);
}

let watching = false;
const listenersBefore = new Map<NodeJS.Signals, Set<unknown>>();

function watchProcess(): void {
  if (watching) return;
  watching = true;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    listenersBefore.set(sig, new Set(process.listeners(sig)));
    process.on(sig, onSignal);
  }
  process.on('exit', releaseAll);
}

function unwatchProcess(): void {
  if (!watching || held.size > 0) return;
  watching = false;
  process.off('exit', releaseAll);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

function fail(code: LockCode, path: string, message: string, cause?: unknown, holder?: LockHolder): never {
  throw new LockError(code, path, message, holder, cause === undefined ? undefined : { cause });
}

function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}

/** mkdir -p; returns the folders it created, deepest first (release removes them when empty). */
async function makeDirs(folder: string, path: string): Promise<string[]> {
  let first: string | undefined;
  try {
    first = await mkdir(folder, { recursive: true });
  } catch (err) {
    fail('E_LOCK', path, `cannot create the folder ${folder} to hold the lock: ${(err as Error).message}`, err);
  }
  const created: string[] = [];
  if (first === undefined) return created;
  for (let d = folder; ; d = dirname(d)) {
    created.push(d);
    if (d === first || d === dirname(d)) return created;
  }
}

async function removeDirs(dirs: readonly string[]): Promise<void> {
  for (const d of dirs) {
    try {
      await rmdir(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      return; // ENOTEMPTY (someone else's files), or not ours to remove: leave it and its parents
    }
  }
}

/** rmdir when empty; false when the folder stays (not empty, or not removable). */
function rmdirIfEmptySync(dir: string): boolean {
  try {
    rmdirSync(dir);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

async function writeNew(tmp: string, bytes: Buffer, path: string): Promise<void> {
  let fd: FileHandle | undefined;
  try {
    fd = await open(tmp, 'wx');
    await fd.write(bytes, 0, bytes.length, 0);
    await fd.sync();
  } catch (err) {
    fail('E_LOCK', path, `cannot write the lock file ${tmp}: ${(err as Error).message}`, err);
  } finally {
    await fd?.close();
  }
}

/**
 * Links `tmp` to the lock's name, taking over stale locks under the takeover mutex; a bounded number of rounds,
 * and a bounded wait while another contender's takeover is under way. The takeover is told by the one contender
 * that moved the stale file aside (another contender may then make the link first: this one is then refused,
 * naming it).
 */
async function linkLock(tmp: string, bytes: Buffer, path: string, holder: LockHolder, opts: LockOptions): Promise<void> {
  const staleMs = opts.staleMs ?? DEFAULT_STALE_MS;
  const waitUntil = Date.now() + (opts.takeoverWaitMs ?? staleMs + 10_000);
  for (let round = 0; round < MAX_ROUNDS; ) {
    if (await tryLink(tmp, path)) return;
    const seen = await readLock(path);
    if (seen === undefined) {
      round++; // released in between: try again
      continue;
    }
    const why = await staleReason(seen, path, staleMs);
    if (typeof why !== 'string') fail('E_LOCKED', path, lockedMessage(path, seen, why.ageMs, opts), undefined, seen.holder);
    const mutex = await takeMutex(path, bytes, holder.run_id, staleMs);
    if (mutex.busy !== undefined) {
      if (Date.now() > waitUntil) fail('E_LOCK', path, `another run's takeover of this stale lock has not ended: ${describe(mutex.busy.holder)} holds ${path}${MUTEX_SUFFIX}`, undefined, mutex.busy.holder);
      await delay(TAKEOVER_POLL_MS);
      continue;
    }
    round++;
    try {
      const now = await readLock(path); // under the mutex: still the file judged stale? (else look again)
      if (now !== undefined && now.ino === seen.ino && now.raw === seen.raw && (await claimStale(path, seen, holder.run_id)) === 'claimed') {
        (opts.log ?? ((l) => console.error(l)))(`taking over the stale lock ${path} of ${describe(seen.holder)}: ${why}`);
      }
    } finally {
      await mutex.release();
    }
  }
  fail('E_LOCK', path, `could not take the lock after ${MAX_ROUNDS} attempts (other runs keep taking it)`);
}

const MUTEX_SUFFIX = '.takeover';

/** The takeover mutex, held (`release` then) or `busy` with another live contender's (the caller waits). */
type Mutex = { readonly busy: undefined; release(): Promise<void> } | { readonly busy: SeenLock };

/**
 * Takes `<lock>.takeover`: a private file with our holder's bytes, linked to the mutex's name (EEXIST: held). A
 * mutex whose holder is gone (the rules of a lock, `staleReason`) is moved aside with `claimStale`, then taken.
 */
async function takeMutex(path: string, bytes: Buffer, runId: string, staleMs: number): Promise<Mutex> {
  const mutex = path + MUTEX_SUFFIX;
  const tmp = `${mutex}.${runId}.tmp`;
  await writeNew(tmp, bytes, path);
  try {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      if (await tryLink(tmp, mutex)) {
        const ino = statSync(mutex).ino;
        return { busy: undefined, release: async () => void (inodeOf(mutex) === ino && (await unlink(mutex).catch(ignoreMissing))) };
      }
      const seen = await readLock(mutex);
      if (seen === undefined) continue; // released in between
      if (typeof (await staleReason(seen, mutex, staleMs)) !== 'string') return { busy: seen };
      await claimStale(mutex, seen, runId);
    }
    fail('E_LOCK', path, `could not take the takeover mutex ${mutex} after ${MAX_ROUNDS} attempts`);
  } finally {
    await unlink(tmp).catch(ignoreMissing);
  }
}

/** link(tmp, path): true when made (also when NFS lost the reply: tmp then has two links), false on EEXIST. */
async function tryLink(tmp: string, path: string): Promise<boolean> {
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return statSync(tmp).nlink === 2;
    fail('E_LOCK', path, `cannot create the lock file: ${(err as Error).message}`, err);
  }
}

/** The lock file as it is now, or undefined when there is none. Opened (not stat'ed) so NFS revalidates it. */
export async function readLock(path: string): Promise<SeenLock | undefined> {
  let fd: FileHandle;
  try {
    fd = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    fail('E_LOCK', path, `cannot read the lock file: ${(err as Error).message}`, err);
  }
  try {
    const st = await fd.stat();
    const raw = await fd.readFile('utf8');
    return { ino: st.ino, mtimeMs: st.mtimeMs, raw, holder: parseHolder(raw) };
  } catch (err) {
    fail('E_LOCK', path, `cannot read the lock file: ${(err as Error).message}`, err);
  } finally {
    await fd.close();
  }
}

function parseHolder(raw: string): LockHolder | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined; // not JSON: an unreadable lock, judged by its age alone
  }
  const h = v as Partial<LockHolder> | null;
  if (h === null || typeof h !== 'object' || typeof h.pid !== 'number' || typeof h.host !== 'string' || typeof h.run_id !== 'string') return undefined;
  return { pid: h.pid, host: h.host, started_at: String(h.started_at), run_id: h.run_id, argv: Array.isArray(h.argv) ? h.argv.map(String) : [], ...(typeof h.boot_id === 'string' && { boot_id: h.boot_id }), ...(typeof h.proc_start === 'number' && { proc_start: h.proc_start }) };
}

/**
 * Why the lock is stale (a sentence), or its heartbeat's age when it is not. Same host: the process decides
 * (a live holder is never taken over, however old its heartbeat); another host or an unreadable file: the age.
 */
async function staleReason(seen: SeenLock, path: string, staleMs: number): Promise<string | { ageMs: number }> {
  const h = seen.holder;
  if (h !== undefined && h.host === hostname()) {
    const boot = bootId();
    if (h.boot_id !== undefined && boot !== undefined && h.boot_id !== boot) return 'the host has rebooted since';
    if (!pidAlive(h.pid)) return `process ${h.pid} is gone`;
    const start = procStart(h.pid);
    if (h.proc_start !== undefined && start !== undefined && start !== h.proc_start) return `pid ${h.pid} now belongs to another process`;
    return { ageMs: (await serverNow(path)) - seen.mtimeMs };
  }
  const ageMs = (await serverNow(path)) - seen.mtimeMs;
  if (ageMs > staleMs) return `its heartbeat is ${(ageMs / 1000).toFixed(0)} s old (stale after ${(staleMs / 1000).toFixed(0)} s)`;
  return { ageMs };
}

/**
 * Takes the stale file `seen` out of the way: rename to a name of our own (one contender wins), then check that
 * it is the file judged stale. 'claimed': it was (and is removed); 'gone': someone else moved it first;
 * 'restored': it was a newer lock (made after our read), put back with link (which never overwrites).
 */
export async function claimStale(path: string, seen: SeenLock, runId: string): Promise<'claimed' | 'gone' | 'restored'> {
  const mine = `${path}.stale-${runId}`;
  if (inodeOf(path) !== seen.ino) return 'gone'; // already replaced since our read: never move a live lock aside
  try {
    await rename(path, mine);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    fail('E_LOCK', path, `cannot move the stale lock aside: ${(err as Error).message}`, err);
  }
  let claimed = false;
  try {
    const got = await readLock(mine);
    claimed = got !== undefined && got.ino === seen.ino && got.raw === seen.raw;
  } finally {
    // Not the file judged stale (or unreadable now): put it back, since it may be a live run's lock.
    if (!claimed) await restore(mine, path);
    await unlink(mine).catch(ignoreMissing);
  }
  return claimed ? 'claimed' : 'restored';
}

/** link(mine, path), which never overwrites. EEXIST: a third run made a lock meanwhile; the one moved aside is then lost to its holder, which says so at its next heartbeat. */
async function restore(mine: string, path: string): Promise<void> {
  try {
    await link(mine, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

function lockedMessage(path: string, seen: SeenLock, ageMs: number, opts: LockOptions): string {
  const what = opts.what ?? 'folder';
  const where = dirname(path);
  const h = seen.holder;
  const sameHost = h !== undefined && h.host === hostname();
  const after = sameHost ? 'it is taken over once that process is gone' : `it is taken over once its heartbeat is older than ${((opts.staleMs ?? DEFAULT_STALE_MS) / 1000).toFixed(0)} s`;
  return `the ${what} ${where} is in use by another run: ${describe(h)}; heartbeat ${(Math.max(0, ageMs) / 1000).toFixed(0)} s ago. Wait for it to end, or choose another folder. Lock file: ${path} (${after}).`;
}

function describe(h: LockHolder | undefined): string {
  if (h === undefined) return 'an unreadable lock file';
  const cmd = h.argv.length > 0 ? `, command: ${h.argv.join(' ')}` : '';
  return `pid ${h.pid} on host ${h.host}, started ${h.started_at}${cmd}`;
}

function ownHolder(argv: readonly string[]): LockHolder {
  const boot = bootId();
  const start = procStart(process.pid);
  return {
    pid: process.pid,
    host: hostname(),
    started_at: new Date().toISOString(),
    run_id: randomUUID(),
    argv: [...argv],
    ...(boot !== undefined && { boot_id: boot }),
    ...(start !== undefined && { proc_start: start }),
  };
}

/** "Now" as the folder's file system sees it: the mtime of a probe file created there (server time on NFS). */
async function serverNow(path: string): Promise<number> {
  const probe = `${path}.probe-${randomUUID()}`;
  const fd = await open(probe, 'wx');
  try {
    return (await fd.stat()).mtimeMs;
  } finally {
    await fd.close();
    await unlink(probe);
  }
}

function inodeOf(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** kill(pid, 0): ESRCH means gone; EPERM means alive (another user's process). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Field 22 of /proc/PID/stat (start time after boot, in clock ticks), or undefined without /proc. */
export function procStart(pid: number): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // no /proc (not Linux) or the process is gone: the pid check alone decides
  }
  // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const v = Number(fields[19]);
  return Number.isFinite(v) ? v : undefined;
}

let boot: string | null | undefined;

function bootId(): string | undefined {
  if (boot === undefined) {
    try {
      boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      boot = null; // no /proc: reboots are told by the pid check alone
    }
  }
  return boot ?? undefined;
}

/** Exported for the tests: the file a lock on `dir` uses. */
export function lockPath(dir: string): string {
  return join(resolve(dir), LOCK_FILE);
}
