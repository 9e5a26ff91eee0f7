import t from 'tap';
import { spawn } from 'node:child_process';
import { descendants, treeRssBytes, isAlive, sampleTreeRss } from '../../stages/cli/proc-tree.js';

t.test('a spawned child is a descendant, counted in the tree RSS, and gone after kill', async (t) => {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  t.teardown(() => { child.kill('SIGKILL'); });
  await new Promise((r) => child.once('spawn', r));
  t.ok(descendants().includes(child.pid!), 'child listed');
  t.ok(isAlive(child.pid!));
  const own = process.memoryUsage.rss();
  t.ok(treeRssBytes() > own * 0.9, 'tree RSS at least our own');
  const sampler = sampleTreeRss(50);
  t.ok(sampler.stop() >= own * 0.9);
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  t.notOk(isAlive(child.pid!), 'child gone');
  t.notOk(descendants().includes(child.pid!));
});
