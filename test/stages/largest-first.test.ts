import t from 'tap';
import { largestFirst } from '../../stages/largest-first.js';
import type { SlideTask } from '../../stages/types.js';
import { makeCtx } from '../helpers/ctx.js';

const task = (image_id: string, fileStamp?: string): SlideTask => ({
  image_id, patient_id: 'p', image_num: 0, slidesDir: '/slides', ...(fileStamp !== undefined && { fileStamp }),
});

async function* source(tasks: SlideTask[], onPull: () => void = () => undefined): AsyncGenerator<SlideTask> {
  for (const x of tasks) {
    onPull();
    yield x;
  }
}

async function ids(it: AsyncIterable<SlideTask>): Promise<string[]> {
  const out: string[] = [];
  for await (const x of it) out.push(x.image_id);
  return out;
}

t.test('largest file first; unresolved slides first of all; ties in CSV order', async (t) => {
  const tasks = [task('small', '10:1'), task('big-1', '30:5'), task('missing', 'unresolved'), task('big-2', '30:2'), task('mid', '20:9'), task('nostamp')];
  t.same(await ids(largestFirst()(source(tasks), makeCtx())), ['missing', 'nostamp', 'big-1', 'big-2', 'mid', 'small']);
});

t.test('takes its whole input (the tasks, not tiles) before the first task, then one per pull', async (t) => {
  const tasks = Array.from({ length: 20 }, (_, i) => task(`s${i}`, `${i}:0`));
  let pulled = 0;
  const it = largestFirst()(source(tasks, () => pulled++), makeCtx())[Symbol.asyncIterator]();
  t.equal(pulled, 0, 'nothing read before the first pull');
  t.same((await it.next()).value?.image_id, 's19');
  t.equal(pulled, 20, 'every task read for the first one');
  t.same((await it.next()).value?.image_id, 's18');
  t.equal(pulled, 20);
});

t.test('an error from upstream passes through; nothing is yielded; a consumer that stops early ends the source', async (t) => {
  const failing = (async function* (): AsyncGenerator<SlideTask> {
    yield task('a', '1:1');
    throw Object.assign(new Error('E_CSV: row 3'), { code: 'E_CSV' });
  })();
  const seen: string[] = [];
  await t.rejects((async () => {
    for await (const x of largestFirst()(failing, makeCtx())) seen.push(x.image_id);
  })(), { code: 'E_CSV' });
  t.same(seen, [], 'no task went out before the input was whole');

  let closed = false;
  const src = (async function* (): AsyncGenerator<SlideTask> {
    try {
      yield task('a', '1:1');
      yield task('b', '2:1');
    } finally {
      closed = true;
    }
  })();
  for await (const x of largestFirst()(src, makeCtx())) {
    t.equal(x.image_id, 'b');
    break;
  }
  t.ok(closed, "the source's finally ran");
});
