import t from 'tap';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Staging, findCommitted, replayCommitted } from '../../engine/staging.js';

const payload = (i: number) => ({ i, bytes: new Uint8Array(300_000).fill(i % 251) });

t.test('staged results past the memory limit go to the file in large writes and replay in order', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'staging-'));
  const s = new Staging(dir, 2, 'item', false);
  for (let i = 0; i < 12; i++) await s.add(payload(i)); // 2 in memory, 10 x 300 KB spilled: several 1 MB flushes
  const got: Array<{ i: number; bytes: Uint8Array }> = [];
  for await (const v of s.replay()) got.push(v as { i: number; bytes: Uint8Array });
  t.same(got.map((v) => v.i), Array.from({ length: 12 }, (_, i) => i), 'all results, in order');
  t.ok(got.every((v) => v.bytes.length === 300_000 && v.bytes[299_999] === v.i % 251), 'payloads intact');
  await s.discard();
  t.same(readdirSync(dir), [], 'the spill file is removed');
});

t.test('a committed checkpoint holds every result, including those still buffered at commit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'staging-'));
  const s = new Staging(dir, 16, 'slide-a', true);
  for (let i = 0; i < 5; i++) await s.add(payload(i)); // 1.5 MB: one flush during add, the rest at commit
  await s.commit();
  await s.discard();
  const file = await findCommitted(dir, 'slide-a');
  t.ok(file, 'committed under its key');
  const got: number[] = [];
  for await (const v of replayCommitted(file!)) got.push((v as { i: number }).i);
  t.same(got, [0, 1, 2, 3, 4]);
  t.equal(await findCommitted(dir, 'slide-b'), undefined, 'another key has no checkpoint');
});

t.test('a discarded attempt leaves nothing behind, buffered or written', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'staging-'));
  const s = new Staging(dir, 0, 'slide-c', true);
  for (let i = 0; i < 5; i++) await s.add(payload(i));
  await s.discard();
  t.same(readdirSync(dir), [], 'no partial file');
  t.equal(await findCommitted(dir, 'slide-c'), undefined);
});
