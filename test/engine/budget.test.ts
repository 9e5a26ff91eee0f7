import t from 'tap';
import { Budget } from '../../engine/index.js';

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

t.test('ScopedBudget: counts what one item holds and gives back the rest in one call', async (t) => {
  const { Budget, ScopedBudget } = await import('../../engine/index.js');
  const parent = new Budget(4);
  const item = new ScopedBudget(parent);
  await item.acquire(3);
  item.release(1);
  t.equal(parent.inUse, 2, 'parent sees the item usage');
  t.throws(() => item.release(3), { code: 'E_BUDGET' }, 'cannot release more than the item holds');
  t.equal(item.releaseAll(), 2, 'two tiles were still held');
  t.equal(parent.inUse, 0, 'all back in the parent');
  t.equal(item.releaseAll(), 0, 'nothing left');
  // A second item can now take the whole budget.
  const next = new ScopedBudget(parent);
  await next.acquire(4);
  t.equal(parent.inUse, 4);
  next.releaseAll();
});
