/**
 * The dataset in --out is replaced only as a whole, by a finished run (stages/dataset/), through the compiled
 * CLI: a rerun with a mistyped --slides is refused before any work and the old shard stays byte-identical; a
 * run that writes no patient leaves the folder as it was (its report goes to the work folder); a SIGKILL during
 * the job leaves the previous dataset complete; a swap killed after its commit point is finished by the next run.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { spawn } from 'node:child_process';
import { descendants, isAlive } from '../../stages/cli/proc-tree.js';
import { openStaging, prepareCommit, swapSteps } from '../../stages/dataset/commit.js';
import { buildManifest } from '../../stages/dataset/manifest.js';
import { e2eUnavailable, makeSlides, readReport, runCli, startCli, tempDir, TILE, TILE_FLAGS, waitFor, writeCsv, type SlideSpec } from '../helpers/e2e.js';

const T = TILE.tileSize;
const SLIDES: SlideSpec[] = ['a0', 'b0', 'c0'].map((image_id, i) => ({ image_id, width: 1344, height: 1344, seed: 60 + i, tissue: [{ kind: 'rect' as const, x: T, y: T, w: 3 * T, h: 2 * T }] }));

/**
 * Every file of the dataset folder (the work folder left out) with its sha256: a dataset's folder (the report's
 * pictures, report-files/) by its files' relative paths, a hidden folder (staging) as 'folder'.
 */
async function snapshot(out: string, prefix = ''): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const f of (await readdir(join(out, prefix))).sort()) {
    if (f === '.work') continue;
    const path = join(out, prefix, f);
    if ((await stat(path)).isDirectory()) {
      if (f.startsWith('.')) files[`${prefix}${f}`] = 'folder';
      else Object.assign(files, await snapshot(out, `${prefix}${f}/`));
    } else files[`${prefix}${f}`] = createHash('sha256').update(await readFile(path)).digest('hex');
  }
  return files;
}

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'e2e-dataset-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, SLIDES);
  const emptySlides = join(cwd, 'no-slides');
  await mkdir(emptySlides);
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, SLIDES.map((s, i) => ({ image_id: s.image_id, center_id: i % 2, patient_id: `p${i}`, image_num: 0, label: String(i % 2) })), true);
  const out = join(cwd, 'out');
  const args = (slides: string, ...more: string[]): string[] => ['--csv', csv, '--slides', slides, '--out', out, ...TILE_FLAGS, '--workers', '2', '--progress', 'none', ...more];
  const shard = join(out, 'data-00000-of-00001.tfrecord');

  const first = await runCli(args(slidesDir), cwd);
  const good = await snapshot(out);
  const goodBytes = new Map<string, Buffer>();
  for (const f of Object.keys(good)) goodBytes.set(f, await readFile(join(out, f)));

  t.test('a finished run: shards, report and a manifest that verifies', async (t) => {
    t.equal(first.code, 0, first.stderr);
    t.same(Object.keys(good).filter((f) => !f.startsWith('report-files/')), ['data-00000-of-00001.tfrecord', 'manifest.json', 'report.html', 'report.json'], 'no staging folder or journal left');
    t.equal(Object.keys(good).filter((f) => f.startsWith('report-files/')).length, 6, 'the report\'s pictures: a thumbnail and a mask per slide');
    const manifest = JSON.parse(goodBytes.get('manifest.json')!.toString()) as { shards: Array<{ file: string; records: number; bytes: number; sha256: string }>; csv: { path: string; sha256: string }; models: Record<string, { sha256: string }> };
    t.match(manifest.shards, [{ file: 'data-00000-of-00001.tfrecord', records: 3, bytes: goodBytes.get('data-00000-of-00001.tfrecord')!.length, sha256: good['data-00000-of-00001.tfrecord'] }]);
    t.same(manifest.csv, { path: csv, sha256: createHash('sha256').update(await readFile(csv)).digest('hex') });
    t.ok(manifest.models['embedder']?.sha256, 'the models with their sha256');
    const inspected = await runCli(['inspect', out], cwd);
    t.equal(inspected.code, 0, inspected.stderr);
  });

  t.test('a rerun with a mistyped --slides: exit 2 before any work, the old shard byte-identical', async (t) => {
    const r = await runCli(args(`${slidesDir}x`), cwd);
    t.equal(r.code, 2, r.stderr);
    t.match(r.stderr, `--slides ${slidesDir}x: ENOENT`);
    t.same(await snapshot(out), good, 'every file as it was (sha256)');
    t.equal((await runCli(['inspect', out], cwd)).code, 0);
  });

  t.test('a run that writes no patient: exit 1, the folder as it was, the report in the work folder', async (t) => {
    const r = await runCli(args(emptySlides), cwd);
    t.equal(r.code, 1, r.stderr);
    const workReport = join(out, '.work', 'report.html');
    t.match(r.stderr, `The dataset in ${out} was left as it was (no patient was written); this run's report: ${workReport}`);
    t.same(await snapshot(out), good, 'every file as it was (sha256)');
    const report = await readReport(join(out, '.work'));
    t.equal(report.exit_code, 1);
    t.equal(report.patients.written, 0);
    t.ok(report.slides.every((s) => s.status === 'failed'));
  });

  t.test('SIGKILL during the job: the previous dataset stays complete; the next run replaces it and clears the leftovers', async (t) => {
    const run = startCli(args(slidesDir, '--max-tiles', '2'), cwd, { group: true });
    const pid = run.child.pid!;
    let exited = false;
    void run.done.then(() => (exited = true));
    const pids = new Set<number>();
    await waitFor('the run to stage its output and finish a slide', async () => {
      if (exited) throw new Error('the run ended before it could be killed');
      for (const p of descendants(pid)) pids.add(p);
      const staging = (await readdir(out)).some((f) => f.startsWith('.staging-'));
      const done = (await readdir(join(out, '.work', 'checkpoints'))).length > 1; // a second fingerprint: --max-tiles
      return staging && done;
    });
    process.kill(-pid, 'SIGKILL');
    t.equal((await run.done).signal, 'SIGKILL');
    await waitFor('every process of the run to end', () => [...pids, pid].every((p) => !isAlive(p)), 20_000);
    const after = await snapshot(out);
    t.ok(Object.keys(after).some((f) => f.startsWith('.staging-')), 'the killed run left its staging folder');
    for (const [f, sha] of Object.entries(good)) t.equal(after[f], sha, `${f} as it was`);
    const inspected = await runCli(['inspect', out], cwd);
    t.equal(inspected.code, 0, `the old manifest verifies\n${inspected.stderr}`);

    const again = await runCli(args(slidesDir, '--max-tiles', '2'), cwd);
    t.equal(again.code, 0, again.stderr);
    const replaced = await snapshot(out);
    t.same(Object.keys(replaced), Object.keys(good), 'one dataset, the dead run staging folder removed');
    t.not(replaced['data-00000-of-00001.tfrecord'], good['data-00000-of-00001.tfrecord'], 'the new shard (2 tiles a slide)');
    t.equal((await runCli(['inspect', out], cwd)).code, 0, 'the new manifest verifies');
  });

  t.test('a swap killed after its commit point is finished by the next run', async (t) => {
    // As a commit killed half-way through its swap leaves it, made with the module's own functions: a dead run
    // staged the first dataset, wrote its journal, removed the current manifest and nothing else.
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.on('exit', resolve));
    const staging = await openStaging(out, `0badcafe-${dead.pid}-${hostname()}`);
    for (const f of Object.keys(good).filter((n) => n !== 'manifest.json')) {
      await mkdir(dirname(join(staging.dir, f)), { recursive: true });
      await writeFile(join(staging.dir, f), goodBytes.get(f)!);
    }
    const shardBytes = goodBytes.get('data-00000-of-00001.tfrecord')!.length;
    const manifest = await buildManifest(staging.dir, { runId: staging.runId, shards: [{ file: 'data-00000-of-00001.tfrecord', records: 3, bytes: shardBytes }], csvFile: csv, params: {}, models: {} });
    const journal = await prepareCommit(staging, manifest);
    await swapSteps(out, journal)[0]!.run();
    t.notOk(existsSync(join(out, 'manifest.json')), 'killed inside the swap: no manifest');
    const pending = await runCli(['inspect', out], cwd);
    t.equal(pending.code, 1);
    t.match(pending.stderr, 'E_DATASET_SWAP_PENDING');

    // The next run (one that writes nothing itself) finishes the swap before its own work.
    const r = await runCli(args(emptySlides), cwd);
    t.equal(r.code, 1, r.stderr);
    t.match(r.stderr, `Finished swapping in the dataset that run ${staging.runId} had committed in ${out}.`);
    t.equal(createHash('sha256').update(await readFile(shard)).digest('hex'), good['data-00000-of-00001.tfrecord'], 'the committed shard is in place');
    t.same(Object.keys(await snapshot(out)), Object.keys(good), 'no journal or staging folder left');
    const inspected = await runCli(['inspect', out], cwd);
    t.equal(inspected.code, 0, inspected.stderr);
  });
}
