import t from 'tap';
import { prestartWorkers, stopPrestarted } from '../../engine/index.js';
import { prestartFirstWorker } from '../../stages/cli/prestart.js';
import { childPids as children } from '../helpers/proc.js';

const workerModule = new URL('../engine/fixtures/engine-worker.ts', import.meta.url).href;

t.test('no worker for a sub-command, --help or a usage error', async (t) => {
  t.teardown(stopPrestarted);
  const before = children().length;
  for (const argv of [['split', '--csv', 'x.csv'], ['inspect', 'out'], ['models', 'build'], ['--help'], ['--tile-size', 'abc'], ['--no-such-flag']]) {
    t.equal(prestartFirstWorker(argv, workerModule), false, argv.join(' '));
  }
  t.equal(children().length, before, 'nothing forked');
});

t.test('a job gets one worker now, and main() forking "the workers" later adds only the rest', async (t) => {
  t.teardown(stopPrestarted);
  const before = new Set(children());
  t.equal(prestartFirstWorker(['--csv', 'a.csv', '--slides', 's', '--out', 'o'], workerModule), true);
  t.equal(children().filter((p) => !before.has(p)).length, 1, 'one process');
  prestartWorkers(2, workerModule);
  const forked = children().filter((p) => !before.has(p));
  t.equal(forked.length, 2, 'two in all, not three');
  stopPrestarted();
  prestartWorkers(1, workerModule);
  const seen = new Set([...before, ...forked]);
  t.equal(children().filter((p) => !seen.has(p)).length, 1, 'after stopPrestarted the count starts again');
});
