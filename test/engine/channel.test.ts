import t from 'tap';
import { Channel } from '../../engine/channel.js';

t.test('push waits while full and resumes as the reader takes', async (t) => {
  const ch = new Channel<number>(2);
  let pushed = 0;
  const producer = (async () => {
    for (let i = 0; i < 5; i++) {
      await ch.push(i);
      pushed++;
    }
    ch.close();
  })();
  await new Promise((r) => setImmediate(r));
  t.equal(pushed, 2, 'producer stops at capacity');
  t.equal(ch.depth, 2);
  const got: number[] = [];
  for await (const v of ch) got.push(v);
  await producer;
  t.same(got, [0, 1, 2, 3, 4]);
  t.equal(ch.maxDepth, 2);
});

t.test('fail reaches both sides', async (t) => {
  const ch = new Channel<number>(1);
  await ch.push(1);
  const blocked = ch.push(2);
  ch.fail(new Error('boom'));
  await t.rejects(blocked, /boom/);
  await t.rejects(ch.next(), /boom/);
});

t.test('cancel by the reader rejects pending and later pushes', async (t) => {
  const ch = new Channel<number>(1);
  await ch.push(1);
  const blocked = ch.push(2);
  const it = ch[Symbol.asyncIterator]();
  await it.return?.();
  await t.rejects(blocked, { code: 'E_CHANNEL_CANCELLED' });
  await t.rejects(ch.push(3), { code: 'E_CHANNEL_CANCELLED' });
});

t.test('capacity must be positive', async (t) => {
  t.throws(() => new Channel(0), RangeError);
});
