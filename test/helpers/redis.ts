/**
 * A real redis-server for tests: on a free port, in a temp folder (AOF on, so a restart keeps the queue), stopped in
 * teardown. Tests that need it call `startRedis(t)` and skip when redis-server is not installed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A test's redis-server, wherever it runs (here on 127.0.0.1; test/helpers/netns-redis.ts inside a namespace). */
export interface RedisServer {
  readonly url: string;
  readonly dir: string;
  /** kill -9 the server (the AOF stays in `dir`). */
  kill(): Promise<void>;
  /** Starts it again on the same address and folder (after kill); resolves once it accepts connections. */
  restart(): Promise<void>;
}

export interface TestRedis extends RedisServer {
  readonly port: number;
}

export interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Why redis tests cannot run here, or undefined when they can. */
export function redisMissing(): string | undefined {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return r.error ? 'redis-server is not installed (apt-get install redis-server)' : undefined;
}

/** A free TCP port on 127.0.0.1 (bound once, then released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Starts a redis-server for this test; `extra` are more `--name value` arguments (e.g. `['--requirepass', 'x']`). */
export async function startRedis(t: Teardown, extra: readonly string[] = []): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'test-redis-'));
  const port = await freePort();
  let proc: ChildProcess | undefined;
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '', '--daemonize', 'no', ...extra];
  const start = async (): Promise<void> => {
    const p = spawn('redis-server', args, { stdio: 'ignore' });
    proc = p;
    await waitListening(port, p);
  };
  const kill = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  };
  t.teardown(async () => {
    await kill();
    rmSync(dir, { recursive: true, force: true });
  });
  await start();
  return { port, url: `redis://127.0.0.1:${port}`, dir, kill, restart: start };
}

/** Resolves once a TCP connection to `port` succeeds; rejects if `proc` exits first. */
async function waitListening(port: number, proc: ChildProcess): Promise<void> {
  let exited = false;
  proc.once('exit', () => (exited = true));
  for (;;) {
    if (exited) throw new Error(`redis-server on port ${port} exited before it listened`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setImmediate(r));
  }
}
