import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStainNet } from '../../../models/build.js';
import { closeSessions, getSession } from '../../../models/runtime/session.js';

t.teardown(closeSessions);

t.test('one session per (model, threads) per process; the cache is bounded and evicted sessions are released', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sessions-'));
  const model = join(dir, 'stainnet.onnx');
  writeFileSync(model, buildStainNet());
  const first = await getSession(model, 'stainnet', 1);
  t.equal(await getSession(model, 'stainnet', 1), first, 'the same session is shared');
  // Four more distinct keys push the first one out of the 4-entry cache.
  for (const threads of [2, 3, 4, 5]) await getSession(model, 'stainnet', threads);
  const again = await getSession(model, 'stainnet', 1);
  t.not(again, first, 'an evicted session is created afresh');
  // A released session refuses to run: the evicted one was released, not leaked.
  const ort = (await import('onnxruntime-node')).default;
  const input = { tiles: new ort.Tensor('uint8', new Uint8Array(3 * 4), [1, 2, 2, 3]) };
  await t.rejects(first.run(input), 'the evicted session was released');
  t.ok((await again.run(input)).normalized, 'the new session runs');
});

t.test('a model that does not load is an E_MODEL error naming the file, and is not cached', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sessions-'));
  const bad = join(dir, 'bad.onnx');
  writeFileSync(bad, 'not a model');
  await t.rejects(getSession(bad, 'stainnet', 1), { code: 'E_MODEL', message: /bad\.onnx/ });
  await t.rejects(getSession(bad, 'stainnet', 1), { code: 'E_MODEL' }, 'tried again, not a cached failure');
});
