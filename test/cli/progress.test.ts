import t from 'tap';
import { PassThrough } from 'node:stream';
import type { QueueCounts } from '../../engine/queue/counts.js';
import { createProgress } from '../../stages/cli/progress.js';
import { countsText } from '../../stages/cli/queue-progress.js';

t.test('lines mode: one line per finished slide, numbered, with resumed and failed slides told apart', async (t) => {
  const lines: string[] = [];
  const p = createProgress('lines', 3, (l) => lines.push(l));
  p.slideStarted('a');
  p.slideTotal('a', 10);
  p.slideTiles('a', 4);
  p.slideDone('a', 10, 2.5, false);
  p.slideDone('b', 7, 0, true);
  p.slideFailed('c', 'E_SLIDE_READ: broken');
  p.stop();
  t.same(lines, ['[1/3] ok a: 10 tiles in 2.5 s', '[2/3] ok b: 7 tiles (from checkpoint)', '[3/3] FAILED c: E_SLIDE_READ: broken']);
});

t.test('none mode writes nothing; auto picks lines when stdout is not a terminal', async (t) => {
  const lines: string[] = [];
  const quiet = createProgress('none', 1, (l) => lines.push(l));
  quiet.slideDone('a', 1, 1, false);
  t.same(lines, []);
  if (process.stdout.isTTY) return t.skip('stdout is a terminal here');
  const auto = createProgress('auto', 1, (l) => lines.push(l));
  auto.slideDone('a', 1, 1, false);
  t.same(lines, ['[1/1] ok a: 1 tiles in 1.0 s']);
});

const counts = (c: Partial<QueueCounts>): QueueCounts => ({ jobs: 0, waiting: 0, active: 0, hosts: {}, retrying: 0, completed: 0, failed: 0, lost: 0, replayed: 0, final: false, ...c });

t.test('--queue, lines mode: a line each time the queue\'s counts change, hosts named, the last one the final state', async (t) => {
  const lines: string[] = [];
  const p = createProgress('lines', 4, (l) => lines.push(l));
  p.queueCounts(counts({ jobs: 3, waiting: 3, replayed: 1 }));
  p.queueCounts(counts({ jobs: 3, waiting: 3, replayed: 1 })); // unchanged: no line
  p.queueCounts(counts({ jobs: 3, waiting: 1, active: 2, hosts: { 'node-b': 1, 'node-a': 1 }, replayed: 1 }));
  p.slideDone('a', 5, 1, false);
  p.queueCounts(counts({ jobs: 3, retrying: 1, completed: 1, failed: 1, lost: 1, replayed: 1, final: true }));
  t.same(lines, [
    'queue: 3 waiting, 0 active, 0 retrying, 0 completed, 0 failed, 1 from checkpoints [1/4]',
    'queue: 1 waiting, 2 active (node-a 1, node-b 1), 0 retrying, 0 completed, 0 failed, 1 from checkpoints [1/4]',
    '[1/4] ok a: 5 tiles in 1.0 s',
    'queue: 0 waiting, 0 active, 1 retrying, 1 completed, 1 failed, 1 from checkpoints, 1 lost [3/4]',
  ]);
  const many = countsText(counts({ active: 8, hosts: Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`h${i}`, 1])) }));
  t.match(many, /8 active \(h0 1, h1 1, h2 1, h3 1, h4 1, h5 1, \+2 hosts\)/, 'at most six hosts named');
});

t.test('--queue, bars mode: the overall bar from the queue\'s counts, a bar per slide from its job\'s progress', async (t) => {
  const stream = new PassThrough();
  let drawn = '';
  stream.setEncoding('utf8').on('data', (d: string) => (drawn += d));
  const p = createProgress('bars', 4, () => undefined, stream);
  p.slideStarted('slide-a');
  p.slideTotal('slide-a', 10);
  p.slideTiles('slide-a', 4);
  p.slideStarted('slide-b');
  p.slideDone('slide-c', 3, 1, false); // a slide seen done here does not move the bar once the queue's counts lead it
  p.queueCounts(counts({ jobs: 4, waiting: 1, active: 2, hosts: { 'node-a': 2 }, completed: 1 }));
  p.slideDone('slide-d', 3, 1, false);
  p.stop();
  const frame = drawn.split(/\r|\n/).filter((l) => l.trim() !== '').slice(-3).join('\n');
  t.match(frame, /\| 1\/4 slides \|.*\| queue: 1 waiting, 2 active \(node-a 2\), 0 retrying, 1 completed, 0 failed/, 'the overall bar: 1 of 4 finished per the queue');
  t.match(frame, /\| 4\/10 tiles \|.*\| slide-a/, 'slide-a\'s bar: 4 of its 10 tiles');
  t.match(frame, /slide-b/, 'slide-b has its bar');
});
