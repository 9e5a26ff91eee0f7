/**
 * What the coordinator's progress counts cost (part `queue-counts`, only when named; or `node dist/bench/queue-counts.js
 * [JOBS]` alone): JOBS (10,000) jobs of one run waiting in a queue that also holds as many of another run's, and the
 * coordinator's refresh of its own (engine/queue/counts.ts: one script call for at most 2,000 ids) against asking
 * BullMQ's `getJobState` for the same 2,000 ids (what a per-id count would cost: it searches the wait list for each
 * waiting id). Per refresh, in alternated pairs, medians: Redis's time in commands (INFO commandstats) and wall time;
 * and the final refresh over all JOBS ids.
 */
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { queueConnection } from '../engine/queue/connection.js';
import { MAX_IDS_PER_REFRESH, RunJobCounts, type QueueCounts } from '../engine/queue/counts.js';
import { finishedState } from '../engine/queue/wait.js';
import { QUEUE_NAME, QUEUE_PREFIX, type ItemQueue } from '../engine/queue/job-data.js';
import type { Figure } from './figure.js';
import { Redis } from 'ioredis';
import { startBenchRedis } from './queue-redis.js';
import { log, type BenchRecord } from './record.js';

export interface QueueCountsFigures {
  readonly jobs: number;
  readonly ids_per_refresh: number;
  readonly pairs: number;
  /** Medians per refresh of MAX_IDS_PER_REFRESH ids: Redis's time in commands, and wall time. */
  readonly script_redis_ms: number;
  readonly script_wall_ms: number;
  readonly get_job_state_redis_ms: number;
  readonly get_job_state_wall_ms: number;
  /** The same ids as the coordinator's wait sweep checks them (engine/queue/wait.ts finishedState). */
  readonly finished_state_redis_ms: number;
  readonly finished_state_wall_ms: number;
  /** The final refresh: every one of the run's ids, in batches. */
  readonly final_wall_ms: number;
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function fill(queue: ItemQueue, run: string, jobs: number): Promise<string[]> {
  const ids = Array.from({ length: jobs }, (_, i) => `${run}-${String(i).padStart(6, '0')}`);
  for (let i = 0; i < ids.length; i += 1000) {
    await queue.addBulk(ids.slice(i, i + 1000).map((jobId) => ({ name: 'Bench', data: { v: 1 } as never, opts: { jobId } })));
  }
  return ids;
}

/** Redis's own time in commands so far, µs (INFO commandstats: finer than /proc's 10 ms ticks). */
async function commandUs(client: Redis): Promise<number> {
  let us = 0;
  for (const m of (await client.info('commandstats')).matchAll(/,usec=(\d+),/g)) us += Number(m[1]);
  return us;
}

/** Redis command time (ms) and wall time (ms) of `fn`. */
async function cost(client: Redis, fn: () => Promise<unknown>): Promise<[number, number]> {
  const us0 = await commandUs(client);
  const t0 = performance.now();
  await fn();
  const wall = performance.now() - t0;
  return [((await commandUs(client)) - us0) / 1000, wall];
}

export async function measureQueueCounts(jobs = 10_000, pairs = 15): Promise<QueueCountsFigures> {
  const redis = await startBenchRedis();
  const connection = await queueConnection(redis.url);
  const queue: ItemQueue = new Queue(QUEUE_NAME, { connection: connection.options, prefix: QUEUE_PREFIX });
  const stats = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  try {
    await fill(queue, 'other-run', jobs);
    const ids = await fill(queue, 'this-run', jobs);
    let last: QueueCounts | undefined;
    const counts = new RunJobCounts(queue, (c) => (last = c), (err) => log(`queue-counts: ${err.message}`));
    for (const id of ids) counts.track(id);
    const slice = ids.slice(0, MAX_IDS_PER_REFRESH);
    const script: Array<[number, number]> = [];
    const perId: Array<[number, number]> = [];
    const byHash: Array<[number, number]> = [];
    await counts.refresh(false); // warm: the script loaded
    for (let i = 0; i < pairs; i++) {
      script.push(await cost(stats, () => counts.refresh(false)));
      perId.push(await cost(stats, () => Promise.all(slice.map((id) => queue.getJobState(id)))));
      byHash.push(await cost(stats, () => Promise.all(slice.map((id) => finishedState(queue, id)))));
    }
    const [, finalWall] = await cost(stats, () => counts.refresh(true));
    if (last?.waiting !== jobs) throw new Error(`queue-counts: ${last?.waiting} waiting counted, ${jobs} expected`);
    return {
      jobs,
      ids_per_refresh: MAX_IDS_PER_REFRESH,
      pairs,
      script_redis_ms: median(script.map((c) => c[0])),
      script_wall_ms: median(script.map((c) => c[1])),
      get_job_state_redis_ms: median(perId.map((c) => c[0])),
      get_job_state_wall_ms: median(perId.map((c) => c[1])),
      finished_state_redis_ms: median(byHash.map((c) => c[0])),
      finished_state_wall_ms: median(byHash.map((c) => c[1])),
      final_wall_ms: finalWall,
    };
  } finally {
    stats.disconnect();
    await queue.close();
    await redis.stop();
  }
}

export function showQueueCounts(record: Pick<BenchRecord, 'show'>, f: QueueCountsFigures): void {
  record.show(`queue counts: one refresh of ${f.ids_per_refresh} of ${f.jobs} waiting ids (script), Redis time / wall`, `${f.script_redis_ms.toFixed(1)} ms / ${f.script_wall_ms.toFixed(1)} ms`);
  record.show(`queue counts: the same ids by getJobState each, Redis time / wall`, `${f.get_job_state_redis_ms.toFixed(1)} ms / ${f.get_job_state_wall_ms.toFixed(1)} ms`);
  record.show(`queue counts: the same ids by the coordinator's wait sweep (job hash, finishedState), Redis time / wall`, `${f.finished_state_redis_ms.toFixed(1)} ms / ${f.finished_state_wall_ms.toFixed(1)} ms`);
  record.show(`queue counts: final refresh of all ${f.jobs} ids`, `${f.final_wall_ms.toFixed(1)} ms`);
}

export function queueCountsFigure(): Figure {
  return {
    name: 'queue counts',
    enabled: (opts) => opts.runs('queue-counts'),
    async measure({ record }) {
      const f = await measureQueueCounts();
      record.result.queue_counts = f;
      showQueueCounts(record, f);
    },
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const f = await measureQueueCounts(Number(process.argv[2]) || 10_000);
  showQueueCounts({ show: (what, value) => console.log(`${what}: ${value}`) }, f);
  console.log(JSON.stringify(f));
}
