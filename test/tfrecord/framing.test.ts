import t from 'tap';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c, maskCrc } from '../../stages/tfrecord/crc32c.js';
import { TfrecordWriter, frameRecord, readTfrecords, type TfrecordEntry } from '../../stages/tfrecord/framing.js';

const bytes = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 131 + seed * 17) & 0xff);

async function readAll(path: string): Promise<TfrecordEntry[]> {
  const out: TfrecordEntry[] = [];
  for await (const r of readTfrecords(path)) out.push(r);
  return out;
}

t.test('write then read back records, streamed from chunks', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tfr-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'a.tfrecord');
  const records = [bytes(0, 1), bytes(1, 2), bytes(100, 3), bytes(3 << 20, 4), bytes(5000, 5)];
  const w = await TfrecordWriter.create(path);
  for (const r of records) {
    // Split each record into uneven chunks to exercise the incremental CRC.
    const chunks = [r.subarray(0, 7), r.subarray(7, 1000), r.subarray(1000)];
    await w.writeRecord(r.length, (async function* () { yield* chunks; })());
  }
  await w.close();
  const back = await readAll(path);
  t.equal(back.length, records.length);
  let offset = 0;
  for (let i = 0; i < records.length; i++) {
    t.same(Buffer.from(back[i]!.data), Buffer.from(records[i]!), `record ${i}`);
    t.equal(back[i]!.offset, offset);
    offset += records[i]!.length + 16;
  }
  // The streamed file equals the one-buffer framing, byte for byte.
  const file = await readFile(path);
  t.same(file, Buffer.concat(records.map(frameRecord)));
  t.equal(w.position, file.length);
  t.equal(w.records, records.length);
});

t.test('framing layout matches TensorFlow', async (t) => {
  const data = new TextEncoder().encode('hello');
  const framed = frameRecord(data);
  const view = new DataView(framed.buffer);
  t.equal(view.getBigUint64(0, true), 5n);
  t.equal(view.getUint32(8, true), maskCrc(crc32c(framed.subarray(0, 8))));
  t.same(Buffer.from(framed.subarray(12, 17)).toString(), 'hello');
  t.equal(view.getUint32(17, true), maskCrc(crc32c(data)));
});

t.test('a flipped byte is detected with its offset', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tfr-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const good = Buffer.concat([frameRecord(bytes(50, 1)), frameRecord(bytes(80, 2))]);
  const second = 50 + 16;
  const cases: Array<[string, number, RegExp, number]> = [
    ['length byte of record 2', second + 1, /length CRC mismatch/, second],
    ['length CRC of record 2', second + 9, /length CRC mismatch/, second],
    ['data of record 2', second + 12 + 40, /data CRC mismatch/, second + 12],
    ['data CRC of record 2', second + 12 + 80 + 2, /data CRC mismatch/, second + 12],
    ['data of record 1', 12, /data CRC mismatch/, 12],
  ];
  for (const [what, at, message, offset] of cases) {
    const bad = Buffer.from(good);
    bad[at]! ^= 0x10;
    const path = join(dir, `bad-${at}.tfrecord`);
    await writeFile(path, bad);
    const seen: number[] = [];
    let caught: unknown;
    try {
      for await (const r of readTfrecords(path)) seen.push(r.offset);
    } catch (err) {
      caught = err;
    }
    const e = caught as { code: string; file: string; offset: number; message: string };
    t.equal(e?.code, 'E_TFRECORD_CORRUPT', what);
    t.equal(e.file, path);
    t.equal(e.offset, offset, `${what}: offset`);
    t.match(e.message, message);
    t.match(e.message, `byte offset ${offset}`);
    t.match(e.message, path);
    t.same(seen, at >= second ? [0] : [], `${what}: records before the damage are read`);
  }
});

t.test('truncated files are corrupt', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tfr-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const good = frameRecord(bytes(50, 1));
  for (const cut of [5, 20, good.length - 1]) {
    const path = join(dir, `cut-${cut}.tfrecord`);
    await writeFile(path, good.subarray(0, cut));
    await t.rejects(readAll(path), { code: 'E_TFRECORD_CORRUPT', message: /truncated/ });
  }
});

t.test('a record whose chunks do not match its length is an error', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tfr-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const w = await TfrecordWriter.create(join(dir, 'x.tfrecord'));
  await t.rejects(w.writeRecord(10, [new Uint8Array(4)]), { code: 'E_TFRECORD_LENGTH' });
  await t.rejects(w.writeRecord(10, [new Uint8Array(8), new Uint8Array(8)]), { code: 'E_TFRECORD_LENGTH' });
  await w.abandon();
});

t.test('early return from the reader closes the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tfr-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'a.tfrecord');
  await writeFile(path, Buffer.concat([1, 2, 3].map((i) => frameRecord(bytes(10, i)))));
  const { readdir } = await import('node:fs/promises');
  const before = (await readdir('/proc/self/fd')).length;
  for await (const r of readTfrecords(path)) {
    t.equal(r.offset, 0);
    break;
  }
  t.equal((await readdir('/proc/self/fd')).length, before, 'no file descriptor left open');
});
