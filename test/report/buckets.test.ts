/** Bucketed time series (stages/report/buckets.ts): bounded length, widths doubling, sums and maxima kept. */
import t from 'tap';
import { Buckets } from '../../stages/report/buckets.js';

t.test('values land in their buckets; past the last bucket, pairs merge and the width doubles', async (t) => {
  const b = new Buckets('sum', 100, 4);
  b.add(0, 1);
  b.add(99, 2);
  b.add(250, 5);
  t.same(b.series(), { bucket_ms: 100, values: [3, 0, 5] });
  b.add(400, 7); // bucket 4 of 4: merge to 200 ms buckets [3, 5], then bucket 2
  t.same(b.series(), { bucket_ms: 200, values: [3, 5, 7] });
  b.add(5000, 1); // far past the end: merged until it fits (1600 ms buckets: 5000 -> bucket 3)
  t.same(b.series(), { bucket_ms: 1600, values: [15, 0, 0, 1] });
  t.equal(b.series().values.reduce((a, v) => a + v, 0), 16, 'nothing lost');
});

t.test('max mode keeps the largest value of merged buckets; negative times count as 0', async (t) => {
  const b = new Buckets('max', 10, 2);
  b.add(-5, 3);
  b.add(5, 1);
  b.add(15, 4);
  b.add(25, 2);
  t.same(b.series(), { bucket_ms: 20, values: [4, 2] });
});

t.test('a long run stays within its bucket count', async (t) => {
  const b = new Buckets('sum', 250, 240);
  for (let ms = 0; ms < 10 * 3600_000; ms += 1000) b.add(ms, 1);
  const s = b.series();
  t.ok(s.values.length <= 240, `${s.values.length} buckets`);
  t.equal(s.values.reduce((a, v) => a + v, 0), 36000);
  t.ok(s.bucket_ms * 240 >= 10 * 3600_000, `${s.bucket_ms} ms buckets cover the run`);
});

t.test('bad sizes are refused', async (t) => {
  t.throws(() => new Buckets('sum', 0, 10), RangeError);
  t.throws(() => new Buckets('sum', 10, 1), RangeError);
});
