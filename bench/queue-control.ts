/**
 * The queue's control plane by simulation (part `queue-control`, only when named; or `node dist/bench/queue-control.js
 * [JOBS] [MACHINES]` alone): JOBS (10,000) tiny items (bench/queue-tiny.ts; each job carries a slide job's item, config and model hashes, so it
 * weighs what a slide's does) through one Redis, by the runner's own code
 * path: this process is the coordinator (a Graph whose fan-out runs on engine/queue/coordinator.ts's QueueRunner),
 * MACHINES (4) child processes are the workers (bench/queue-control-worker.ts: engine/queue/worker.ts's QueueWorker, one
 * local process each; each item is still a real job, a real process hand-off, a checkpoint file and its replay).
 * First every job is queued with no worker running: the coordinator's enqueue rate and Redis `used_memory` per
 * queued job; then the workers start: jobs/s drained end to end, CPU ms per job of Redis and of the coordinator (one
 * core's worth of either bounds the rate), and memory per completed job (completed jobs are kept a day).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Graph } from '../engine/index.js';
import { descendants } from '../stages/cli/proc-tree.js';
import { queueConnection } from '../engine/queue/connection.js';
import { QueueRunner } from '../engine/queue/coordinator.js';
import { QUEUE_NAME, QUEUE_PREFIX } from '../engine/queue/job-data.js';
import type { Figure } from './figure.js';
import type { TinyItem } from './queue-tiny.js';
import { startBenchRedis } from './queue-redis.js';
import { log, type BenchRecord } from './record.js';

export interface ControlPlaneFigures {
  readonly jobs: number;
  readonly machines: number;
  readonly enqueue_jobs_per_s: number;
  readonly drain_jobs_per_s: number;
  readonly redis_cpu_ms_per_job: number;
  readonly coordinator_cpu_ms_per_job: number;
  /** CPU of the worker processes and their local processes, per job (the rest of a job's cost). */
  readonly workers_cpu_ms_per_job: number;
  readonly redis_bytes_per_queued_job: number;
  readonly redis_bytes_per_completed_job: number;
}

const WORKER = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './queue-control-worker.ts' : './queue-control-worker.js', import.meta.url));

/** Starts one worker "machine"; resolves once it is connected. */
function startWorker(url: string, root: string): Promise<ChildProcess> {
  const p = spawn(process.execPath, [...process.execArgv, WORKER, url, root, '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    p.stdout!.setEncoding('utf8').on('data', (d: string) => {
      if (d.includes('ready')) resolve(p);
    });
    p.once('exit', (code) => reject(new Error(`bench worker exited (${code}) before it was ready`)));
  });
}

/** utime + stime (s) of `pid` and its live descendants. */
function treeCpuS(pid: number): number {
  let ticks = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const f = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // exited meanwhile
    }
  }
  return ticks / 100;
}

async function* items(n: number): AsyncGenerator<TinyItem> {
  for (let i = 0; i < n; i++) {
    const id = `TCGA-${String(i).padStart(6, '0')}-01Z-00-DX1`;
    yield { key: id, image_id: id, patient_id: `P${Math.floor(i / 3)}`, image_num: i % 3, slidesDir: '/mnt/shared/slides/cohort-2024', fileStamp: `${1_000_000_000 + i}-1733000000000` };
  }
}

const HASH = 'a'.repeat(64);
/** A slide job's config and model hashes as the coordinator sends them (graph.ts SlideConfig): the tiny item ignores them. */
const CONFIG = {
  tile: { tileSize: 448, downsample: 16, backgroundThreshold: 190, maxBackground: 0.1 },
  batchSize: 1,
  groupSize: 8,
  batchMaxWaitMs: 50,
  normalizer: `/mnt/shared/out/.work/models/stainnet-${HASH}.onnx`,
  embedder: `/mnt/shared/out/.work/models/efficientnet_b0-${HASH}.onnx`,
  lutCacheDir: '/mnt/shared/out/.work/lut',
  normalizerMode: 'lut',
  threads: 1,
};
const SHA256 = { [CONFIG.normalizer]: HASH, [CONFIG.embedder]: HASH };

/** The whole simulation; everything it starts is stopped in `finally`. */
export async function measureControlPlane(jobs = 10_000, machines = 4): Promise<ControlPlaneFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-queue-control-'));
  await mkdir(join(dir, 'tmp'));
  const redis = await startBenchRedis();
  const connection = await queueConnection(redis.url);
  const queue = new Queue(QUEUE_NAME, { connection: connection.options, prefix: QUEUE_PREFIX });
  const workers: ChildProcess[] = [];
  try {
    const mem0 = await redis.usedMemory();
    const g = new Graph({ name: 'queue-control', tmpDir: join(dir, 'tmp'), metricsIntervalMs: 0, fanOutRunner: new QueueRunner({ connection, sha256: SHA256, attempts: 2 }) });
    let delivered = 0;
    g.source('Items', () => items(jobs))
      .fanOut('Tiny', { module: new URL('./queue-tiny.js', import.meta.url).href, exportName: 'tinyItem', config: CONFIG, key: (i: TinyItem) => i.key, checkpointDir: join(dir, 'checkpoints') })
      .sink('Count', async (s) => {
        for await (const _ of s) delivered++;
      });
    const cpu0 = process.cpuUsage();
    const redisCpu0 = redis.cpuS();
    const t0 = performance.now();
    let failure: unknown;
    const run = g.run().catch((err: unknown) => {
      failure = err;
    });
    // Polled: the coordinator adds jobs as it reads its source; nothing takes them yet.
    for (;;) {
      if (failure !== undefined) throw failure;
      if ((await queue.getJobCounts('waiting')).waiting >= jobs) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const tQueued = performance.now();
    const mem1 = await redis.usedMemory();
    log(`queue-control: ${jobs} jobs queued in ${((tQueued - t0) / 1000).toFixed(1)} s; starting ${machines} workers`);
    const cpu1 = process.cpuUsage();
    workers.push(...(await Promise.all(Array.from({ length: machines }, () => startWorker(redis.url, dir)))));
    const tWorkers = performance.now();
    await run;
    if (failure !== undefined) throw failure;
    const tDone = performance.now();
    const cpu2 = process.cpuUsage();
    const redisCpu2 = redis.cpuS();
    const workersCpuS = workers.reduce((sum, w) => sum + treeCpuS(w.pid!), 0);
    if (delivered !== jobs) throw new Error(`queue-control: ${delivered} results for ${jobs} jobs`);
    const mem2 = await redis.usedMemory();
    const cpuMs = (a: NodeJS.CpuUsage, b: NodeJS.CpuUsage): number => (b.user - a.user + b.system - a.system) / 1000;
    return {
      jobs,
      machines,
      enqueue_jobs_per_s: jobs / ((tQueued - t0) / 1000),
      drain_jobs_per_s: jobs / ((tDone - tWorkers) / 1000),
      redis_cpu_ms_per_job: ((redisCpu2 - redisCpu0) * 1000) / jobs,
      coordinator_cpu_ms_per_job: (cpuMs(cpu0, cpu1) + cpuMs(cpu1, cpu2)) / jobs,
      workers_cpu_ms_per_job: (workersCpuS * 1000) / jobs,
      redis_bytes_per_queued_job: (mem1 - mem0) / jobs,
      redis_bytes_per_completed_job: (mem2 - mem0) / jobs,
    };
  } finally {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.exitCode !== null || w.signalCode !== null) return resolve();
            w.once('exit', () => resolve());
            w.kill('SIGTERM');
          }),
      ),
    );
    await queue.close();
    await redis.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

export function showControlPlane(record: Pick<BenchRecord, 'show'>, f: ControlPlaneFigures): void {
  record.show(`queue control plane: enqueue (${f.jobs} tiny jobs, coordinator + Redis)`, `${f.enqueue_jobs_per_s.toFixed(0)} jobs/s`);
  record.show(`queue control plane: drained by ${f.machines} worker processes`, `${f.drain_jobs_per_s.toFixed(0)} jobs/s`);
  record.show('queue control plane: CPU per job, Redis / coordinator / workers', `${f.redis_cpu_ms_per_job.toFixed(2)} ms / ${f.coordinator_cpu_ms_per_job.toFixed(2)} ms / ${f.workers_cpu_ms_per_job.toFixed(2)} ms`);
  record.show('queue control plane: Redis memory per job, queued / completed (kept 24 h)', `${f.redis_bytes_per_queued_job.toFixed(0)} B / ${f.redis_bytes_per_completed_job.toFixed(0)} B`);
}

export function queueControlFigure(): Figure {
  return {
    name: 'queue control plane',
    enabled: (opts) => opts.runs('queue-control'),
    async measure({ record }) {
      const f = await measureControlPlane();
      record.result.queue_control = f;
      showControlPlane(record, f);
    },
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [jobs, machines] = process.argv.slice(2).map(Number);
  const f = await measureControlPlane(jobs || 10_000, machines || 4);
  showControlPlane({ show: (what, value) => console.log(`${what}: ${value}`) }, f);
  console.log(JSON.stringify(f));
}
