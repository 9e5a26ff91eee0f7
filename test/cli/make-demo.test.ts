/**
 * The demo set (stages/cli/make-demo.ts) is built into a cache folder that concurrent runs may share
 * (WSI_CACHE_DIR): two builders at once in one folder both finish, each file whole, no temporary left behind.
 * Small slides: the rows' sizes are not what this is about (the demo's own rows: test/slides/synthetic.test.ts).
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeSlideSet, type DemoRow } from '../../stages/cli/make-demo.js';
import { readCsv } from '../../stages/csv/read.js';
import { openSlide } from '../../stages/slides/open.js';

const dir = mkdtempSync(join(tmpdir(), 'make-demo-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const ROWS: readonly DemoRow[] = [
  ['s_a', 0, 'pa', 0, '1', 1024, 21],
  ['s_b', 1, 'pb', 0, '0', 768, 22],
  ['s_c', 1, 'pb', 1, '0', 1280, 23],
];

const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');

t.test('two builders at once in one folder: both finish, every file whole and the same as one builder writes, no temporary left', async (t) => {
  const alone = await makeSlideSet(join(dir, 'alone'), ROWS);
  const shared = join(dir, 'shared');
  const [a, b] = await Promise.all([makeSlideSet(shared, ROWS), makeSlideSet(shared, ROWS)]);
  t.same(a, b, 'the same paths');
  t.same(readdirSync(a.slidesDir).sort(), ['s_a.tiff', 's_b.tiff', 's_c.tiff'], 'the slides and nothing else (no .part)');
  t.same(readdirSync(shared).sort(), ['demo.csv', 'slides']);
  for (const [id, , , , , side] of ROWS) {
    const file = join(a.slidesDir, `${id}.tiff`);
    t.equal(sha(file), sha(join(alone.slidesDir, `${id}.tiff`)), `${id}: the bytes one builder writes`);
    const s = await openSlide(file, id);
    t.same([s.levels[0]!.width, s.levels[0]!.height], [side, side], `${id}: opens, ${side} px`);
    await s.close();
  }
  t.equal(readFileSync(a.csv, 'utf8'), readFileSync(alone.csv, 'utf8'), 'the CSV whole');
  const { rows } = await readCsv(a.csv);
  t.same(rows.map((r) => r.image_id), ['s_a', 's_b', 's_c']);
});

t.test('a file already there is kept as it is (idempotent), a missing one is made', async (t) => {
  const d = join(dir, 'again');
  const first = await makeSlideSet(d, ROWS.slice(0, 1));
  const before = sha(join(first.slidesDir, 's_a.tiff'));
  const second = await makeSlideSet(d, ROWS.slice(0, 2));
  t.equal(sha(join(second.slidesDir, 's_a.tiff')), before);
  t.same(readdirSync(second.slidesDir).sort(), ['s_a.tiff', 's_b.tiff']);
});
