import t from 'tap';
import { mkdtempSync, writeFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { slideTasks, slideCheckpointKey } from '../../stages/slide-tasks.js';
import type { CsvRow, SlideTask } from '../../stages/types.js';
import { makeCtx } from '../helpers/ctx.js';

const row = (image_id: string, patient_id = 'p1', image_num = 0): CsvRow => ({
  file: 'x.csv', line: 2, image_id, center_id: '0', patient_id, image_num, raw: [],
});

async function collect(rows: CsvRow[], dir: string): Promise<SlideTask[]> {
  const out: SlideTask[] = [];
  for await (const task of slideTasks(dir)((async function* () { yield* rows; })(), makeCtx())) out.push(task);
  return out;
}

t.test('tasks carry the slide file stamp; a changed file or CSV row changes the checkpoint key', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tasks-'));
  writeFileSync(join(dir, 'a.tif'), 'x');
  utimesSync(join(dir, 'a.tif'), 1000, 1000);
  const [a, missing] = await collect([row('a'), row('nope')], dir);
  t.match(a, { image_id: 'a', patient_id: 'p1', image_num: 0, slidesDir: dir, fileStamp: '1:1000000' });
  t.equal(missing?.fileStamp, 'unresolved', 'a missing slide is left for the worker to report');
  const key = slideCheckpointKey(a!);
  writeFileSync(join(dir, 'a.tif'), 'xy');
  utimesSync(join(dir, 'a.tif'), 1000, 1000);
  const [changed] = await collect([row('a')], dir);
  t.not(slideCheckpointKey(changed!), key, 'another file size: another key');
  const [moved] = await collect([row('a', 'p2')], dir);
  t.not(slideCheckpointKey(moved!), slideCheckpointKey(changed!), 'another patient in the CSV: another key');
});

t.test('backpressure: the stage reads one row per task it hands out', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tasks-'));
  let pulled = 0;
  const rows = (async function* () {
    for (let i = 0; i < 100; i++) {
      pulled++;
      yield row(`s${i}`);
    }
  })();
  const it = slideTasks(dir)(rows, makeCtx())[Symbol.asyncIterator]();
  await it.next();
  await it.next();
  t.equal(pulled, 2, 'two tasks taken, two rows read');
  await it.return?.();
});

t.test('cleanup: returning early closes the upstream', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tasks-'));
  let closed = false;
  const rows = (async function* () {
    try {
      for (let i = 0; ; i++) yield row(`s${i}`);
    } finally {
      closed = true;
    }
  })();
  for await (const _ of slideTasks(dir)(rows, makeCtx())) break;
  t.ok(closed, 'the source generator was returned');
});
