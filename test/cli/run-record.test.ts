/**
 * RunRecord (stages/cli/run-record.ts) as the job feeds it: item events give each slide its attempts and the
 * causes of failed ones, failures keep a code and a short message (the full one for the first few per code), and a
 * worker's stderr line counts for the slide that worker runs, printed naming it.
 */
import t from 'tap';
import { EngineError } from '../../engine/types.js';
import type { ItemEvent } from '../../engine/index.js';
import { createProgress } from '../../stages/cli/progress.js';
import { RunRecord } from '../../stages/cli/run-record.js';
import { SlideError } from '../../stages/slides/errors.js';
import { FIRST_MESSAGES, PRINTED_MESSAGES } from '../../stages/report/failures.js';
import type { CsvRow } from '../../stages/types.js';

const rows: CsvRow[] = ['a', 'b', 'c'].map((id, i) => ({ image_id: id, center_id: 0, patient_id: `p${i}`, image_num: 0 }) as CsvRow);
const stage = 'PerSlide';

function record(): RunRecord {
  return new RunRecord(rows, 224, createProgress('none', rows.length));
}

t.test('attempts and the cause of each failed one', async (t) => {
  const r = record();
  const events: ItemEvent[] = [
    { type: 'started', stage, key: 'a', attempt: 1, pid: 11 },
    { type: 'retry', stage, key: 'a', attempt: 1, error: new Error('worker process 11 died (code null, signal SIGKILL)') },
    { type: 'started', stage, key: 'a', attempt: 2, pid: 12 },
    { type: 'done', stage, key: 'a', attempt: 2, durationMs: 1500, count: 3 },
  ];
  for (const e of events) r.onItem(e);
  const a = r.slides.get('a')!;
  t.equal(a.status, 'ok');
  t.equal(a.attempts, 2);
  t.same(a.failed_attempts, [{ attempt: 1, code: 'E_WORKER_CRASH', error: 'worker process 11 died (code null, signal SIGKILL)' }]);
  t.equal(a.code, undefined, 'an ok slide has no code');
  t.equal(r.slides.get('b')!.code, 'E_NOT_PROCESSED', 'a slide never run: failed, not processed');
});

t.test('failures: code and short message per slide, the common note said once, full messages for the report', async (t) => {
  const r = record();
  const missing = (id: string) => {
    const slide = new SlideError('E_SLIDE_MISSING', id, `/s/${id}`, 'no slide file (tried .svs, .tif, .tiff and the exact name)');
    const wire = Object.assign(new Error(`[ProduceTiles key=${id}] ${slide.message}`), { code: slide.code });
    return new EngineError('E_WORKER_ITEM', stage, id, `item failed after 1 attempt(s): ${wire.message}`, { cause: wire });
  };
  for (const id of ['a', 'b', 'c']) {
    r.onItem({ type: 'started', stage, key: id, attempt: 1, pid: 20 });
    r.onItem({ type: 'failed', stage, key: id, attempt: 1, error: missing(id) });
  }
  t.same([...r.slides.values()].map((s) => [s.code, s.error]), [['E_SLIDE_MISSING', 'a: no slide file'], ['E_SLIDE_MISSING', 'b: no slide file'], ['E_SLIDE_MISSING', 'c: no slide file']]);
  const [g] = r.failureGroups();
  t.equal(g!.count, 3);
  t.equal(g!.first[0]!.error, 'E_SLIDE_MISSING: slide "a" (/s/a): no slide file (tried .svs, .tif, .tiff and the exact name)', 'the note, in the full message');
});

t.test('a worker\'s stderr lines count for the slide it runs and are printed naming it', async (t) => {
  const r = record();
  const printed = t.capture(console, 'error');
  r.onItem({ type: 'started', stage, key: 'a', attempt: 1, pid: 31 });
  r.onItem({ type: 'started', stage, key: 'b', attempt: 1, pid: 32 });
  r.onItem({ type: 'joined', stage, key: 'a', attempt: 1, pid: 33 });
  for (let i = 0; i < 7; i++) r.onWorkerLine(31, `VipsJpeg: warning ${i}`);
  r.onWorkerLine(33, 'from the joiner');
  r.onWorkerLine(32, 'about b');
  r.onWorkerLine(99, 'from a worker without a slide');
  const a = r.slides.get('a')!;
  t.equal(a.warnings?.count, 8, 'all lines counted, the joiner\'s too');
  t.equal(a.warnings?.first.length, FIRST_MESSAGES, 'the first few kept');
  t.same(r.slides.get('b')!.warnings, { count: 1, first: ['about b'] });
  t.equal(r.slides.get('c')!.warnings, undefined);
  const lines = printed().map((c) => String(c.args[0]));
  t.same(lines.slice(0, PRINTED_MESSAGES), [0, 1, 2].map((i) => `slide a (worker 31): VipsJpeg: warning ${i}`), 'the first few printed, naming the slide');
  t.equal(lines[PRINTED_MESSAGES], 'slide a (worker 31): more messages; counted in report.json');
  t.ok(lines.includes('slide b (worker 32): about b'));
  t.ok(lines.includes('worker 99: from a worker without a slide'));
  t.equal(lines.length, PRINTED_MESSAGES + 3, 'later lines of a are counted, not printed');
});

t.test('--queue: the timeline has a lane per host and pid, and tiles per second from the jobs\' progress', async (t) => {
  const r = record();
  const events: ItemEvent[] = [
    { type: 'started', stage, key: 'a', attempt: 1, pid: 7, host: 'node-a' },
    { type: 'started', stage, key: 'b', attempt: 1, pid: 7, host: 'node-b' },
    { type: 'remote-progress', stage, key: 'a', attempt: 1, tiles: 4, total: 10 },
    { type: 'remote-progress', stage, key: 'a', attempt: 1, tiles: 10, total: 10 },
    { type: 'remote-progress', stage, key: 'b', attempt: 1, tiles: 3 },
    { type: 'done', stage, key: 'a', attempt: 1, durationMs: 100, count: 3, host: 'node-a', stalls: 0 },
    { type: 'done', stage, key: 'b', attempt: 1, durationMs: 100, count: 3, host: 'node-b', stalls: 0 },
  ];
  for (const e of events) r.onItem(e);
  const tl = r.timeline.report();
  t.same(tl.lanes.map((l) => `${l.host}/${l.pid}/${l.bars}`), ['node-a/7/1', 'node-b/7/1'], 'same pid on two hosts: two lanes');
  t.equal(tl.tiles.values.reduce((a, b) => a + b, 0), 13, 'every tile the jobs reported, counted once');
  t.same([r.slides.get('a')!.host, r.slides.get('b')!.host], ['node-a', 'node-b']);
});
