import t from 'tap';
import { Budget } from '../engine/index.js';

t.test('acquire waits at the limit; release wakes it; worker reports add to the global count', async (t) => {
  const b = new Budget(3);
  await b.acquire(2);
  let got = false;
  const p = b.acquire(2).then(() => (got = true));
  await new Promise((r) => setImmediate(r));
  t.notOk(got, 'blocked: 2 + 2 > 3');
  b.release(1);
  await p;
  t.equal(b.inUse, 3);
  b.report('w1', 5, 7);
  t.equal(b.inUse, 8, 'local 3 + worker 5');
  t.equal(b.maxInUse, 8);
  b.report('w2', 0, 9);
  t.equal(b.maxInUse, 9, "a worker's own peak counts");
  b.report('w1', 0);
  t.equal(b.inUse, 3);
});

t.test('errors: acquire more than the limit, release more than held, abort while waiting', async (t) => {
  const b = new Budget(2);
  await t.rejects(b.acquire(3), { code: 'E_BUDGET' });
  t.throws(() => b.release(1), { code: 'E_BUDGET' });
  await b.acquire(2);
  const ac = new AbortController();
  const p = b.acquire(1, ac.signal);
  ac.abort(new Error('stop'));
  await t.rejects(p, /stop/);
  t.equal(b.inUse, 2);
});
