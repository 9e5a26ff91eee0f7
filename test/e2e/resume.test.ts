/**
 * Resume through the compiled CLI: a run killed with SIGKILL (parent only), stopped with Ctrl-C (SIGINT to
 * the process group) or SIGTERM (parent only) leaves
 * no process behind; running the same command again redoes only the slides without a committed
 * checkpoint and writes the same bytes as a clean run.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { descendants, isAlive } from '../../stages/cli/proc-tree.js';
import { e2eUnavailable, makeSlides, readReport, runCli, shardBytes, startCli, tempDir, TILE, TILE_FLAGS, waitFor, writeCsv, type CliResult, type SlideSpec } from '../helpers/e2e.js';

const T = TILE.tileSize;
// Six slides of 12 kept tiles each, three patients: long enough to stop part-way.
const SLIDES: SlideSpec[] = Array.from({ length: 6 }, (_, i) => ({
  image_id: `s${i}`,
  width: 1792,
  height: 1792,
  seed: 40 + i,
  tissue: [{ kind: 'rect' as const, x: T * (i % 3), y: T, w: 4 * T, h: 3 * T }],
}));

/** Committed checkpoints (`*.done`) of a run's output folder (one fingerprint directory). */
async function doneCheckpoints(out: string): Promise<number> {
  const root = join(out, '.work', 'checkpoints');
  if (!existsSync(root)) return 0;
  let n = 0;
  for (const fp of await readdir(root)) n += (await readdir(join(root, fp))).filter((f) => f.endsWith('.done')).length;
  return n;
}

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'e2e-resume-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, SLIDES);
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, SLIDES.map((s, i) => ({ image_id: s.image_id, center_id: Math.floor(i / 2) % 2, patient_id: `p${Math.floor(i / 2)}`, image_num: i % 2, label: String(Math.floor(i / 2) % 2) })), true);
  const args = (out: string): string[] => ['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--workers', '2', '--progress', 'none'];

  // The reference: a clean run (also builds the demo models and the LUT in cwd/.cache, once).
  const cleanOut = join(cwd, 'clean');
  const clean = await runCli([...args(cleanOut), '--no-resume'], cwd);
  const cleanBytes = await shardBytes(cleanOut);

  /**
   * Starts a run, collects its worker pids while it runs, and once some but not all slides are
   * checkpointed sends `signal` to the parent only. Returns the result, the pids seen, and how many
   * checkpoints were committed when the processes were gone.
   */
  async function interrupted(out: string, signal: NodeJS.Signals, target: 'parent' | 'group'): Promise<{ result: CliResult; pids: Set<number>; done: number }> {
    const run = startCli(args(out), cwd, { group: target === 'group' });
    const pid = run.child.pid;
    if (pid === undefined || pid <= 1) throw new Error(`bad child pid ${pid}`);
    const pids = new Set<number>();
    let exited = false;
    void run.done.then(() => (exited = true));
    await waitFor('a first committed checkpoint', async () => {
      for (const p of descendants(pid)) pids.add(p);
      if (exited) throw new Error('the run ended before it could be interrupted');
      return (await doneCheckpoints(out)) >= 1;
    });
    // A terminal's Ctrl-C signals the whole foreground group (the workers too); the group id is the child's pid.
    if (target === 'group') process.kill(-pid, signal);
    else run.child.kill(signal);
    const result = await run.done;
    await waitFor('every worker process to end', () => [...pids].every((pid) => !isAlive(pid)), 20_000);
    return { result, pids, done: await doneCheckpoints(out) };
  }

  /** Runs the same command again: exit 0, same bytes as the clean run, only unfinished slides redone. */
  async function resumes(t: Tap.Test, out: string, committed: number): Promise<void> {
    const again = await runCli(args(out), cwd);
    t.equal(again.code, 0, again.stderr);
    const bytes = await shardBytes(out);
    t.same([...bytes.keys()], [...cleanBytes.keys()], 'same shard files as the clean run');
    for (const [f, b] of bytes) t.ok(b.equals(cleanBytes.get(f)!), `${f} byte-identical to the clean run`);
    const report = await readReport(out);
    t.ok(report.slides.every((s) => s.status === 'ok'));
    const resumed = report.slides.filter((s) => s.resumed === true).length;
    t.equal(resumed, committed, 'slides with a committed checkpoint are replayed, not redone');
    t.equal(report.slides.length - resumed, SLIDES.length - committed, 'the others are processed');
  }

  t.test('clean run', async (t) => {
    t.equal(clean.code, 0, clean.stderr);
    t.ok(cleanBytes.size > 0);
    const report = await readReport(cleanOut);
    t.ok(report.slides.every((s) => s.status === 'ok' && s.resumed === false && s.tiles_kept === 12));
  });

  t.test('SIGKILL of the parent: no worker survives; the rerun redoes only unfinished slides, same bytes', async (t) => {
    const out = join(cwd, 'killed');
    const { result, pids, done } = await interrupted(out, 'SIGKILL', 'parent');
    t.equal(result.signal, 'SIGKILL');
    t.ok(pids.size >= 1, `worker pids seen: ${[...pids].join(', ')}`);
    t.ok(done >= 1 && done < SLIDES.length, `stopped part-way: ${done} of ${SLIDES.length} slides committed`);
    await resumes(t, out, done);
  });

  t.test('Ctrl-C (SIGINT to the process group): exit 130, says how to resume, no worker survives; the rerun gives the same bytes', async (t) => {
    const out = join(cwd, 'interrupted');
    const { result, pids, done } = await interrupted(out, 'SIGINT', 'group');
    t.equal(result.code, 130, result.stderr);
    t.match(result.stderr, /run the same command again to resume/);
    t.notMatch(result.stderr, /failed: not processed/, 'unfinished slides are counted, not listed as failures');
    t.match(result.stderr, `${done} of ${SLIDES.length} slide(s) finished and checkpointed`, 'says what a rerun reuses');
    t.ok(pids.size >= 1);
    t.ok(done >= 1 && done < SLIDES.length, `stopped part-way: ${done} of ${SLIDES.length} slides committed`);
    await resumes(t, out, done);
  });

  t.test('SIGTERM to the parent only: it stops its workers itself, exit 143', async (t) => {
    const out = join(cwd, 'terminated');
    const { result, pids, done } = await interrupted(out, 'SIGTERM', 'parent');
    t.equal(result.code, 143, result.stderr);
    t.match(result.stderr, /run the same command again to resume/);
    t.ok(pids.size >= 1, 'workers were seen, and all are gone');
    t.ok(done >= 1 && done < SLIDES.length, `stopped part-way: ${done} of ${SLIDES.length} slides committed`);
  });
}
