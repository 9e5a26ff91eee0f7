/**
 * A full disk while the output is written (ENOSPC), through the compiled CLI on a small tmpfs: one clear line
 * naming the path and the errno (no stack trace), the report still written where it can be, no temporary file
 * left, exit 1, and the previous dataset untouched. Needs root (mount); skips with a message otherwise.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { e2eUnavailable, makeSlides, readReport, runCli, tempDir, TILE, TILE_FLAGS, writeCsv, type SlideSpec } from '../helpers/e2e.js';

const T = TILE.tileSize;
const SLIDES: SlideSpec[] = ['a0', 'b0', 'c0'].map((image_id, i) => ({ image_id, width: 1344, height: 1344, seed: 70 + i, tissue: [{ kind: 'rect' as const, x: T, y: T, w: 3 * T, h: 2 * T }] }));

/** Every file under `dir` (relative paths) with its sha256; folders as 'folder'. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const rel = join(e.parentPath, e.name).slice(dir.length + 1);
    files[rel] = e.isDirectory() ? 'folder' : createHash('sha256').update(await readFile(join(dir, rel))).digest('hex');
  }
  return files;
}

const unavailable = e2eUnavailable() ?? (process.getuid?.() !== 0 ? 'needs root (to mount a small tmpfs)' : undefined);
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'e2e-nospace-');
  const space = join(cwd, 'space');
  await mkdir(space);
  let mounted = true;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', space], { stdio: 'pipe' });
    t.teardown(() => execFileSync('umount', [space]));
  } catch (err) {
    mounted = false;
    t.plan(0, `cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]}`);
  }
  if (mounted) {
    const slidesDir = join(cwd, 'slides');
    await makeSlides(slidesDir, SLIDES);
    const csv = join(cwd, 'in.csv');
    await writeCsv(csv, SLIDES.map((s, i) => ({ image_id: s.image_id, center_id: i % 2, patient_id: `p${i}`, image_num: 0, label: String(i % 2) })), true);
    const out = join(space, 'out'); // the work folder is <out>/.work: on the small tmpfs too
    const args = ['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--workers', '2', '--progress', 'none'];
    const filler = join(space, 'filler');
    /** Fills the tmpfs until `left` bytes are free. */
    async function fillUntil(left: number): Promise<void> {
      await rm(filler, { force: true });
      const s = await statfs(space);
      await writeFile(filler, Buffer.alloc(s.bavail * s.bsize - left));
    }
    const tmpReports: string[] = [];
    t.teardown(() => Promise.all(tmpReports.map((d) => rm(d, { recursive: true, force: true }))));

    const first = await runCli(args, cwd);
    const good = await snapshot(out);
    const size = async (f: string): Promise<number> => (await readFile(join(out, f))).length;
    const shard = await size('data-00000-of-00001.tfrecord');
    const json = await size('report.json');
    const html = await size('report.html');
    const datasetOf = (snap: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(snap).filter(([f]) => !f.startsWith('.work')));

    t.test('the first run', async (t) => {
      t.equal(first.code, 0, first.stderr);
      t.ok(shard > 100_000, `a shard of ${shard} bytes`);
    });

    t.test('no space for the shards: one line with the path and ENOSPC, the report in the system temporary folder, the dataset untouched', async (t) => {
      await fillUntil(16 * 1024);
      const r = await runCli(args, cwd);
      t.equal(r.code, 1, r.stderr);
      t.match(r.stderr, new RegExp(`error: \\[WriteTFRecords\\] cannot write ${out}/\\.staging-[^ ]+: ENOSPC \\(no space left on device\\)`));
      t.match(r.stderr, new RegExp(`error: E_OUTPUT_IO: cannot write ${join(out, '.work')}/report\\.(json|html): ENOSPC \\(no space left on device\\)`), 'the work folder is full too');
      t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
      const where = /this run's report: (\S+report\.html)/.exec(r.stderr)?.[1];
      t.ok(where, `the report's place is said\n${r.stderr}`);
      tmpReports.push(dirname(where!));
      t.match(r.stderr, `The dataset in ${out} was left as it was (the run did not finish)`);
      t.equal((await readReport(dirname(where!))).exit_code, 1, 'the report, in the system temporary folder');
      const after = await snapshot(out);
      t.same(datasetOf(after), datasetOf(good), 'the dataset as it was (sha256)');
      t.same(Object.keys(after).filter((f) => /\.staging-|\.tmp/.test(f)), [], 'no staging folder or temporary file left');
      t.equal((await runCli(['inspect', out], cwd)).code, 0, 'the old manifest verifies');
    });

    t.test('no space for report.html: one line naming it, the report in the work folder, the dataset untouched', async (t) => {
      t.ok(shard >= html / 2, 'the space the discarded shard frees takes the report in the work folder');
      // report.json is written first and its size varies from run to run (timings, the timeline): room for it with a
      // margin of half its size, and for half of report.html, which is larger.
      t.ok(html > json, `report.html (${html} B) is larger than report.json (${json} B)`);
      await fillUntil(shard + Math.ceil(json * 1.5) + Math.floor(html / 2));
      const r = await runCli(args, cwd);
      t.equal(r.code, 1, r.stderr);
      t.match(r.stderr, new RegExp(`error: E_OUTPUT_IO: cannot write ${out}/\\.staging-[^/]+/report\\.html: ENOSPC \\(no space left on device\\)`));
      t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
      t.match(r.stderr, `The dataset in ${out} was left as it was (writing the new dataset failed); this run's report: ${join(out, '.work', 'report.html')}`);
      t.equal((await readReport(join(out, '.work'))).exit_code, 1);
      const after = await snapshot(out);
      t.same(datasetOf(after), datasetOf(good), 'the dataset as it was (sha256)');
      t.same(Object.keys(after).filter((f) => /\.staging-|\.tmp/.test(f)), [], 'no staging folder or report.html.tmp-PID left');
    });

    t.test('with space again, the next run replaces the dataset', async (t) => {
      await rm(filler, { force: true });
      const r = await runCli(args, cwd);
      t.equal(r.code, 0, r.stderr);
      t.equal(createHash('sha256').update(await readFile(join(out, 'data-00000-of-00001.tfrecord'))).digest('hex'), good['data-00000-of-00001.tfrecord'], 'the same shard bytes');
      t.ok(existsSync(join(out, 'manifest.json')));
    });
  }
}
