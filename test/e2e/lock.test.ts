/**
 * The run lock through the compiled CLI: while a job runs, a second job into the same --out (with another
 * --work-dir), or into another --out with the same work folder, is refused at once with exit code 2 naming the
 * first job's pid, and leaves nothing behind; the first job still finishes with exit code 0 and good shards,
 * and removes its lock files. The first job is held still (SIGSTOP) while the others try, so that it is
 * certainly running then, whatever the machine's speed; SIGCONT lets it go on. A job SIGKILLed while it holds
 * the locks leaves them; the next run takes them over at once with a message and finishes. A job stopped by
 * SIGTERM at any point leaves no lock.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { LOCK_FILE, readLock, type SeenLock } from '../../engine/lock.js';
import { e2eUnavailable, expectedPositions, makeSlides, readExamples, runCli, startCli, tempDir, TILE, waitFor, TILE_FLAGS, writeCsv, type RunningCli, type SlideSpec } from '../helpers/e2e.js';

const T = TILE.tileSize;
const SLIDES: SlideSpec[] = Array.from({ length: 3 }, (_, i) => ({
  image_id: `s${i}`,
  width: 1792,
  height: 1792,
  seed: 70 + i,
  tissue: [{ kind: 'rect' as const, x: T * i, y: T, w: 3 * T, h: 3 * T }],
}));

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  // One working directory for the file: the demo models and the LUT are built once, in its .cache.
  const cwd = await tempDir(t, 'e2e-lock-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, SLIDES);
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, SLIDES.map((s, i) => ({ image_id: s.image_id, center_id: i % 2, patient_id: `p${i}`, image_num: 0, label: String(i % 2) })), true);
  const common = ['--csv', csv, '--slides', slidesDir, ...TILE_FLAGS, '--workers', '2', '--progress', 'none'];

  /** Starts a job into `out` and waits until it holds both locks (taken before anything else is written). */
  async function startLocked(t: Tap.Test, out: string): Promise<{ run: RunningCli; pid: number; outLock: SeenLock; workLock: SeenLock }> {
    const run = startCli([...common, '--out', out], cwd);
    const pid = run.child.pid!;
    t.teardown(() => {
      run.child.kill('SIGCONT');
      run.child.kill('SIGKILL');
    });
    let ended = false;
    void run.done.then(() => (ended = true));
    const held = await waitFor('the job to hold both locks', async () => {
      if (ended) throw new Error(`the job ended early: ${(await run.done).stderr}`);
      const outLock = await readLock(join(out, LOCK_FILE));
      const workLock = await readLock(join(out, '.work', LOCK_FILE));
      return outLock?.holder?.pid === pid && workLock?.holder?.pid === pid && { outLock, workLock };
    });
    return { run, pid, ...held };
  }

  /** Every patient written, with the tiles its slide's tissue gives. */
  async function goodShards(t: Tap.Test, out: string): Promise<void> {
    const examples = await readExamples(out);
    t.same(examples.map((e) => e.bytes['patient_id']![0]!.toString()).sort(), ['p0', 'p1', 'p2'], 'every patient written');
    for (const ex of examples) {
      const spec = SLIDES[Number(ex.bytes['patient_id']![0]!.toString().slice(1))]!;
      const n = expectedPositions(spec).length;
      t.same(ex.ints['num_tiles'], [n], `${spec.image_id}: ${n} tiles`);
      t.equal(ex.floats['avg_embedding']!.length, n * 1280);
    }
  }

  t.test('a second job into a locked --out or work folder: exit 2 naming the first; the first finishes', async (t) => {
    const out = join(cwd, 'out');
    const { run: first, pid, ...held } = await startLocked(t, out);
    first.child.kill('SIGSTOP');

    const work2 = join(cwd, 'work2');
    const sameOut = await runCli([...common, '--out', out, '--work-dir', work2], cwd);
    t.equal(sameOut.code, 2, `same --out, other --work-dir: exit code 2\n${sameOut.stderr}`);
    t.match(sameOut.stderr, /error: E_LOCKED: the output folder \(--out\) .* is in use by another run/);
    t.match(sameOut.stderr, `pid ${pid} on host `);
    t.match(sameOut.stderr, `started ${held.outLock.holder!.started_at}`);
    t.match(sameOut.stderr, '--out ' + out, 'names the first job\'s command');
    t.notOk(existsSync(work2), 'the refused job left no work folder');

    const out3 = join(cwd, 'out3');
    const sameWork = await runCli([...common, '--out', out3, '--work-dir', join(out, '.work')], cwd);
    t.equal(sameWork.code, 2, `other --out, same work folder: exit code 2\n${sameWork.stderr}`);
    t.match(sameWork.stderr, /error: E_LOCKED: the work folder \(--work-dir\) .* is in use by another run/);
    t.match(sameWork.stderr, `pid ${pid} on host `);
    t.notOk(existsSync(out3), 'the refused job removed the output folder it had made for its lock');

    t.equal((await readLock(join(out, LOCK_FILE)))?.raw, held.outLock.raw, 'the first job\'s lock is untouched');
    t.equal((await readLock(join(out, '.work', LOCK_FILE)))?.raw, held.workLock.raw);

    first.child.kill('SIGCONT');
    const result = await first.done;
    t.equal(result.code, 0, `the first job finishes\n${result.stderr}`);
    await goodShards(t, out);
    t.notOk(existsSync(join(out, LOCK_FILE)), 'the output folder\'s lock is released');
    t.notOk(existsSync(join(out, '.work', LOCK_FILE)), 'the work folder\'s lock is released');
  });

  t.test('a SIGKILLed job leaves its locks; the next run takes them over at once, saying so, and finishes', async (t) => {
    const out = join(cwd, 'out-killed');
    const { run, pid } = await startLocked(t, out);
    run.child.kill('SIGKILL');
    t.equal((await run.done).signal, 'SIGKILL');
    t.ok(existsSync(join(out, LOCK_FILE)) && existsSync(join(out, '.work', LOCK_FILE)), 'both lock files are left');
    const again = await runCli([...common, '--out', out], cwd);
    t.equal(again.code, 0, again.stderr);
    for (const lock of [join(out, LOCK_FILE), join(out, '.work', LOCK_FILE)]) {
      t.match(again.stderr, `taking over the stale lock ${lock} of pid ${pid} on host `, `${lock}: taken over`);
    }
    t.match(again.stderr, `process ${pid} is gone`);
    await goodShards(t, out);
    t.notOk(existsSync(join(out, LOCK_FILE)));
  });

  t.test('an output folder that cannot be made: exit 2 naming it, before any lock is tried', async (t) => {
    // The path checks (stages/dataset/paths.ts) run before the lock; E_LOCK's own case is in test/engine/lock.test.ts.
    const r = await runCli([...common, '--out', join(csv, 'out')], cwd);
    t.equal(r.code, 2, r.stderr);
    t.match(r.stderr, `--out ${join(csv, 'out')}: ENOTDIR`);
    t.notMatch(r.stderr, 'E_LOCK');
  });

  t.test('a job stopped by SIGTERM leaves no lock, whatever step it was in', async (t) => {
    const out = join(cwd, 'out-term');
    const { run } = await startLocked(t, out);
    run.child.kill('SIGTERM');
    const r = await run.done;
    // Before the graph runs nothing handles SIGTERM but the lock: the process ends by the signal; once the graph
    // runs, the job stops it and exits with 143.
    t.ok(r.code === 143 || r.signal === 'SIGTERM', `ended by SIGTERM (code ${r.code}, signal ${r.signal})\n${r.stderr}`);
    t.notOk(existsSync(join(out, LOCK_FILE)), 'the output folder\'s lock is released');
    t.notOk(existsSync(join(out, '.work', LOCK_FILE)), 'the work folder\'s lock is released');
  });
}
