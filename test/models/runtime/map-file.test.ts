/** Large read-only files are mapped (koffi + mmap), or read where mapping is not possible; the bytes are the same. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { mapOrReadFile } from '../../../models/runtime/map-file.js';

const dir = mkdtempSync(join(tmpdir(), 'map-file-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function fileOf(name: string, n: number): { path: string; bytes: Buffer } {
  const bytes = Buffer.alloc(n);
  for (let i = 0; i < n; i++) bytes[i] = (i * 131 + 7) & 0xff;
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return { path, bytes };
}

t.test('mapped on this Linux: the same bytes as a read, the whole file', async (t) => {
  const { path, bytes } = fileOf('a.bin', 3 * 65536 + 5); // not a multiple of the page size
  const got = await mapOrReadFile(path);
  t.ok(got.mapped, 'mapped through the C library');
  t.equal(got.bytes.length, bytes.length);
  t.ok(Buffer.from(got.bytes.buffer, got.bytes.byteOffset, got.bytes.length).equals(bytes), 'byte for byte');
});

t.test('a file replaced by rename while mapped: the mapping keeps the old bytes', async (t) => {
  const { path, bytes } = fileOf('b.bin', 8192);
  const got = await mapOrReadFile(path);
  const next = join(dir, 'b.next');
  writeFileSync(next, Buffer.alloc(8192, 1));
  const { renameSync } = await import('node:fs');
  renameSync(next, path);
  t.ok(Buffer.from(got.bytes).equals(bytes), 'still the first file');
  t.equal((await mapOrReadFile(path)).bytes[0], 1, 'a new map sees the new file');
});

t.test('read instead: without an mmap, when mmap fails, and for an empty file', async (t) => {
  const { path, bytes } = fileOf('c.bin', 1000);
  const noLibc = await mapOrReadFile(path, null);
  t.notOk(noLibc.mapped);
  t.ok(Buffer.from(noLibc.bytes).equals(bytes));
  let called = 0;
  const failing = await mapOrReadFile(path, () => {
    called++;
    return null;
  });
  t.equal(called, 1);
  t.notOk(failing.mapped, 'a failed map falls back to a read');
  t.ok(Buffer.from(failing.bytes).equals(bytes));
  const empty = join(dir, 'empty.bin');
  writeFileSync(empty, '');
  const e = await mapOrReadFile(empty);
  t.notOk(e.mapped, 'nothing to map');
  t.equal(e.bytes.length, 0);
  // A directory opens and has a size, but mmap refuses it (MAP_FAILED): the fallback read then reports EISDIR.
  await t.rejects(mapOrReadFile(dir), { code: 'EISDIR' }, 'a real mmap failure falls back to a read');
  await t.rejects(mapOrReadFile(join(dir, 'missing.bin')), { code: 'ENOENT' }, 'a missing file is an error either way');
  await t.rejects(mapOrReadFile(join(dir, 'missing.bin'), null), { code: 'ENOENT' });
});
