/**
 * The run lock (engine/lock.ts) against real processes and real files: a live holder (a child process) is
 * refused with its pid, host and start time; a SIGKILLed holder's lock is taken over at once with a message;
 * contenders racing for a stale lock have exactly one winner; another host's lock is taken over only once its
 * heartbeat is old; reused pids, reboots and unreadable files; heartbeat, loss, release, signals and exit.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { claimStale, LOCK_FILE, lockPath, procStart, readLock, RunLock, type LockHolder } from '../../engine/lock.js';
import { tempDir } from '../helpers/e2e.js';

const FIXTURE = new URL('./fixtures/lock-holder.ts', import.meta.url).pathname;
const execArgv = process.execArgv.filter((a) => a.includes('typescript'));

interface HolderEvent {
  readonly event: 'ready' | 'log' | 'locked' | 'refused' | 'released';
  readonly line?: string;
  readonly holder?: LockHolder;
  readonly code?: string;
  readonly message?: string;
  readonly holderPid?: number;
}

interface Holder {
  readonly child: ChildProcess;
  readonly events: HolderEvent[];
  /** Resolves with the first event (already seen or to come) that `pred` accepts; rejects if the child ends first. */
  next(pred: (e: HolderEvent) => boolean): Promise<HolderEvent>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Starts the fixture on `dir`; killed at the end of the test if still running. */
function startHolder(t: Tap.Test, dir: string, flags: string[] = []): Holder {
  const child = spawn(process.execPath, [...execArgv, FIXTURE, dir, ...flags], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  const events: HolderEvent[] = [];
  const waiters = new Set<() => void>();
  let ended = false;
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    events.push(JSON.parse(line) as HolderEvent);
    for (const w of waiters) w();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => {
      ended = true;
      for (const w of waiters) w();
      resolve({ code, signal, stderr });
    }),
  );
  const next = (pred: (e: HolderEvent) => boolean): Promise<HolderEvent> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const e = events.find(pred);
        if (e !== undefined) {
          waiters.delete(check);
          resolve(e);
        } else if (ended) {
          waiters.delete(check);
          reject(new Error(`lock-holder ended without the awaited event; events ${JSON.stringify(events)}; stderr ${stderr}`));
        }
      };
      waiters.add(check);
      check();
    });
  return { child, events, next, exited };
}

const is = (kind: HolderEvent['event']) => (e: HolderEvent) => e.event === kind;
const settled = (e: HolderEvent): boolean => e.event === 'locked' || e.event === 'refused';

/** A lock file written by hand, as another run (or host) would have left it. */
async function plantLock(dir: string, holder: Partial<LockHolder>, mtime?: Date): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = lockPath(dir);
  await writeFile(path, JSON.stringify({ pid: 999_999, host: hostname(), started_at: '2026-01-01T00:00:00.000Z', run_id: `planted-${Math.random()}`, argv: ['planted'], ...holder }));
  if (mtime !== undefined) await utimes(path, mtime, mtime);
  return path;
}

const TEN_MINUTES_AGO = (): Date => new Date(Date.now() - 600_000);

/** A lock of a SIGKILLed holder: left on disk, its process gone. */
async function killedHolderLock(t: Tap.Test, dir: string): Promise<number> {
  const h = startHolder(t, dir);
  const pid = (await h.next(is('locked'))).holder!.pid;
  h.child.kill('SIGKILL');
  t.equal((await h.exited).signal, 'SIGKILL');
  t.ok(existsSync(lockPath(dir)), 'a SIGKILLed holder leaves its lock file');
  return pid;
}

t.test('a live holder: a second acquire fails naming its pid, host, start time and command', async (t) => {
  const dir = join(await tempDir(t, 'lock-'), 'out');
  const h = startHolder(t, dir);
  const holder = (await h.next(is('locked'))).holder!;
  t.equal(holder.pid, h.child.pid, 'the lock names the child');
  const err = await RunLock.acquire(dir, { log: (l) => t.fail(`no takeover expected: ${l}`) }).then(
    () => undefined,
    (e: unknown) => e as { code: string; message: string; holder?: LockHolder },
  );
  t.equal(err?.code, 'E_LOCKED');
  t.match(err?.message, `pid ${holder.pid} on host ${hostname()}, started ${holder.started_at}, command: lock-holder ${dir}`);
  t.match(err?.message, lockPath(dir), 'names the lock file');
  t.equal(err?.holder?.run_id, holder.run_id);
  h.child.stdin!.end();
  await h.next(is('released'));
  t.equal((await h.exited).code, 0);
  t.notOk(existsSync(lockPath(dir)), 'released: the lock file is gone');
  t.notOk(existsSync(dir), 'the folder the child made for its lock is removed with it (it holds nothing else)');
});

t.test('a SIGKILLed holder: the next acquire takes the lock over at once, with a message', async (t) => {
  const dir = join(await tempDir(t, 'lock-'), 'out');
  const pid = await killedHolderLock(t, dir);
  const logs: string[] = [];
  const lock = await RunLock.acquire(dir, { log: (l) => logs.push(l) });
  t.equal(logs.length, 1, 'one message');
  t.match(logs[0], `taking over the stale lock ${lockPath(dir)} of pid ${pid} on host ${hostname()}`);
  t.match(logs[0], `process ${pid} is gone`);
  t.equal((await readLock(lockPath(dir)))?.holder?.run_id, lock.holder.run_id, 'the file now names this run');
  t.equal(lock.holder.pid, process.pid);
  await lock.release();
  t.notOk(existsSync(lockPath(dir)));
});

t.test('contenders racing for a stale lock: exactly one wins, the others name it', async (t) => {
  const dir = join(await tempDir(t, 'lock-'), 'out');
  for (let round = 0; round < 2; round++) {
    const dead = await killedHolderLock(t, dir);
    const contenders = Array.from({ length: 3 }, () => startHolder(t, dir, ['--go']));
    await Promise.all(contenders.map((c) => c.next(is('ready'))));
    for (const c of contenders) c.child.stdin!.write('go\n');
    const results = await Promise.all(contenders.map((c) => c.next(settled)));
    const winners = contenders.filter((_, i) => results[i]!.event === 'locked');
    t.equal(winners.length, 1, `round ${round}: exactly one winner`);
    const winner = winners[0]!;
    for (const [i, r] of results.entries()) {
      if (r.event === 'refused') {
        t.equal(r.code, 'E_LOCKED', `round ${round}: a loser is refused`);
        t.equal(r.holderPid, winner.child.pid, `round ${round}: the loser names the winner`);
      } else t.equal(contenders[i], winner);
    }
    const takeovers = contenders.flatMap((c) => c.events.filter((e) => e.event === 'log' && e.line!.includes(`of pid ${dead} `)));
    // Told by the one that moved the stale file aside: the winner, or a contender beaten to the link by it.
    t.equal(takeovers.length, 1, `round ${round}: one takeover message`);
    t.equal((await readLock(lockPath(dir)))?.holder?.pid, winner.child.pid, `round ${round}: the file names the winner`);
    for (const c of contenders) c.child.stdin!.end();
    for (const c of contenders) t.equal((await c.exited).code, 0);
    t.notOk(existsSync(lockPath(dir)), `round ${round}: the winner released`);
    t.same(await readdir(dir), [], `round ${round}: no mutex, aside or temporary file is left`);
  }
});

t.test('claimStale: takes the file judged stale, puts back a newer one, and reports one already gone', async (t) => {
  const dir = await tempDir(t, 'lock-');
  const path = await plantLock(dir, { run_id: 'old' });
  const seenOld = (await readLock(path))!;
  // Between the contender's read and its rename, another contender replaced the stale lock with its own.
  await unlink(path);
  await plantLock(dir, { run_id: 'new', pid: process.pid });
  const fresh = (await readLock(path))!;
  t.equal(await claimStale(path, seenOld, 'me'), 'restored');
  const after = (await readLock(path))!;
  t.equal(after.holder?.run_id, 'new', 'the newer lock is back');
  t.equal(after.ino, fresh.ino, 'the very same file (its holder keeps it)');
  t.same((await readdir(dir)).sort(), [LOCK_FILE], 'no aside file left');
  t.equal(await claimStale(path, after, 'me'), 'claimed', 'the file judged is the file moved');
  t.notOk(existsSync(path));
  t.equal(await claimStale(path, after, 'me'), 'gone', 'nothing to move: someone else was first');
});

t.test('the takeover mutex: one left by a dead contender is taken over; a live one is waited for, then E_LOCK', async (t) => {
  const dir = await tempDir(t, 'lock-');
  const path = await plantLock(dir, { pid: 999_999 }); // a stale lock: its pid is gone
  // A contender that died in the middle of its takeover left the mutex behind.
  await writeFile(`${path}.takeover`, JSON.stringify({ pid: 999_998, host: hostname(), started_at: '2026-01-01T00:00:00.000Z', run_id: 'dead-contender', argv: ['planted'] }));
  const logs: string[] = [];
  const lock = await RunLock.acquire(dir, { log: (l) => logs.push(l) });
  t.equal(logs.filter((l) => l.includes('taking over the stale lock') && l.includes('pid 999999 ')).length, 1, 'the stale lock is taken over, once');
  t.same((await readdir(dir)).sort(), [LOCK_FILE], 'the dead mutex is gone and no file of ours is left');
  await lock.release();

  await plantLock(dir, { pid: 999_999 });
  // A live contender (this very process) is in the middle of its takeover: the next one waits, then gives up.
  await writeFile(`${path}.takeover`, JSON.stringify({ pid: process.pid, host: hostname(), started_at: '2026-01-01T00:00:00.000Z', run_id: 'live-contender', argv: ['planted'] }));
  const err = await RunLock.acquire(dir, { takeoverWaitMs: 100, log: (l) => t.fail(`no takeover expected: ${l}`) }).catch((e: unknown) => e as { code: string; message: string; holder?: LockHolder });
  t.match(err, { code: 'E_LOCK', message: /takeover of this stale lock has not ended/ });
  t.match(err, { message: new RegExp(`pid ${process.pid} on host`) }, 'names the mutex holder');
  t.equal((err as { holder?: LockHolder }).holder?.run_id, 'live-contender');
  t.equal((await readLock(path))?.holder?.pid, 999_999, 'the stale lock is left for the mutex holder');
  t.same((await readdir(dir)).sort(), [LOCK_FILE, `${LOCK_FILE}.takeover`], 'no file of the contender is left');
});

t.test('another host: a fresh heartbeat is refused, an old one is taken over', async (t) => {
  const dir = await tempDir(t, 'lock-');
  const path = await plantLock(dir, { host: 'other-host.invalid', pid: 4242 });
  const err = await RunLock.acquire(dir, { staleMs: 30_000 }).catch((e: unknown) => e as { code: string; message: string });
  t.match(err, { code: 'E_LOCKED' });
  t.match((err as { message: string }).message, 'pid 4242 on host other-host.invalid');
  t.match((err as { message: string }).message, 'taken over once its heartbeat is older than 30 s');
  t.ok(existsSync(path), 'left in place');
  const old = TEN_MINUTES_AGO();
  await utimes(path, old, old);
  const logs: string[] = [];
  const lock = await RunLock.acquire(dir, { staleMs: 30_000, log: (l) => logs.push(l) });
  t.match(logs, [/of pid 4242 on host other-host\.invalid.*its heartbeat is 60\d s old \(stale after 30 s\)/]);
  await lock.release();
});

t.test('same host: a live pid is never taken over, a reused pid or a reboot is', async (t) => {
  const start = procStart(process.pid);
  if (start === undefined) return t.skip('no /proc/PID/stat here: a reused pid cannot be told');
  const dir = await tempDir(t, 'lock-');
  // This test process is alive: however old its heartbeat, the lock stands.
  const path = await plantLock(dir, { pid: process.pid, proc_start: start }, TEN_MINUTES_AGO());
  await t.rejects(RunLock.acquire(dir, { staleMs: 1 }), { code: 'E_LOCKED', message: /heartbeat 60\d s ago.*taken over once that process is gone/ });
  await plantLock(dir, { pid: process.pid, proc_start: start + 1 });
  const logs: string[] = [];
  let lock = await RunLock.acquire(dir, { log: (l) => logs.push(l) });
  t.match(logs, [`pid ${process.pid} now belongs to another process`]);
  await lock.release();
  await plantLock(dir, { pid: process.pid, proc_start: start, boot_id: 'another-boot' });
  lock = await RunLock.acquire(dir, { log: (l) => logs.push(l) });
  t.match(logs[1], 'the host has rebooted since');
  await lock.release();
  t.notOk(existsSync(path));
});

t.test('an unreadable lock file: refused while fresh, taken over once old', async (t) => {
  const dir = await tempDir(t, 'lock-');
  const path = lockPath(dir);
  await writeFile(path, 'not json');
  await t.rejects(RunLock.acquire(dir), { code: 'E_LOCKED', message: /in use by another run: an unreadable lock file/ });
  const old = TEN_MINUTES_AGO();
  await utimes(path, old, old);
  const logs: string[] = [];
  const lock = await RunLock.acquire(dir, { log: (l) => logs.push(l) });
  t.match(logs, [/of an unreadable lock file: its heartbeat is 60\d s old/]);
  await lock.release();
});

t.test('refresh moves the heartbeat; a lock file replaced by another run is noticed and left alone', async (t) => {
  const dir = await tempDir(t, 'lock-');
  const logs: string[] = [];
  const lock = await RunLock.acquire(dir, { log: (l) => logs.push(l) });
  const path = lockPath(dir);
  const bytes = await readFile(path);
  const old = TEN_MINUTES_AGO();
  await utimes(path, old, old);
  await lock.refresh();
  t.ok((await stat(path)).mtimeMs > old.getTime() + 300_000, 'the mtime moved to now');
  t.ok((await readFile(path)).equals(bytes), 'the content is unchanged');
  await rename(path, `${path}.away`);
  await plantLock(dir, { run_id: 'someone-else' });
  await lock.refresh();
  t.match(lock.lost, 'replaced by another run');
  t.match(logs, [/lost the lock .*replaced by another run/]);
  await lock.release();
  t.equal((await readLock(path))?.holder?.run_id, 'someone-else', 'release leaves the other run its lock');
});

t.test('release removes the folders acquire made when they are empty, and keeps what holds files', async (t) => {
  const root = await tempDir(t, 'lock-');
  let lock = await RunLock.acquire(join(root, 'a', 'b', 'c'));
  t.ok(existsSync(join(root, 'a', 'b', 'c', LOCK_FILE)));
  await lock.release();
  t.notOk(existsSync(join(root, 'a')), 'a/b/c made by acquire, removed by release');
  lock = await RunLock.acquire(join(root, 'x', 'y'));
  await writeFile(join(root, 'x', 'y', 'shard'), 'data');
  await lock.release();
  t.ok(existsSync(join(root, 'x', 'y', 'shard')), 'a folder with the run\'s files stays');
  t.notOk(existsSync(join(root, 'x', 'y', LOCK_FILE)));
});

t.test('E_LOCK when the folder cannot be made, naming it', async (t) => {
  const root = await tempDir(t, 'lock-');
  await writeFile(join(root, 'file'), '');
  await t.rejects(RunLock.acquire(join(root, 'file', 'out')), { code: 'E_LOCK', message: /cannot create the folder .*file\/out to hold the lock/ });
});

t.test('E_LOCK when the lock file cannot be read (a folder in its place), naming it; nothing left behind', async (t) => {
  const dir = await tempDir(t, 'lock-');
  await mkdir(lockPath(dir));
  await t.rejects(RunLock.acquire(dir), { code: 'E_LOCK', key: lockPath(dir), message: /cannot read the lock file: EISDIR/ });
  t.same(await readdir(dir), [LOCK_FILE], 'no temporary file left');
});

t.test('SIGTERM to a holder with no handler of its own: the lock is released and the process ends by the signal', async (t) => {
  const dir = await tempDir(t, 'lock-');
  const h = startHolder(t, dir);
  await h.next(is('locked'));
  h.child.kill('SIGTERM');
  t.equal((await h.exited).signal, 'SIGTERM');
  t.notOk(existsSync(lockPath(dir)));
});

t.test('a holder that ends without release leaves no lock (the exit handler)', async (t) => {
  const dir = await tempDir(t, 'lock-');
  const h = startHolder(t, dir, ['--no-release']);
  await h.next(is('locked'));
  t.ok(existsSync(lockPath(dir)));
  h.child.stdin!.end();
  t.equal((await h.exited).code, 0);
  t.notOk(h.events.some(is('released')), 'release() was not called');
  t.notOk(existsSync(lockPath(dir)));
});
