/**
 * The queue runner through the compiled CLI, on a real redis-server: a coordinator with --workers 0 and one
 * `node graph.js worker` process write the same bytes as a local run; the coordinator with its own workers does too;
 * the report names the host of each slide; killed and rerun, nothing is redone; the progress lines show this run's
 * jobs as the queue counts them, moving as the worker takes and finishes them, the last line as the report has it.
 */
import t from 'tap';
import { hostname } from 'node:os';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { redisMissing, startRedis } from '../../helpers/redis.js';
import { e2eUnavailable, makeSlides, readReport, runCli, shardBytes, startCli, tempDir, TILE, TILE_FLAGS, waitFor, writeCsv, type SlideSpec } from '../../helpers/e2e.js';

const T = TILE.tileSize;
const SLIDES: SlideSpec[] = Array.from({ length: 4 }, (_, i) => ({
  image_id: `s${i}`,
  width: 1344,
  height: 1344,
  seed: 70 + i,
  tissue: [{ kind: 'rect' as const, x: T * (i % 2), y: T, w: 3 * T, h: 2 * T }],
}));

const unavailable = e2eUnavailable() ?? redisMissing();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'queue-run-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, SLIDES);
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, SLIDES.map((s, i) => ({ image_id: s.image_id, center_id: 0, patient_id: `p${Math.floor(i / 2)}`, image_num: i % 2, label: String(Math.floor(i / 2) % 2) })), true);
  const args = (out: string): string[] => ['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--progress', 'none'];
  const local = await runCli([...args(join(cwd, 'local')), '--workers', '2'], cwd);
  const localBytes = await shardBytes(join(cwd, 'local'));

  const sameBytes = async (t: Tap.Test, out: string): Promise<void> => {
    const bytes = await shardBytes(out);
    t.same([...bytes.keys()], [...localBytes.keys()], 'same shard files as the local run');
    for (const [f, b] of bytes) t.ok(b.equals(localBytes.get(f)!), `${f} byte-identical to the local run`);
  };

  t.test('the local run (the reference)', async (t) => {
    t.equal(local.code, 0, local.stderr);
    t.ok(localBytes.size > 0, 'shards written');
  });

  t.test('a coordinator (--workers 0) and one worker command: byte-identical to the local run', async (t) => {
    const redis = await startRedis(t);
    const worker = startCli(['worker', '--queue', redis.url, '--root', cwd, '--workers', '1'], cwd);
    t.teardown(() => {
      worker.child.kill('SIGKILL');
    });
    const out = join(cwd, 'q1');
    const run = await runCli([...args(out), '--queue', redis.url, '--workers', '0'], cwd);
    t.equal(run.code, 0, run.stderr);
    await sameBytes(t, out);
    const report = await readReport(out);
    for (const s of report.slides) {
      t.equal(s.host, hostname(), `${s.image_id}: processed on this host`);
      t.equal(s.attempts, 1, `${s.image_id}: one attempt`);
      t.equal(s.stalls, 0, `${s.image_id}: no stall`);
    }
    worker.child.kill('SIGTERM');
    const w = await worker.done;
    t.equal(w.code, 0, `the worker exits 0 after SIGTERM: ${w.stderr}`);
  });

  t.test('a slide that fails (missing file): reported failed once, exit 1, the other patients written', async (t) => {
    const redis = await startRedis(t);
    const csv2 = join(cwd, 'with-missing.csv');
    await writeCsv(csv2, [...SLIDES.map((s, i) => ({ image_id: s.image_id, center_id: 0, patient_id: `p${Math.floor(i / 2)}`, image_num: i % 2, label: String(Math.floor(i / 2) % 2) })), { image_id: 'gone', center_id: 0, patient_id: 'pg', image_num: 0, label: '1' }], true);
    const out = join(cwd, 'q3');
    const run = await runCli(['--csv', csv2, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--progress', 'none', '--queue', redis.url, '--workers', '1'], cwd);
    t.equal(run.code, 1, 'exit 1: a slide failed');
    const report = await readReport(out);
    const gone = report.slides.find((s) => s.image_id === 'gone');
    t.equal(gone?.status, 'failed');
    t.equal(gone?.code, 'E_SLIDE_MISSING', 'the slide keeps its own code');
    t.equal(gone?.attempts, 1, 'not retried: the error is the slide\'s own');
    t.equal(report.patients.written, 2, 'the other patients are written');
  });

  t.test('progress lines from the queue\'s counts: all waiting, then moving as a worker runs them; the last line matches the report', async (t) => {
    const redis = await startRedis(t);
    const csv2 = join(cwd, 'counts.csv');
    await writeCsv(csv2, [...SLIDES.map((s, i) => ({ image_id: s.image_id, center_id: 0, patient_id: `p${Math.floor(i / 2)}`, image_num: i % 2, label: String(Math.floor(i / 2) % 2) })), { image_id: 'gone', center_id: 0, patient_id: 'pg', image_num: 0, label: '1' }], true);
    const out = join(cwd, 'q5');
    const coordinator = startCli(['--csv', csv2, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--progress', 'lines', '--queue', redis.url, '--workers', '0'], cwd);
    t.teardown(() => coordinator.child.kill('SIGKILL'));
    let stdout = '';
    coordinator.child.stdout!.on('data', (d: string) => (stdout += d));
    const queueLines = (): string[] => stdout.split('\n').filter((l) => l.startsWith('queue: '));
    // No worker yet: the five jobs wait. Only then does a worker start (so the counts must move).
    await waitFor('every job waiting', () => queueLines().some((l) => l.startsWith('queue: 5 waiting, 0 active, 0 retrying, 0 completed, 0 failed')));
    const worker = startCli(['worker', '--queue', redis.url, '--root', cwd, '--workers', '1'], cwd);
    t.teardown(() => worker.child.kill('SIGKILL'));
    const run = await coordinator.done;
    t.equal(run.code, 1, 'exit 1: the missing slide failed');
    const lines = queueLines();
    const parsed = lines.map((l) => {
      const m = /^queue: (\d+) waiting, (\d+) active(?: \(([^)]*)\))?, (\d+) retrying, (\d+) completed, (\d+) failed \[(\d+)\/5\]$/.exec(l);
      t.ok(m, `a counts line: ${l}`);
      return { waiting: Number(m?.[1]), active: Number(m?.[2]), hosts: m?.[3] ?? '', completed: Number(m?.[5]), failed: Number(m?.[6]), finished: Number(m?.[7]) };
    });
    t.ok(parsed.length >= 2, `the counts moved: ${lines.join(' | ')}`);
    for (let i = 1; i < parsed.length; i++) {
      t.ok(parsed[i]!.completed + parsed[i]!.failed >= parsed[i - 1]!.completed + parsed[i - 1]!.failed, 'finished jobs never go down');
      t.ok(parsed[i]!.waiting <= parsed[i - 1]!.waiting, 'waiting jobs never go up (nothing is retried here)');
    }
    for (const p of parsed) {
      t.ok(p.active <= 1, 'at most one job active: the worker has one process');
      if (p.active > 0) t.equal(p.hosts, `${hostname()} 1`, 'the active job runs on this host');
    }
    const report = await readReport(out);
    const last = parsed.at(-1)!;
    const ok = report.slides.filter((s) => s.status === 'ok').length;
    const failed = report.slides.filter((s) => s.status === 'failed').length;
    t.same([last.waiting, last.active, last.completed, last.failed, last.finished], [0, 0, ok, failed, 5], `the last line (${lines.at(-1)}) as the report has it: ${ok} ok, ${failed} failed`);
    t.same([ok, failed], [4, 1]);
    t.ok(stdout.indexOf(lines.at(-1)!) > stdout.lastIndexOf('[5/5] '), 'the final counts come after every slide\'s own line');
  });

  t.test('a worker whose --root holds the work folder but not the slides: every slide fails E_QUEUE_PATH', async (t) => {
    const redis = await startRedis(t);
    const out = join(cwd, 'q4');
    await mkdir(out, { recursive: true });
    const worker = startCli(['worker', '--queue', redis.url, '--root', out, '--workers', '1'], cwd);
    t.teardown(() => {
      worker.child.kill('SIGKILL');
    });
    const run = await runCli([...args(out), '--queue', redis.url, '--workers', '0'], cwd);
    t.equal(run.code, 1, 'exit 1: slides failed');
    const report = await readReport(join(out, '.work')); // no patient written: the report is in the work folder
    t.equal(report.slides.length, SLIDES.length);
    for (const s of report.slides) {
      t.equal(s.code, 'E_QUEUE_PATH', `${s.image_id}: refused`);
      t.match(s.error ?? '', /slides folder .* is outside this worker's --root/);
    }
  });

  t.test('a coordinator with its own workers; rerun: every slide replayed, nothing redone', async (t) => {
    const redis = await startRedis(t);
    const out = join(cwd, 'q2');
    const run = await runCli([...args(out), '--queue', redis.url, '--workers', '2'], cwd);
    t.equal(run.code, 0, run.stderr);
    await sameBytes(t, out);
    const again = await runCli([...args(out), '--queue', redis.url, '--workers', '0'], cwd);
    t.equal(again.code, 0, again.stderr);
    const report = await readReport(out);
    t.ok(report.slides.every((s) => s.resumed === true), 'every slide replayed from its checkpoint');
    await sameBytes(t, out);
  });
}
