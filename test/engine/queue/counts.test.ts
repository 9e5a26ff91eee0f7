/**
 * The coordinator's counts of its own jobs (engine/queue/counts.ts) on a real redis-server with a real QueueWorker and
 * its item processes: items held running by the test show as active on this host while the others wait; a crashed
 * attempt waiting for its retry shows as retrying, a thrown error as failed; other runs' jobs on the same queue are not
 * counted; the final counts match the items' events; a rerun counts the replayed items; a big run's refresh asks
 * about a bounded number of ids, those heard of first.
 */
import t from 'tap';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Graph, type ItemEvent } from '../../../engine/index.js';
import { queueConnection } from '../../../engine/queue/connection.js';
import { QueueRunner } from '../../../engine/queue/coordinator.js';
import { MAX_IDS_PER_REFRESH, RunJobCounts, type QueueCounts } from '../../../engine/queue/counts.js';
import { itemJobId, QUEUE_NAME, QUEUE_PREFIX } from '../../../engine/queue/job-data.js';
import { RootGuard } from '../../../engine/queue/roots.js';
import { QueueWorker } from '../../../engine/queue/worker.js';
import { redisMissing, startRedis } from '../../helpers/redis.js';
import type { TestItem } from '../fixtures/engine-worker.js';

const MODULE = new URL('../fixtures/engine-worker.ts', import.meta.url).href;

/** The counts a run reported, and a wait for the first that satisfies a condition (resolved from the callback). */
class CountsLog {
  readonly all: QueueCounts[] = [];
  private readonly waits: Array<{ ok: (c: QueueCounts) => boolean; resolve: (c: QueueCounts) => void }> = [];
  add(c: QueueCounts): void {
    this.all.push(c);
    for (const w of [...this.waits]) {
      if (!w.ok(c)) continue;
      this.waits.splice(this.waits.indexOf(w), 1);
      w.resolve(c);
    }
  }
  until(ok: (c: QueueCounts) => boolean): Promise<QueueCounts> {
    const seen = this.all.find(ok);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.waits.push({ ok, resolve }));
  }
}

const brief = (c: QueueCounts): string => JSON.stringify({ jobs: c.jobs, waiting: c.waiting, active: c.active, hosts: c.hosts, retrying: c.retrying, completed: c.completed, failed: c.failed, lost: c.lost, replayed: c.replayed });

const missing = redisMissing();
if (missing) {
  t.plan(0, missing);
} else {
  t.test('this run\'s jobs: waiting, active on this host, retrying, completed, failed; other runs\' jobs not counted', async (t) => {
    const redis = await startRedis(t);
    const dir = await mkdtemp(join(tmpdir(), 'queue-counts-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const checkpointDir = join(dir, 'checkpoints');
    await mkdir(checkpointDir);
    const connection = await queueConnection(redis.url);
    const queue = new Queue(QUEUE_NAME, { connection: connection.options, prefix: QUEUE_PREFIX });
    t.teardown(() => queue.close());
    // Another run's jobs on the same queue, delayed for an hour: they would read as retrying if they were counted.
    for (const id of ['other-1', 'other-2']) await queue.add('Other', { v: 1 }, { jobId: id, delay: 3_600_000 });

    // One process: items run one at a time, in the order they were added.
    const worker = new QueueWorker({ connection, roots: await RootGuard.open([dir]), processes: 1, tileLimit: 64, moduleUrl: MODULE, exportNames: ['perItem'], paths: async () => ({ reads: [], models: [] }), localConfig: (job) => job.config, lockMs: 5000, stalledMs: 2000 });
    t.teardown(() => worker.stop(true));
    await worker.start();

    const items: TestItem[] = [
      { key: 'a', n: 1 },
      { key: 'held', n: 1, holdUntil: 'release-held' },
      { key: 'b', n: 1 },
      { key: 'crash', n: 2, failAt: 1, fail: 'kill', failOnce: true },
      { key: 'throws', n: 2, failAt: 0, fail: 'throw' },
    ];
    const run = async (log: CountsLog, events: ItemEvent[]): Promise<unknown> => {
      // A long backoff: the crashed item stays retrying until the test promotes it.
      const runner = new QueueRunner({ connection, sha256: {}, attempts: 2, backoffMs: 3_600_000, sweepMs: 200, countsMs: 50, onCounts: (c) => log.add(c) });
      const g = new Graph({ name: 'q', tmpDir: dir, metricsIntervalMs: 0, fanOutRunner: runner });
      g.on('item', (e) => events.push(e));
      g.source('Items', async function* () {
        yield* items;
      })
        .fanOut('Work', { module: MODULE, exportName: 'perItem', config: { dir }, key: (i: TestItem) => i.key, checkpointDir, retries: 1 })
        .sink('Collect', async (src) => {
          for await (const _ of src);
        });
      return g.run().then(() => undefined, (e: unknown) => e);
    };

    const log = new CountsLog();
    const events: ItemEvent[] = [];
    const ran = run(log, events);
    const holding = await log.until((c) => c.completed === 1 && c.active === 1 && c.hosts[hostname()] === 1);
    t.equal(brief(holding), brief({ jobs: 5, waiting: 3, active: 1, hosts: { [hostname()]: 1 }, retrying: 0, completed: 1, failed: 0, lost: 0, replayed: 0, final: false }), 'a done, held active on this host, three waiting; the other run\'s two jobs not counted');
    t.same((await queue.getJobCounts('delayed')).delayed, 2, 'while the queue as a whole has the other run\'s jobs delayed');
    await writeFile(join(dir, 'release-held'), '1');
    const stuck = await log.until((c) => c.retrying === 1 && c.failed === 1 && c.completed === 3);
    t.equal(brief(stuck), brief({ jobs: 5, waiting: 0, active: 0, hosts: {}, retrying: 1, completed: 3, failed: 1, lost: 0, replayed: 0, final: false }), 'the crashed item retrying (delayed for its backoff), the throwing one failed');
    await (await queue.getJob(itemJobId(checkpointDir, 'crash')))!.promote();
    t.equal(await ran, undefined, 'the run ends');
    const last = log.all.at(-1)!;
    t.ok(last.final, 'the last counts are the final refresh');
    t.equal(brief(last), brief({ jobs: 5, waiting: 0, active: 0, hosts: {}, retrying: 0, completed: 4, failed: 1, lost: 0, replayed: 0, final: true }));
    t.equal(last.completed, events.filter((e) => e.type === 'done').length, 'completed as many as the items done');
    t.equal(last.failed, events.filter((e) => e.type === 'failed').length, 'failed as many as the items failed');
    const completedSeen = log.all.map((c) => c.completed);
    t.same(completedSeen, [...completedSeen].sort((x, y) => x - y), 'completed never goes down');

    // Again: the four committed items replayed (no job); the failed one is a job again, and fails again.
    const again = new CountsLog();
    t.equal(await run(again, []), undefined);
    t.equal(brief(again.all.at(-1)!), brief({ jobs: 1, waiting: 0, active: 0, hosts: {}, retrying: 0, completed: 0, failed: 1, lost: 0, replayed: 4, final: true }));
  });

  t.test('a big run: a refresh asks about at most MAX_IDS_PER_REFRESH ids, those heard of first; the final one about all', async (t) => {
    const redis = await startRedis(t);
    const connection = await queueConnection(redis.url);
    const queue = new Queue(QUEUE_NAME, { connection: connection.options, prefix: QUEUE_PREFIX });
    t.teardown(() => queue.close());
    const n = MAX_IDS_PER_REFRESH * 2 + 10;
    const ids = Array.from({ length: n }, (_, i) => `job-${i}`);
    // Every job waits, but the last two are delayed (as a retry's backoff would have them): only asking finds that out.
    await queue.addBulk(ids.map((jobId, i) => ({ name: 'Work', data: { v: 1 }, opts: { jobId, ...(i >= n - 2 && { delay: 3_600_000 }) } })));
    const seen: QueueCounts[] = [];
    const errors: Error[] = [];
    const counts = new RunJobCounts(queue, (c) => seen.push(c), (e) => errors.push(e));
    for (const id of ids) counts.track(id);
    await counts.refresh(false);
    t.equal(seen.at(-1)!.retrying, 0, 'the first refresh asked about the first ids only');
    counts.changed(ids[n - 1]!);
    await counts.refresh(false);
    t.equal(seen.at(-1)!.retrying, 1, 'the id heard of is asked about at the next refresh');
    await counts.refresh(true);
    t.same([seen.at(-1)!.retrying, seen.at(-1)!.waiting, seen.at(-1)!.jobs, seen.at(-1)!.final], [2, n - 2, n, true], 'the final refresh asked about every id');
    t.same(errors, []);
  });
}
