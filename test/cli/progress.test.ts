import t from 'tap';
import { createProgress } from '../../stages/cli/progress.js';

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
