/**
 * The dataset commit protocol (stages/dataset/commit.ts) on real folders: a commit replaces the dataset as a
 * whole and keeps the work folder; a kill after any step of the swap is rolled forward by the next recover;
 * before the commit point the old dataset stays and dead runs' leftovers are removed.
 */
import t from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { commitStaging, JOURNAL, openStaging, prepareCommit, readJournal, recover, swapSteps, type Staging } from '../../stages/dataset/commit.js';
import { buildManifest, readManifest, verifyManifest } from '../../stages/dataset/manifest.js';
import { writeDurable } from '../../stages/dataset/io.js';
import { tempDir } from '../helpers/e2e.js';

type Files = Record<string, string>;
// Each has a folder of files (the report's pictures): the swap moves it as a whole, the manifest lists its files.
const OLD: Files = { 'data-00000-of-00002.tfrecord': 'old shard 0', 'data-00001-of-00002.tfrecord': 'old shard 1, longer', 'report.json': '{"old":true}\n', 'report-files/old.jpg': 'old picture', 'report-files/both.png': 'old' };
const NEW: Files = { 'data-00000-of-00001.tfrecord': 'new shard 0 '.repeat(50), 'report.json': '{"new":true}\n', 'report.html': '<p>new</p>\n', 'report-files/both.png': 'new picture', 'report-files/new.jpg': 'new' };
const isShard = (f: string): boolean => f.endsWith('.tfrecord');

/** The pid of a process that has ended. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

async function writeFiles(dir: string, files: Files): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [f, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, f)), { recursive: true });
    await writeFile(join(dir, f), text);
  }
}

async function manifestFor(dir: string, files: Files, csv: string, runId: string) {
  const shards = Object.entries(files).filter(([f]) => isShard(f)).map(([file, text]) => ({ file, records: 1, bytes: Buffer.byteLength(text) }));
  return buildManifest(dir, { runId, shards, csvFile: csv, params: { tile_size: 224 }, models: { embedder: { path: '/m.onnx', sha256: 'a'.repeat(64) } } });
}

/** `<root>/out` holding the old dataset (with its manifest) and a work folder; a staging folder holding the new one. */
async function setup(root: string, runId?: string): Promise<{ out: string; staging: Staging; csv: string }> {
  const out = join(root, 'out');
  const csv = join(root, 'in.csv');
  await mkdir(root, { recursive: true });
  await writeFile(csv, 'image_id,center_id,patient_id,image_num\na,0,p,0\n');
  await writeFiles(out, OLD);
  await writeDurable(join(out, 'manifest.json'), JSON.stringify(await manifestFor(out, OLD, csv, 'old-run')));
  await writeFiles(join(out, '.work', 'checkpoints'), { 'a.done': 'checkpoint' });
  const staging = await openStaging(out, runId);
  await writeFiles(staging.dir, NEW);
  return { out, staging, csv };
}

/** The folder's dataset files and their text (hidden names left out), and whether the work folder is intact. */
async function contents(out: string, prefix = ''): Promise<Files> {
  const files: Files = {};
  for (const e of (await readdir(join(out, prefix), { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.name.startsWith('.') || e.name === 'manifest.json') continue;
    if (e.isDirectory()) Object.assign(files, await contents(out, `${prefix}${e.name}/`));
    else files[`${prefix}${e.name}`] = await readFile(join(out, prefix, e.name), 'utf8');
  }
  return files;
}

async function verifies(t: Tap.Test, out: string, expected: Files, what: string): Promise<void> {
  t.same(await contents(out), expected, `${what}: the files`);
  t.same(await verifyManifest(out, Object.keys(expected).filter(isShard)), [], `${what}: the manifest verifies`);
  t.equal(await readFile(join(out, '.work', 'checkpoints', 'a.done'), 'utf8'), 'checkpoint', `${what}: the work folder survives`);
}

t.test('a commit replaces the dataset as a whole; stale shards go, the work folder stays', async (t) => {
  const root = await tempDir(t, 'commit-');
  const { out, staging, csv } = await setup(root);
  await commitStaging(staging, await manifestFor(staging.dir, NEW, csv, staging.runId));
  await verifies(t, out, NEW, 'after the commit');
  t.same((await readdir(out)).filter((f) => f.startsWith('.')).sort(), ['.work'], 'no staging folder, journal or temporary file left');
  const m = await readManifest(out);
  t.equal(m?.run_id, staging.runId);
  t.match(m, { records: 1, shards: [{ file: 'data-00000-of-00001.tfrecord', records: 1, bytes: Buffer.byteLength(NEW['data-00000-of-00001.tfrecord']!) }], csv: { path: csv }, models: { embedder: { path: '/m.onnx' } } });
  t.same(m?.files.map((f) => f.file), ['report-files/both.png', 'report-files/new.jpg', 'report.html', 'report.json'], 'the folder\'s files listed by relative path');
});

t.test('a dataset without the folder replaces one with it: the old folder goes; a file of the folder changed or gone is a problem', async (t) => {
  const root = await tempDir(t, 'commit-folder-');
  const { out, staging, csv } = await setup(root);
  await rm(join(staging.dir, 'report-files'), { recursive: true });
  const plain = Object.fromEntries(Object.entries(NEW).filter(([f]) => !f.includes('/')));
  await commitStaging(staging, await manifestFor(staging.dir, plain, csv, staging.runId));
  await verifies(t, out, plain, 'after the commit');
  t.notOk(existsSync(join(out, 'report-files')), 'the old folder is gone');
  // And back: a dataset with the folder; then damage one of its files.
  const again = await openStaging(out);
  await writeFiles(again.dir, NEW);
  await commitStaging(again, await manifestFor(again.dir, NEW, csv, again.runId));
  await verifies(t, out, NEW, 'with the folder again');
  await writeFile(join(out, 'report-files', 'new.jpg'), 'NEW');
  await rm(join(out, 'report-files', 'both.png'));
  const problems = await verifyManifest(out, Object.keys(NEW).filter(isShard));
  t.match(problems, [/E_DATASET_FILE_MISSING: .*report-files\/both\.png is listed/, /E_MANIFEST_MISMATCH: .*report-files\/new\.jpg: sha256 differs/]);
});

t.test('a manifest naming a file outside the folder is refused', async (t) => {
  const root = await tempDir(t, 'commit-unsafe-');
  for (const bad of ['../x', 'a//b', '.hidden/x', '/abs', 'a/../../b']) {
    await writeFile(join(root, 'manifest.json'), JSON.stringify({ format: 1, shards: [], files: [{ file: bad, bytes: 1, sha256: 'a'.repeat(64) }] }));
    await t.rejects(readManifest(root), { code: 'E_MANIFEST_INVALID' }, `${bad} refused`);
  }
});

t.test('a kill after any step of the swap: the folder is never half-replaced, and recover rolls it forward', async (t) => {
  const root = await tempDir(t, 'commit-kill-');
  const probe = await setup(join(root, 'probe'));
  const count = swapSteps(probe.out, await prepareCommit(probe.staging, await manifestFor(probe.staging.dir, NEW, probe.csv, probe.staging.runId))).length;
  t.ok(count >= 8, `${count} steps`);
  for (let k = 0; k <= count; k++) {
    const { out, staging, csv } = await setup(join(root, `k${k}`));
    const journal = await prepareCommit(staging, await manifestFor(staging.dir, NEW, csv, staging.runId));
    t.same(await readJournal(out), journal, 'the journal is in place: the commit point');
    const steps = swapSteps(out, journal);
    for (const step of steps.slice(0, k)) await step.run();
    // Killed here: a manifest in the folder always describes the files beside it; without one, the journal says how to finish.
    const m = await readManifest(out);
    if (m !== undefined) {
      const expected = m.run_id === staging.runId ? NEW : OLD;
      t.same(await verifyManifest(out, Object.keys(expected).filter(isShard)), [], `killed after ${k} step(s): the manifest present verifies`);
    } else t.ok(existsSync(join(out, JOURNAL)), `killed after ${k} step(s): no manifest, but the journal`);
    const pending = existsSync(join(out, JOURNAL));
    t.equal(pending, k < count - 1, `killed after ${k} step(s): the journal goes in the last step but one`);
    const r = await recover(out);
    t.equal(r.rolledForward, pending ? staging.runId : undefined, `killed after ${k} step(s): recover rolls the journal forward when it is still there`);
    await verifies(t, out, NEW, `killed after ${k} step(s), recovered`);
    t.same((await readdir(out)).filter((f) => f.startsWith('.')), ['.work'], 'nothing else left');
    t.same(await recover(out), { rolledForward: undefined, removed: [] }, 'a second recover has nothing to do');
  }
});

t.test('before the commit point the old dataset stays; dead runs leftovers are removed, a live run is left alone', async (t) => {
  const root = await tempDir(t, 'commit-pre-');
  const dead = `deadbeef-${await deadPid()}-${hostname()}`;
  const { out, staging } = await setup(root, dead);
  await writeFile(join(staging.dir, 'manifest.json'), '{}'); // killed while writing its manifest
  await writeFile(join(out, `${JOURNAL}.tmp-${dead}`), '{"half'); // or its journal
  const live = await openStaging(out);
  const other = await openStaging(out, `cafecafe-1-another-host.example`);
  const r = await recover(out);
  t.same([...r.removed].sort(), [`${JOURNAL}.tmp-${dead}`, `.staging-${dead}`].sort(), 'the dead run leftovers');
  t.equal(r.rolledForward, undefined);
  await verifies(t, out, OLD, 'the old dataset');
  t.ok(existsSync(live.dir), 'a live run staging folder stays');
  t.ok(existsSync(other.dir), "another host's run staging folder stays (its process cannot be seen from here)");
});

t.test('a journal that cannot be rolled forward is an error naming it', async (t) => {
  const root = await tempDir(t, 'commit-bad-');
  const { out, staging } = await setup(root);
  await writeFile(join(out, JOURNAL), '{"format": 1, "staging": "../etc"');
  await t.rejects(recover(out), { code: 'E_DATASET_SWAP', message: `${join(out, JOURNAL)} is not valid JSON` });
  await writeFile(join(out, JOURNAL), JSON.stringify({ format: 1, run_id: 'x', staging: '../x', files: ['manifest.json'], remove: [] }));
  await t.rejects(recover(out), { code: 'E_DATASET_SWAP', message: /is not a journal this version can roll forward/ });
  const name = staging.dir.slice(out.length + 1);
  await writeFile(join(out, JOURNAL), JSON.stringify({ format: 1, run_id: 'x', staging: name, files: ['gone.tfrecord', 'manifest.json'], remove: [] }));
  await t.rejects(recover(out), { code: 'E_DATASET_SWAP', message: `names gone.tfrecord, which is neither in ${staging.dir} nor in ${out}` });
});

t.test('a CSV read from a FIFO or standard input: the manifest names it without a sha256 (it cannot be read twice)', async (t) => {
  const root = await tempDir(t, 'commit-fifo-');
  const fifo = join(root, 'in.fifo');
  spawnSync('mkfifo', [fifo]);
  if (!existsSync(fifo)) return t.skip('mkfifo is not available');
  const dir = join(root, 'd');
  await writeFiles(dir, NEW);
  const m = await manifestFor(dir, NEW, fifo, 'r');
  t.same(m.csv, { path: fifo, sha256: null }, 'a FIFO: not opened again (that would wait for a writer)');
  t.same((await manifestFor(dir, NEW, '-', 'r')).csv, { path: '-', sha256: null }, 'standard input');
});

t.test('no space for the manifest or the journal: an E_OUTPUT_IO naming it, nothing left behind, the old dataset whole', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root (to mount a small tmpfs)');
  const root = await tempDir(t, 'commit-full-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', root], { stdio: 'pipe' });
  } catch (err) {
    return t.skip(`cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]}`);
  }
  t.teardown(() => execFileSync('umount', [root]));
  const filler = join(root, 'filler');
  const fillUntil = async (left: number): Promise<void> => {
    await rm(filler, { force: true });
    const s = await statfs(root);
    await writeFile(filler, Buffer.alloc(s.bavail * s.bsize - left));
  };
  for (const [what, left] of [['manifest.json', 0], ['journal', 4096]] as const) {
    await rm(join(root, 'out'), { recursive: true, force: true });
    await rm(filler, { force: true });
    const { out, staging, csv } = await setup(root);
    const manifest = await manifestFor(staging.dir, NEW, csv, staging.runId);
    await fillUntil(left);
    const target = what === 'journal' ? join(out, `${JOURNAL}.tmp-${staging.runId}`) : join(staging.dir, 'manifest.json');
    await t.rejects(commitStaging(staging, manifest), { code: 'E_OUTPUT_IO', message: `E_OUTPUT_IO: cannot write ${target}: ENOSPC (no space left on device)` }, `no space for the ${what}`);
    t.same((await readdir(staging.dir)).filter((f) => f.includes('.tmp')), [], `${what}: no temporary file in the staging folder`);
    t.same((await readdir(out)).filter((f) => f.startsWith(JOURNAL)), [], `${what}: no journal, no journal temporary`);
    await verifies(t, out, OLD, `${what}: the old dataset`);
  }
});

t.test('a swap that fails after the commit point: the error says so (committed), the journal stays for the next run', async (t) => {
  const root = await tempDir(t, 'commit-after-');
  const { out, staging, csv } = await setup(root);
  await mkdir(join(out, 'report.html', 'in-the-way'), { recursive: true }); // a folder where a staged file goes
  const manifest = await manifestFor(staging.dir, NEW, csv, staging.runId);
  await t.rejects(commitStaging(staging, manifest), { committed: true, code: 'E_OUTPUT_IO', message: new RegExp(`cannot move in ${join(out, 'report.html')}: EISDIR`) });
  t.equal((await readJournal(out))?.run_id, staging.runId, 'the journal stays');
  await rm(join(out, 'report.html'), { recursive: true });
  t.equal((await recover(out)).rolledForward, staging.runId, 'the next run finishes the swap');
  await verifies(t, out, NEW, 'after the recover');
});
