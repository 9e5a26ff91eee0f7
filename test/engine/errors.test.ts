import t from 'tap';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Graph, EngineError } from '../../engine/index.js';

t.test('a stage error names the stage and the element key, with the original as cause; other stages cleaned up', async (t) => {
  const g = new Graph({ name: 'err' });
  let sourceFinally = false;
  let sideFinally = false;
  const src = g.source('Rows', async function* () {
    try {
      for (let i = 0; ; i++) yield { id: `row-${i}`, v: i };
    } finally {
      sourceFinally = true;
    }
  });
  src
    .pipe(
      'Explode',
      async function* (s) {
        for await (const r of s) {
          if (r.v === 7) throw Object.assign(new Error('cannot explode'), { code: 'E_EXPLODE' });
          yield r;
        }
      },
      { key: (r) => r.id },
    )
    .sink('S', async (s) => { for await (const _ of s); });
  src.sink('Side', async (s) => {
    try {
      for await (const _ of s);
    } finally {
      sideFinally = true;
    }
  });
  const err = (await g.run().catch((e: unknown) => e)) as EngineError;
  t.ok(err instanceof EngineError);
  t.match(err, { code: 'E_EXPLODE', stage: 'Explode', key: 'row-7', message: /\[Explode key=row-7\] cannot explode/ });
  t.match((err.cause as Error).message, 'cannot explode');
  t.ok(sourceFinally, 'the source iterator was returned');
  t.ok(sideFinally, 'the other branch was cleaned up');
});

t.test('a sink error without a code is E_STAGE; first error wins', async (t) => {
  const g = new Graph({ name: 'err' });
  const src = g.source('N', async function* () { for (let i = 0; i < 100; i++) yield i; });
  src.sink('A', async (s) => { for await (const v of s) if (v === 3) throw new Error('A first'); });
  src.sink('B', async (s) => {
    try {
      for await (const _ of s);
    } catch {
      throw new Error('B second'); // B fails only because A's failure tore the run down
    }
  });
  await t.rejects(g.run(), { code: 'E_STAGE', stage: 'A', message: /A first/ });
});

t.test('an external abort ends the run with E_ABORTED', async (t) => {
  const ac = new AbortController();
  const g = new Graph({ name: 'ab', signal: ac.signal });
  g.source('Forever', async function* (ctx) {
    for (let i = 0; !ctx.signal.aborted; i++) {
      if (i === 10) ac.abort();
      yield i;
    }
  }).sink('S', async (s) => { for await (const _ of s); });
  await t.rejects(g.run(), { code: 'E_ABORTED', stage: 'ab' });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false; // ESRCH
  }
}

t.test('a SIGKILLed parent leaves no worker behind', async (t) => {
  const execArgv = process.execArgv.filter((a) => a.includes('typescript'));
  const parent = spawn(process.execPath, [...execArgv, new URL('./fixtures/engine-parent.ts', import.meta.url).pathname], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => { parent.kill('SIGKILL'); });
  const pids: number[] = [];
  const lines = createInterface({ input: parent.stdout });
  for await (const line of lines) {
    pids.push((JSON.parse(line) as { pid: number }).pid);
    if (pids.length === 2) break;
  }
  t.equal(pids.length, 2);
  for (const pid of pids) t.ok(alive(pid), `worker ${pid} runs`);
  parent.kill('SIGKILL');
  // A worker leaves on IPC disconnect (or its 500 ms ppid check): poll for that, up to a minute on a loaded host.
  const t0 = Date.now();
  while (pids.some(alive) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids) t.notOk(alive(pid), `worker ${pid} exited after its parent was killed`);
});
