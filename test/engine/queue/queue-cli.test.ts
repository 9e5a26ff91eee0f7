/**
 * The queue's start-up through the compiled CLI (real redis-server): Redis unreachable is exit 2 before any work, for
 * the coordinator and the worker; the password (URL, file or REDIS_PASSWORD) is never printed, even when it is wrong;
 * a worker says it is ready, and a SIGTERM with nothing in hand ends it with 0; bad queue flags are usage errors.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, redisMissing, startRedis } from '../../helpers/redis.js';
import { readFile } from 'node:fs/promises';
import { Queue } from 'bullmq';
import { QUEUE_NAME, QUEUE_PREFIX } from '../../../engine/queue/job-data.js';
import { CLI, cliEnv, e2eUnavailable, makeSlides, runCli, startCli, tempDir, TILE_FLAGS, waitFor, writeCsv, type CliResult } from '../../helpers/e2e.js';

const SECRET = 'pw-s3cr3t-4217';

/** `node graph.js ...args` with `env` added; resolves once `readyLine` appears on stderr (then SIGTERM) or it exits. */
function cli(args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}, readyLine?: RegExp): Promise<CliResult & { ready: boolean }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...cliEnv(), ...env } });
  let stdout = '';
  let stderr = '';
  let ready = false;
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    if (readyLine !== undefined && !ready && readyLine.test(stderr)) {
      ready = true;
      child.kill('SIGTERM');
    }
  });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, ready }));
  });
}

const unavailable = e2eUnavailable() ?? redisMissing();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'queue-cli-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, [{ image_id: 'a', width: 448, height: 448, seed: 1, tissue: [] }]);
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, [{ image_id: 'a', center_id: 0, patient_id: 'p', image_num: 0 }], false);
  const job = (out: string, queue: string): string[] => ['--csv', csv, '--slides', slidesDir, '--out', join(cwd, out), ...TILE_FLAGS, '--progress', 'none', '--queue', queue];

  t.test('Redis unreachable: exit 2 before any work (coordinator and worker), the password not printed', async (t) => {
    const port = await freePort();
    const url = `redis://:${SECRET}@127.0.0.1:${port}`;
    const coord = await runCli(job('unreachable', url), cwd);
    t.equal(coord.code, 2, coord.stderr);
    t.match(coord.stderr, /cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+/);
    t.notOk(coord.stderr.includes(SECRET) || coord.stdout.includes(SECRET), 'the password is not printed');
    t.notOk(existsSync(join(cwd, 'unreachable', 'report.json')), 'nothing was written');
    const worker = await runCli(['worker', '--queue', url, '--root', cwd], cwd);
    t.equal(worker.code, 2, worker.stderr);
    t.match(worker.stderr, /cannot reach Redis/);
    t.notOk(worker.stderr.includes(SECRET), 'the password is not printed');
  });

  t.test('a wrong password: exit 2, named without the password; the right one from a file or REDIS_PASSWORD works', async (t) => {
    const redis = await startRedis(t, ['--requirepass', SECRET]);
    const wrong = `wrong-${SECRET}`;
    const bad = await runCli(job('badpw', `redis://:${wrong}@127.0.0.1:${redis.port}`), cwd);
    t.equal(bad.code, 2, bad.stderr);
    t.match(bad.stderr, /cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1/);
    t.notOk(bad.stderr.includes(wrong), 'the wrong password is not printed either');
    const file = join(cwd, 'redis-password');
    await writeFile(file, `${SECRET}\n`);
    const fromFile = await cli(['worker', '--queue', redis.url, '--queue-password-file', file, '--root', cwd, '--workers', '1'], cwd, {}, /worker: ready on/);
    t.ok(fromFile.ready, `ready with the password from the file: ${fromFile.stderr}`);
    t.equal(fromFile.code, 0, 'SIGTERM with nothing in hand: exit 0');
    t.notOk(fromFile.stderr.includes(SECRET), 'the password is not printed');
    const fromEnv = await cli(['worker', '--queue', redis.url, '--root', cwd, '--workers', '1'], cwd, { REDIS_PASSWORD: SECRET }, /worker: ready on/);
    t.ok(fromEnv.ready, `ready with REDIS_PASSWORD: ${fromEnv.stderr}`);
    t.notOk(fromEnv.stderr.includes(SECRET), 'the password is not printed');
  });

  t.test('two coordinators on one --out: the second is refused (E_LOCKED, exit 2); the lock and its message hold no password', async (t) => {
    const redis = await startRedis(t, ['--requirepass', SECRET]);
    const url = `redis://:${SECRET}@127.0.0.1:${redis.port}`;
    // --workers 0 and no worker: the first coordinator waits for its job, holding the lock.
    const first = startCli(job('locked', url).concat(['--workers', '0']), cwd);
    t.teardown(() => first.child.kill('SIGKILL'));
    const lockFile = join(cwd, 'locked', '.run.lock');
    const lock = await waitFor('the first coordinator holds the lock', async () => (existsSync(lockFile) ? readFile(lockFile, 'utf8') : undefined));
    t.notOk(lock.includes(SECRET), 'the lock file does not record the password');
    t.match(lock, /redis:\/\/:\*\*\*@127\.0\.0\.1/, 'it records the command with the password redacted');
    const second = await runCli(job('locked', url).concat(['--workers', '0']), cwd);
    t.equal(second.code, 2, second.stderr);
    t.match(second.stderr, /E_LOCKED|is locked|another run|in use/i);
    t.notOk(second.stderr.includes(SECRET), 'the refusal does not print the password');
    // Once its job waits in Redis, the first coordinator is in its run: SIGTERM stops it (143) and it tells how to resume.
    const queue = new Queue(QUEUE_NAME, { connection: { host: '127.0.0.1', port: redis.port, password: SECRET }, prefix: QUEUE_PREFIX });
    t.teardown(() => queue.close());
    await waitFor('the job in Redis', async () => ((await queue.getJobCounts('waiting')).waiting ?? 0) >= 1);
    first.child.kill('SIGTERM');
    const r = await first.done;
    t.equal(r.code, 143, 'the first coordinator stops on SIGTERM');
    t.notOk(r.stderr.includes(SECRET), 'nor does the first coordinator');
  });

  t.test('bad queue flags are usage errors (exit 2)', async (t) => {
    const noQueue = await runCli(['--csv', csv, '--slides', slidesDir, '--out', join(cwd, 'x'), '--queue-lock-ms', '1000'], cwd);
    t.equal(noQueue.code, 2);
    t.match(noQueue.stderr, /--queue-lock-ms needs --queue/);
    const badUrl = await runCli(job('y', 'http://127.0.0.1:6379'), cwd);
    t.equal(badUrl.code, 2);
    t.match(badUrl.stderr, /must start with redis:\/\/ or rediss:\/\//);
    const noRoot = await runCli(['worker', '--queue', 'redis://127.0.0.1:1'], cwd);
    t.equal(noRoot.code, 2);
    t.match(noRoot.stderr, /worker needs at least one --root/);
    const missingRoot = await runCli(['worker', '--queue', 'redis://127.0.0.1:1', '--root', join(cwd, 'nope')], cwd);
    t.equal(missingRoot.code, 2);
    t.match(missingRoot.stderr, /--root .*nope cannot be opened/);
    const zeroLocal = await runCli(['--csv', csv, '--slides', slidesDir, '--out', join(cwd, 'z'), '--workers', '0'], cwd);
    t.equal(zeroLocal.code, 2, 'without --queue, --workers 0 is refused');
  });
}
