/**
 * A real redis-server on one "machine" of a namespace lab (test/helpers/netns.ts): bound to that machine's address
 * only, AOF on (`appendfsync always`, so a kill -9 loses no acknowledged write), in a temp folder; kill -9 and
 * restart on the same address and folder; stopped and removed in teardown. Ready means it printed "Ready to accept
 * connections" (the test process cannot connect into a namespace itself).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Lab, Machine, NsProcess } from './netns.js';
import type { RedisServer, Teardown } from './redis.js';

export interface NsRedis extends RedisServer {
  readonly machine: Machine;
}

export const REDIS_PORT = 6379;

/**
 * `password`: `requirepass` (the url carries it); without one, protected mode is off (it would refuse every client
 * that is not on loopback).
 */
export async function startNsRedis(t: Teardown, lab: Lab, machine: Machine, opts: { password?: string; extra?: readonly string[] } = {}): Promise<NsRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'test-nsredis-'));
  const auth = opts.password === undefined ? ['--protected-mode', 'no'] : ['--requirepass', opts.password];
  const args = ['--port', String(REDIS_PORT), '--bind', machine.address, '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--daemonize', 'no', ...auth, ...(opts.extra ?? [])];
  let proc: NsProcess | undefined;
  const start = async (): Promise<void> => {
    const p = lab.run(machine, 'redis-server', args);
    proc = p;
    await p.waitOutput(/Ready to accept connections/);
  };
  const kill = async (): Promise<void> => {
    const p = proc;
    proc = undefined;
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill('SIGKILL');
    await p.done;
  };
  t.teardown(async () => {
    await kill();
    rmSync(dir, { recursive: true, force: true });
  });
  await start();
  const cred = opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}@`;
  return { machine, url: `redis://${cred}${machine.address}:${REDIS_PORT}`, dir, kill, restart: start };
}
