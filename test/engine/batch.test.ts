import t from 'tap';
import { batchStage, Channel, type Clock, type StageContext } from '../../engine/index.js';
import { newMetrics } from '../../engine/metrics.js';
import { Budget } from '../../engine/budget.js';

/** A clock the test fires by hand. */
function fakeClock() {
  const timers = new Map<number, () => void>();
  let id = 0;
  const clock: Clock = {
    setTimeout(fn) {
      timers.set(++id, fn);
      return id;
    },
    clearTimeout(h) {
      timers.delete(h as number);
    },
  };
  return {
    clock,
    get pending() {
      return timers.size;
    },
    fireAll() {
      const fns = [...timers.values()];
      timers.clear();
      for (const f of fns) f();
    },
  };
}

const ctx: StageContext = { signal: new AbortController().signal, name: 'Batch', metrics: newMetrics('Batch'), tiles: new Budget(4) };
const turns = async (n = 10) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

t.test('flushes on size, on time, and at the end', async (t) => {
  const fc = fakeClock();
  const input = new Channel<number>(10);
  const it = batchStage<number>({ size: 3, maxWaitMs: 50, clock: fc.clock })(input, ctx)[Symbol.asyncIterator]();
  for (const v of [1, 2, 3, 4]) await input.push(v);
  t.same((await it.next()).value, [1, 2, 3], 'full batch flushed on size');
  const tail = it.next();
  await turns();
  t.equal(fc.pending, 1, 'a timer runs for the partial batch [4]');
  let settled = false;
  void tail.then(() => (settled = true));
  await turns();
  t.notOk(settled, 'the partial batch waits for its timer');
  fc.fireAll();
  t.same((await tail).value, [4], 'flushed on time');
  await input.push(5);
  await input.push(6);
  input.close();
  t.same((await it.next()).value, [5, 6], 'remainder flushed at the end of input');
  t.equal((await it.next()).done, true);
  t.equal(fc.pending, 0, 'no timer left behind');
});

t.test('the timer starts at the batch first element and is cleared by a size flush', async (t) => {
  const fc = fakeClock();
  const input = new Channel<number>(10);
  const it = batchStage<number>({ size: 2, maxWaitMs: 50, clock: fc.clock })(input, ctx)[Symbol.asyncIterator]();
  const first = it.next();
  await turns();
  t.equal(fc.pending, 0, 'no timer while the batch is empty');
  await input.push(1);
  await turns();
  t.equal(fc.pending, 1);
  await input.push(2);
  t.same((await first).value, [1, 2]);
  t.equal(fc.pending, 0, 'size flush cleared the timer');
  input.close();
  t.equal((await it.next()).done, true);
});

t.test('early return runs cleanup: timer cleared, upstream returned', async (t) => {
  const fc = fakeClock();
  let returned = false;
  async function* src() {
    try {
      yield 1;
      await new Promise(() => undefined); // never ends
    } finally {
      returned = true;
    }
  }
  const it = batchStage<number>({ size: 5, maxWaitMs: 50, clock: fc.clock })(src(), ctx)[Symbol.asyncIterator]();
  const p = it.next();
  await turns();
  fc.fireAll();
  t.same((await p).value, [1]);
  // The source is now suspended at yield (its pending pull never resolves) — return the batcher.
  const it2 = batchStage<number>({ size: 5, maxWaitMs: 50, clock: fc.clock })(
    (async function* () {
      try {
        yield 1;
        yield 2;
      } finally {
        returned = true;
      }
    })(),
    ctx,
  )[Symbol.asyncIterator]();
  returned = false;
  await it2.next();
  await it2.return?.(undefined);
  t.ok(returned, 'upstream finally ran');
  t.equal(fc.pending, 0);
});

t.test('backpressure: a batcher nobody reads pulls at most one batch ahead', async (t) => {
  let pulled = 0;
  async function* src() {
    for (let i = 0; i < 100; i++) {
      pulled++;
      yield i;
    }
  }
  const fc = fakeClock();
  const it = batchStage<number>({ size: 4, maxWaitMs: 50, clock: fc.clock })(src(), ctx)[Symbol.asyncIterator]();
  await it.next();
  await turns();
  t.ok(pulled <= 5, `pulled ${pulled} for one batch of 4`);
  await it.return?.(undefined);
});
