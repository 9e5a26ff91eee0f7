/**
 * What the options cost, said before the run (stages/cli/options.ts): a tile budget below one tile per worker is a
 * usage error (the budget could not hold); more workers than cores, or a budget below a group of tiles per
 * worker, are warnings (the run works, slower or heavier).
 */
import t from 'tap';
import { availableParallelism } from 'node:os';
import { BATCH_WAIT_MS, optionWarnings, parseRunOptions, UsageError } from '../../stages/cli/options.js';

t.test('--tile-budget below --workers: a usage error naming the real minimum', async (t) => {
  t.throws(() => parseRunOptions(['--workers', '4', '--tile-budget', '3']), UsageError);
  t.throws(() => parseRunOptions(['--workers', '4', '--tile-budget', '3']), { code: 'E_USAGE', message: /--tile-budget 3 is below --workers 4: .*needs --tile-budget 4 or more/ });
  const o = parseRunOptions(['--workers', '4', '--tile-budget', '4']);
  t.not(o, 'help');
  if (o !== 'help') t.equal(o.tileBudget, 4, 'one tile per worker is accepted');
});

t.test('more workers than cores: a warning with the core count', async (t) => {
  t.same(optionWarnings({ workers: 2, tileBudget: 256, groupSize: 8 }, 2), [], 'as many workers as cores: nothing to say');
  const [w, ...rest] = optionWarnings({ workers: 3, tileBudget: 256, groupSize: 8 }, 2);
  t.match(w, /^--workers 3 is more than the 2 core\(s\) of this machine/);
  t.same(rest, []);
  const o = parseRunOptions(['--workers', String(availableParallelism() + 1)]);
  if (o !== 'help') t.equal(optionWarnings(o).length, 1, 'the default core count comes from os.availableParallelism()');
});

t.test('a budget below a group of tiles per worker: a warning with the figures', async (t) => {
  const [w] = optionWarnings({ workers: 2, tileBudget: 10, groupSize: 8 }, 2);
  t.match(w, `--tile-budget 10 leaves each of the 2 worker(s) 5 tile(s), fewer than a group (--group-size 8)`);
  t.match(w, `waits up to ${BATCH_WAIT_MS} ms`);
  t.match(w, `at most ${(5 * 1000) / BATCH_WAIT_MS} tiles/s per worker`);
  t.match(w, '--tile-budget 16 or more avoids that');
  t.same(optionWarnings({ workers: 2, tileBudget: 16, groupSize: 8 }, 2), [], 'a full group per worker: nothing to say');
});
