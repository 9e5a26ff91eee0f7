import t from 'tap';
import { Graph, chain, EngineError, type MetricsSnapshot, type Stage } from '../../engine/index.js';

/** A sink that takes one element each time the test calls `step()`. */
function gatedSink<T>() {
  const got: T[] = [];
  let open: (() => void) | undefined;
  let gate = new Promise<void>((r) => (open = r));
  return {
    got,
    step() {
      const o = open;
      gate = new Promise<void>((r) => (open = r));
      o?.();
    },
    async sink(src: AsyncIterable<T>) {
      for await (const v of src) {
        got.push(v);
        await gate;
      }
    },
  };
}

const turns = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

/** Waits (in event-loop turns, bounded by a generous wall-clock limit) until `cond` holds: run() first does I/O. */
const until = async (cond: () => boolean, what = 'condition', limitMs = 20000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > limitMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
};

t.test('a linear graph delivers everything in order, with metrics', async (t) => {
  const g = new Graph({ name: 'lin', highWaterMark: 2 });
  const got: number[] = [];
  g.source('Numbers', async function* () {
    for (let i = 0; i < 100; i++) yield i;
  })
    .pipe('Double', async function* (src) {
      for await (const v of src) yield v * 2;
    })
    .filter('Even4', (v) => v % 4 === 0)
    .sink('Collect', async (src) => {
      for await (const v of src) got.push(v);
    });
  const snaps: MetricsSnapshot[] = [];
  g.on('metrics', (s) => snaps.push(s));
  const res = await g.run();
  t.same(got, Array.from({ length: 50 }, (_, i) => i * 4));
  const m = Object.fromEntries(res.metrics.map((x) => [x.name, x]));
  t.equal(m.Numbers?.elementsOut, 100);
  t.equal(m.Double?.elementsIn, 100);
  t.equal(m.Even4?.elementsOut, 50);
  t.equal(m.Collect?.elementsIn, 50);
  t.ok((m.Double?.maxQueueDepth ?? 99) <= 2, 'edge never held more than its high-water mark');
  t.equal(snaps.at(-1)?.final, true, 'a final snapshot is emitted');
});

t.test('a slow sink bounds how much the source produced', async (t) => {
  const g = new Graph({ name: 'bp', highWaterMark: 2 });
  let produced = 0;
  const s = gatedSink<number>();
  g.source('Src', async function* () {
    for (let i = 0; i < 1000; i++) {
      produced++;
      yield i;
    }
  })
    .pipe('Pass', async function* (src) {
      yield* src;
    })
    .sink('Slow', (src) => s.sink(src));
  const run = g.run();
  await until(() => s.got.length === 1, 'the first element at the sink');
  await turns();
  t.equal(s.got.length, 1);
  // 1 in the sink + 2 on Pass->Slow + 1 held by Pass + 2 on Src->Pass + 1 the source is pushing.
  t.ok(produced <= 7, `source produced ${produced} while the sink held 1`);
  const before = produced;
  s.step();
  await turns();
  t.ok(produced <= before + 1, 'one element taken lets the source produce about one more');
  for (let i = 0; i < 1000 && s.got.length < 1000; i++) {
    s.step();
    await turns(2);
  }
  s.step();
  await run;
  t.equal(s.got.length, 1000);
});

t.test('branch: a slow branch throttles the shared source and bounds the fast branch', async (t) => {
  const g = new Graph({ name: 'tee', highWaterMark: 2 });
  let produced = 0;
  const slow = gatedSink<number>();
  const fastGot: number[] = [];
  const src = g.source('Src', async function* () {
    for (let i = 0; i < 500; i++) {
      produced++;
      yield i;
    }
  });
  src.pipe('A', async function* (s) { yield* s; }).sink('SlowSink', (s) => slow.sink(s));
  src.pipe('B', async function* (s) { yield* s; }).sink('FastSink', async (s) => {
    for await (const v of s) fastGot.push(v);
  });
  const run = g.run();
  await until(() => slow.got.length === 1, 'the first element at the slow sink');
  await turns();
  t.ok(produced <= 8, `source produced ${produced} while the slow branch held 1`);
  t.ok(fastGot.length <= produced && fastGot.length <= 8, `the fast branch got ${fastGot.length}: throttled too`);
  while (slow.got.length < 500) {
    slow.step();
    await turns(2);
  }
  slow.step();
  await run;
  t.equal(fastGot.length, 500);
  t.same(slow.got, fastGot);
});

t.test('merge interleaves all inputs; chain composes stages with it-pipe', async (t) => {
  const g = new Graph({ name: 'merge' });
  const a = g.source('A', async function* () { yield* [1, 2, 3]; });
  const b = g.source('B', async function* () { yield* [10, 20]; });
  const inc: Stage<number, number> = async function* (s) { for await (const v of s) yield v + 1; };
  const got: number[] = [];
  g.merge('M', a, b).pipe('Inc2', chain(inc, inc)).sink('S', async (s) => { for await (const v of s) got.push(v); });
  await g.run();
  t.same(got.sort((x, y) => x - y), [3, 4, 5, 12, 22]);
});

t.test('flatten and map', async (t) => {
  const g = new Graph({ name: 'flat' });
  const got: string[] = [];
  g.source('Arrs', async function* () { yield [1, 2]; yield []; yield [3]; })
    .flatten('Flat')
    .map('Str', (v) => `n${v}`)
    .sink('S', async (s) => { for await (const v of s) got.push(v); });
  await g.run();
  t.same(got, ['n1', 'n2', 'n3']);
});

t.test('output(): a sub-graph as an async iterable; early return stops it and runs finally', async (t) => {
  let cleaned = false;
  const it = Graph.stream({ name: 'sub' }, (g) =>
    g.source('Inf', async function* () {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        cleaned = true;
      }
    }).map('Sq', (v) => v * v),
  );
  const got: number[] = [];
  for await (const v of it) {
    got.push(v);
    if (got.length === 4) break;
  }
  t.same(got, [0, 1, 4, 9]);
  t.ok(cleaned, 'the source finally ran');
});

t.test('E_GRAPH: unconsumed node, duplicate name, run twice', async (t) => {
  const g1 = new Graph({ name: 'g1' });
  g1.source('Lonely', async function* () { yield 1; });
  await t.rejects(g1.run(), { code: 'E_GRAPH', stage: 'Lonely' });
  const g2 = new Graph({ name: 'g2' });
  const s = g2.source('X', async function* () { yield 1; });
  s.sink('X', async (src) => { for await (const _ of src); });
  await t.rejects(g2.run(), { code: 'E_GRAPH', stage: 'X' });
  const g3 = new Graph({ name: 'g3' });
  g3.source('S', async function* () { yield 1; }).sink('K', async (src) => { for await (const _ of src); });
  await g3.run();
  await t.rejects(g3.run(), { code: 'E_GRAPH' });
  t.ok(new EngineError('E_GRAPH', 'a', undefined, 'm') instanceof Error);
});
