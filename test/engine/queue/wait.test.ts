/**
 * finishedState (engine/queue/wait.ts), the coordinator's wait sweep, on a real redis-server with a real BullMQ worker:
 * a waiting job is not finished, a removed one is missing, a completed one is completed with its return value, a failed
 * attempt waiting for its retry is not finished, and the last failed attempt is failed.
 */
import t from 'tap';
import { Queue, Worker, type Job } from 'bullmq';
import { queueConnection } from '../../../engine/queue/connection.js';
import { QUEUE_PREFIX, type ItemQueue } from '../../../engine/queue/job-data.js';
import { finishedState } from '../../../engine/queue/wait.js';
import { redisMissing, startRedis } from '../../helpers/redis.js';

const missing = redisMissing();
if (missing) {
  t.plan(0, missing);
} else {
  t.test('waiting, missing, completed, retrying, failed', async (t) => {
    const redis = await startRedis(t);
    const connection = await queueConnection(redis.url);
    const name = 'wait-test';
    const queue = new Queue(name, { connection: connection.options, prefix: QUEUE_PREFIX }) as unknown as ItemQueue;
    t.teardown(() => queue.close());

    await queue.add('Item', { v: 1 } as never, { jobId: 'waiting' });
    t.equal(await finishedState(queue, 'waiting'), undefined, 'a waiting job is not finished');
    await (await queue.getJob('waiting'))!.remove();
    t.same(await finishedState(queue, 'waiting'), { state: 'missing' }, 'a removed job is missing');
    t.same(await finishedState(queue, 'never-added'), { state: 'missing' });

    const events: string[] = [];
    const next = (): Promise<void> => new Promise((resolve) => worker.once('failed', () => resolve()).once('completed', () => resolve()));
    const worker = new Worker(name, async (job: Job) => {
      if (job.id === 'bad') throw new Error(`attempt ${job.attemptsMade + 1} fails`);
      return { tiles: 3 };
    }, { connection: connection.options, prefix: QUEUE_PREFIX });
    t.teardown(() => worker.close());
    worker.on('failed', (job) => events.push(`failed ${job?.id}`));

    let settled = next();
    await queue.add('Item', { v: 1 } as never, { jobId: 'ok' });
    await settled;
    const ok = await finishedState(queue, 'ok');
    t.equal(ok?.state, 'completed', 'a completed job');
    t.same(ok?.state === 'completed' && ok.job.returnvalue, { tiles: 3 }, 'with its return value');

    settled = next();
    // Two attempts, the second an hour later unless promoted: the first failure leaves it delayed, not finished.
    await queue.add('Item', { v: 1 } as never, { jobId: 'bad', attempts: 2, backoff: { type: 'fixed', delay: 3_600_000 } });
    await settled;
    t.equal(await finishedState(queue, 'bad'), undefined, 'a failed attempt with a retry to come is not finished');
    settled = next();
    await (await queue.getJob('bad'))!.promote();
    await settled;
    const bad = await finishedState(queue, 'bad');
    t.equal(bad?.state, 'failed', 'the last failed attempt: failed');
    t.match(bad?.state === 'failed' && bad.job.failedReason, /attempt 2 fails/);
    t.same(events, ['failed bad', 'failed bad']);
  });
}
