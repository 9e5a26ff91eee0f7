import t from 'tap';
import { mkdtemp, readFile, readdir, rm, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect, summarize } from '../../stages/cli/inspect.js';
import { ExampleType } from '../../stages/tfrecord/example-proto.js';
import { toExample } from '../../stages/to-example.js';
import { writeTfrecords, type WriteSummary } from '../../stages/write-tfrecords.js';
import { buildManifest } from '../../stages/dataset/manifest.js';
import { openStaging, prepareCommit } from '../../stages/dataset/commit.js';
import { frameRecord } from '../../stages/tfrecord/framing.js';
import { fromArray, patientRecord, stageContext } from '../helpers/examples.js';

/** A dataset as the job leaves it: shards and their manifest.json. */
async function dataset(t: Tap.Test, shards: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'insp-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const records = Array.from({ length: 6 }, (_, i) => patientRecord(`P${i}`, i + 1, i % 2 ? 'MSS' : 'MSI').record);
  let summary: WriteSummary | undefined;
  await writeTfrecords({ outDir: dir, shards, onSummary: (s) => (summary = s) })(toExample({ withLabel: true })(fromArray(records), stageContext('to-example')), stageContext('write'));
  const csv = `${dir}.csv`;
  await writeFile(csv, 'image_id,center_id,patient_id,image_num\n');
  t.teardown(() => rm(csv, { force: true }));
  const manifest = await buildManifest(dir, { runId: 'test', shards: summary!.shards, csvFile: csv, params: {}, models: {} });
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { log: (l: string) => out.push(l), error: (l: string) => err.push(l) }, out, err };
}

t.test('good output: exit 0 with per-shard and per-patient lines', async (t) => {
  const dir = await dataset(t, 2);
  const c = capture();
  t.equal(await inspect([dir], c.io), 0);
  t.same(c.err, []);
  t.match(c.out.join('\n'), /data-00000-of-00002.tfrecord: records 3, bytes \d+/);
  t.match(c.out.join('\n'), /data-00001-of-00002.tfrecord: records 3/);
  t.ok(c.out.includes('  P3: tiles 4, label MSS, center 1, images 1, embeddings avg 4, max 4'), c.out.join('\n'));
  t.match(c.out.at(-1)!, /total: 2 shard\(s\), 6 records, \d+ bytes, 0 problem/);
  t.equal(await inspect(dir, capture().io), 0, 'a plain directory argument works too');
});

t.test('a flipped byte: exit 1, naming the file and the byte offset', async (t) => {
  const dir = await dataset(t, 2);
  const file = join(dir, 'data-00001-of-00002.tfrecord');
  const bytes = await readFile(file);
  const firstLength = Number(bytes.readBigUInt64LE(0));
  const second = firstLength + 16;
  bytes[second + 12 + 30]! ^= 1; // inside the data of the second record
  await writeFile(file, bytes);
  const c = capture();
  t.equal(await inspect([dir], c.io), 1);
  t.match(c.err.join('\n'), `E_TFRECORD_CORRUPT: ${file}: byte offset ${second + 12}: data CRC mismatch`);
  t.match(c.out.join('\n'), /data-00001-of-00002.tfrecord: records 1/, 'records before the damage are still reported');

  bytes[second + 12 + 30]! ^= 1;
  bytes[second + 3]! ^= 4; // in the length
  await writeFile(file, bytes);
  const d = capture();
  t.equal(await inspect([dir], d.io), 1);
  t.match(d.err.join('\n'), `${file}: byte offset ${second}: length CRC mismatch`);
});

t.test('missing shards, invalid Examples, duplicates, no shards, usage', async (t) => {
  const dir = await dataset(t, 3);
  await unlink(join(dir, 'data-00001-of-00003.tfrecord'));
  const c = capture();
  t.equal(await inspect([dir], c.io), 1);
  t.match(c.err.join('\n'), /data-00001-of-00003.tfrecord is missing/);

  // A record with sound CRCs that is not a valid patient Example.
  const junk = join(dir, 'junk-00000-of-00001.tfrecord');
  await writeFile(junk, frameRecord(new Uint8Array([0x0a, 0x00])));
  const d = capture();
  t.equal(await inspect([dir, '--prefix', 'junk'], d.io), 1);
  t.match(d.err.join('\n'), `E_EXAMPLE_INVALID: ${junk}: byte offset 0: feature patient_id (bytes_list) is missing`);

  const copy = join(dir, 'copy-00000-of-00001.tfrecord');
  await writeFile(copy, await readFile(join(dir, 'data-00000-of-00003.tfrecord')));
  const e = capture();
  t.equal(await inspect([dir], e.io), 1);
  t.match(e.err.join('\n'), /E_DUPLICATE_PATIENT: .*patient P0 already in/);

  const empty = await mkdtemp(join(tmpdir(), 'insp-'));
  t.teardown(() => rm(empty, { recursive: true, force: true }));
  const f = capture();
  t.equal(await inspect([empty], f.io), 1);
  t.match(f.err.join('\n'), /no \*-NNNNN-of-NNNNN.tfrecord shards/);
  t.equal(await inspect([], capture().io), 2);
  t.equal(await inspect([dir, '--what'], capture().io), 2);
  t.equal(await inspect([join(empty, 'nope')], capture().io), 2);
  t.same((await readdir(empty)), []);
});

t.test('the manifest: a 0-byte, missing, unlisted or changed shard, no manifest, a half-done swap', async (t) => {
  const run = async (dir: string): Promise<{ code: number; err: string }> => {
    const c = capture();
    const code = await inspect([dir], c.io);
    return { code, err: c.err.join('\n') };
  };
  const dir = await dataset(t, 2);
  const first = join(dir, 'data-00000-of-00002.tfrecord');
  const good = await readFile(first);

  // A rerun that once wrote an empty shard over a good one: the shard is 0 bytes and not what the manifest says.
  await writeFile(first, '');
  let r = await run(dir);
  t.equal(r.code, 1);
  t.match(r.err, `E_TFRECORD_EMPTY: ${first} is 0 bytes`);
  t.match(r.err, `E_MANIFEST_MISMATCH: ${first} is 0 bytes, manifest.json says ${good.length}`);

  const changed = Buffer.from(good);
  changed[changed.length - 1]! ^= 1;
  await writeFile(first, changed);
  r = await run(dir);
  t.equal(r.code, 1);
  t.match(r.err, `E_MANIFEST_MISMATCH: ${first}: sha256 differs from manifest.json's`);

  await unlink(first);
  r = await run(dir);
  t.equal(r.code, 1);
  t.match(r.err, `E_TFRECORD_MISSING: ${first} is listed in manifest.json but missing`);
  await writeFile(first, good);
  t.equal((await run(dir)).code, 0, 'restored: no problem');

  const stray = join(dir, 'data-00000-of-00001.tfrecord');
  await writeFile(stray, await readFile(join(dir, 'data-00001-of-00002.tfrecord')));
  r = await run(dir);
  t.equal(r.code, 1);
  t.match(r.err, `E_TFRECORD_UNLISTED: ${stray} is not listed in manifest.json`);
  await unlink(stray);

  await unlink(join(dir, 'manifest.json'));
  r = await run(dir);
  t.equal(r.code, 1);
  t.match(r.err, `E_MANIFEST_MISSING: ${join(dir, 'manifest.json')} is missing`);

  await writeFile(join(dir, 'manifest.json'), '{"format": 1, "shards": "no"}');
  r = await run(dir);
  t.equal(r.code, 1);
  t.match(r.err, `E_MANIFEST_INVALID: ${join(dir, 'manifest.json')}: not a manifest this version reads`);
});

t.test('a committed swap not yet done is a problem until a run finishes it', async (t) => {
  const dir = await dataset(t, 1);
  const staging = await openStaging(dir);
  await writeFile(join(staging.dir, 'data-00000-of-00001.tfrecord'), await readFile(join(dir, 'data-00000-of-00001.tfrecord')));
  const shard = { file: 'data-00000-of-00001.tfrecord', records: 6, bytes: (await readFile(join(dir, 'data-00000-of-00001.tfrecord'))).length };
  await prepareCommit(staging, await buildManifest(staging.dir, { runId: staging.runId, shards: [shard], csvFile: `${dir}.csv`, params: {}, models: {} }));
  const c = capture();
  t.equal(await inspect([dir], c.io), 1);
  t.match(c.err.join('\n'), `E_DATASET_SWAP_PENDING: ${join(dir, '.dataset-commit.json')}: run ${staging.runId}'s dataset is committed but not yet swapped in`);
});

/** An Example's bytes from plain features (what summarize reads), for the embedding schema checks. */
function example(extra: Record<string, object>): Uint8Array {
  const base: Record<string, object> = {
    center_id: { int64_list: { value: [1] } },
    color_histogram: { float_list: { value: new Array(4096).fill(0) } },
    image_ids: { bytes_list: { value: [Buffer.from('a')] } },
    num_tiles: { int64_list: { value: [2] } },
    patient_id: { bytes_list: { value: [Buffer.from('P')] } },
    tile_image_index: { int64_list: { value: [0, 0] } },
    tile_x: { int64_list: { value: [0, 448] } },
    tile_y: { int64_list: { value: [0, 0] } },
  };
  return ExampleType.encode(ExampleType.fromObject({ features: { feature: { ...base, ...extra } } })).finish();
}

t.test('named embeddings (a ViT): inspect reads names and widths from embedding_outputs / embedding_dims and checks each feature', async (t) => {
  const floats = (n: number) => ({ float_list: { value: new Array(n).fill(0.5) } });
  const named = (dims: number[], names = ['cls', 'mean']) => ({ embedding_outputs: { bytes_list: { value: names.map((x) => Buffer.from(x)) } }, embedding_dims: { int64_list: { value: dims } } });
  t.same(summarize(example({ ...named([3, 5]), cls_embedding: floats(6), mean_embedding: floats(10) })).embeddings, [{ name: 'cls', dim: 3 }, { name: 'mean', dim: 5 }]);
  t.same(summarize(example({ avg_embedding: floats(8), max_embedding: floats(8) })).embeddings, [{ name: 'avg', dim: 4 }, { name: 'max', dim: 4 }], 'the CNN schema');
  t.throws(() => summarize(example({ ...named([3, 5]), cls_embedding: floats(6), mean_embedding: floats(8) })), /mean_embedding has 8 values, not num_tiles \(2\) x embedding_dims \(5\)/);
  t.throws(() => summarize(example({ ...named([3]), cls_embedding: floats(6), mean_embedding: floats(10) })), /embedding_outputs \(2\) and embedding_dims \(1\) do not name the same outputs/);
  t.throws(() => summarize(example({ ...named([3, 5]), cls_embedding: floats(6) })), /feature mean_embedding \(float_list\) is missing/);
});
