import t from 'tap';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultShardCount, planShards, shardName, writeTfrecords, type WriteSummary } from '../../stages/write-tfrecords.js';
import { readTfrecords } from '../../stages/tfrecord/framing.js';
import type { EncodedExample } from '../../stages/tfrecord/example.js';
import { fakeExample, fromArray, stageContext } from '../helpers/examples.js';

const FINAL = /-of-.*\.tfrecord$/;

async function outDir(t: Tap.Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wtf-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** 40 patients with sizes 100..4000 bytes, in the given order. */
function examples(order: (ids: string[]) => string[]) {
  const ids = Array.from({ length: 40 }, (_, i) => `patient-${String(i).padStart(3, '0')}`);
  return order(ids).map((id) => fakeExample(id, 100 + 97 * Number(id.slice(-3))));
}

const shuffled = (ids: string[]) => ids.map((id, i) => [(i * 7919) % 41, id] as const).sort((a, b) => a[0] - b[0]).map(([, id]) => id);

async function run(dir: string, items: ReturnType<typeof examples>, shards?: number) {
  let summary: WriteSummary | undefined;
  await writeTfrecords({ outDir: dir, ...(shards === undefined ? {} : { shards }), onSummary: (s) => (summary = s) })(fromArray(items.map((i) => i.example)), stageContext('write'));
  const files = (await readdir(dir)).sort();
  const contents = new Map<string, Buffer>();
  for (const f of files) contents.set(f, await readFile(join(dir, f)));
  return { files, contents, summary: summary! };
}

async function records(dir: string, files: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const f of files) for await (const r of readTfrecords(join(dir, f))) out.push(Buffer.from(r.data).toString('hex'));
  return out;
}

t.test('names, plan and default shard count', async (t) => {
  t.equal(shardName('data', 3, 10), 'data-00003-of-00010.tfrecord');
  t.same(planShards([10, 10, 10, 10], 2), [0, 0, 1, 1]);
  t.same(planShards([100, 1, 1, 1], 2), [0, 1, 1, 1]);
  t.same(planShards([5, 5], 4), [1, 3], 'more shards than records: some stay empty');
  t.same(planShards([], 3), []);
  t.equal(defaultShardCount(0, 0), 1);
  t.equal(defaultShardCount(10, 3, 4), 3);
  t.equal(defaultShardCount(10, 2, 4), 2, 'never more shards than records');
  t.equal(defaultShardCount(1000, 500, 300), 4);
  t.throws(() => writeTfrecords({ outDir: '/tmp', shards: 0 }), { code: 'E_USAGE' });
  t.throws(() => writeTfrecords({ outDir: '/tmp', prefix: '../x' }), { code: 'E_USAGE' });
});

t.test('identical shard bytes whatever the arrival order', async (t) => {
  for (const shards of [undefined, 1, 3]) {
    const sorted = await run(await outDir(t), examples((ids) => ids), shards);
    const reversed = await run(await outDir(t), examples((ids) => [...ids].reverse()), shards);
    const mixed = await run(await outDir(t), examples(shuffled), shards);
    t.same(sorted.files, reversed.files, `shards=${shards}: same file names`);
    t.same(sorted.files, mixed.files);
    for (const f of sorted.files) {
      t.ok(sorted.contents.get(f)!.equals(reversed.contents.get(f)!), `shards=${shards} ${f}: reversed arrival gives the same bytes`);
      t.ok(sorted.contents.get(f)!.equals(mixed.contents.get(f)!), `shards=${shards} ${f}: shuffled arrival gives the same bytes`);
    }
    t.ok(sorted.files.every((f) => FINAL.test(f)), 'only final shards remain (no staging or temp files)');
  }
});

t.test('different shard counts hold the same records overall, in patient order', async (t) => {
  const expected = (await Promise.all(examples((ids) => ids).map(async (e) => Buffer.from(e.bytes).toString('hex'))));
  for (const shards of [1, 2, 5, 40, 45]) {
    const dir = await outDir(t);
    const { files, summary } = await run(dir, examples(shuffled), shards);
    t.equal(files.length, shards);
    t.same(files, Array.from({ length: shards }, (_, i) => shardName('data', i, shards)));
    t.same(await records(dir, files), expected, `${shards} shards`);
    t.equal(summary.records, 40);
    t.equal(summary.shards.reduce((s, x) => s + x.records, 0), 40);
    t.equal(summary.shards.reduce((s, x) => s + x.bytes, 0), summary.bytes);
    for (const s of summary.shards) t.equal((await readFile(join(dir, s.file))).length, s.bytes, `${s.file} size`);
  }
});

t.test('every example is disposed after it is written; backpressure: one pulled at a time', async (t) => {
  const dir = await outDir(t);
  const items = examples((ids) => ids);
  let pulled = 0;
  const violations: string[] = [];
  await writeTfrecords({ outDir: dir })(
    fromArray(items.map((i) => i.example), (index) => {
      pulled++;
      // When the writer asks for element k, element k-1 must already be written and disposed.
      if (index > 0 && (items[index - 1]!.state.disposed !== 1 || items[index - 1]!.state.reads !== 1)) violations.push(`pulled ${index} early`);
      // And nothing after k-1 has been pulled: pulls equal elements asked for.
      if (pulled !== index + 1) violations.push(`pulled ${pulled} for index ${index}`);
    }),
    stageContext('write'),
  );
  t.same(violations, []);
  t.ok(items.every((i) => i.state.disposed === 1));
});

t.test('temp-then-rename: no final-named file while writing, none after a failure', async (t) => {
  const dir = await outDir(t);
  const items = examples((ids) => ids);
  const seenWhileWriting: string[] = [];
  async function* failing(): AsyncGenerator<EncodedExample> {
    for (let i = 0; i < items.length; i++) {
      seenWhileWriting.push(...(await readdir(dir)).filter((f) => FINAL.test(f)));
      if (i === 25) throw Object.assign(new Error('upstream failed'), { code: 'E_TEST' });
      yield items[i]!.example;
    }
  }
  await t.rejects(writeTfrecords({ outDir: dir, shards: 3 })(failing(), stageContext('write')), { code: 'E_TEST' });
  t.same(seenWhileWriting, [], 'no final-named file appeared while writing');
  t.same(await readdir(dir), [], 'temporary files removed after the failure');
  t.ok(items.slice(0, 25).every((i) => i.state.disposed === 1), 'written examples disposed');
});

t.test('a failing example, a duplicate patient and an abort leave nothing behind', async (t) => {
  const dir = await outDir(t);
  const bad = fakeExample('p-bad', 10);
  const broken: EncodedExample = { ...bad.example, byteLength: 11 };
  await t.rejects(writeTfrecords({ outDir: dir })(fromArray([fakeExample('a', 5).example, broken]), stageContext('write')), { code: 'E_TFRECORD_LENGTH' });
  t.equal(bad.state.disposed, 1, 'the failing example is disposed');
  t.same(await readdir(dir), []);

  const twice = [fakeExample('a', 5), fakeExample('b', 5), fakeExample('a', 6)];
  await t.rejects(writeTfrecords({ outDir: dir })(fromArray(twice.map((x) => x.example)), stageContext('write')), { code: 'E_DUPLICATE_PATIENT', message: /patient a arrived twice/ });
  t.same(await readdir(dir), []);

  const ac = new AbortController();
  const items = examples((ids) => ids);
  await t.rejects(writeTfrecords({ outDir: dir })(fromArray(items.map((i) => i.example), (i) => i === 3 && ac.abort()), stageContext('write', ac.signal)));
  t.same(await readdir(dir), []);
  t.equal(items[3]!.state.disposed, 1, 'the element taken when the abort came is disposed');
});

t.test('cleanup: the sink closes its source when it fails', async (t) => {
  const dir = await outDir(t);
  let closed = false;
  async function* source(): AsyncGenerator<EncodedExample> {
    try {
      yield fakeExample('a', 3).example;
      yield fakeExample('a', 3).example;
      yield fakeExample('b', 3).example;
    } finally {
      closed = true;
    }
  }
  await t.rejects(writeTfrecords({ outDir: dir })(source(), stageContext('write')), { code: 'E_DUPLICATE_PATIENT' });
  t.ok(closed, 'upstream finally ran');
});

t.test('stale shards of an earlier run with another shard count are replaced; other files kept', async (t) => {
  const dir = await outDir(t);
  await writeFile(join(dir, 'data-00000-of-00003.tfrecord'), 'old');
  await writeFile(join(dir, 'data-00002-of-00003.tfrecord'), 'old');
  await writeFile(join(dir, 'other-00000-of-00001.tfrecord'), 'keep');
  await writeFile(join(dir, 'report.json'), '{}');
  const { files } = await run(dir, examples((ids) => ids), 2);
  t.same(files, ['data-00000-of-00002.tfrecord', 'data-00001-of-00002.tfrecord', 'other-00000-of-00001.tfrecord', 'report.json']);
});

t.test('no patients: one empty shard', async (t) => {
  const dir = await outDir(t);
  const { files, contents, summary } = await run(dir, []);
  t.same(files, ['data-00000-of-00001.tfrecord']);
  t.equal(contents.get(files[0]!)!.length, 0);
  t.equal(summary.records, 0);
});
