/**
 * The queue against the local pool on one machine (part `queue-throughput`, only when named; or `node
 * dist/bench/queue-throughput.js [--small] [--repeat N] [--workers N]` alone): the same slides, the same number of
 * worker processes, run as a local job (`--workers N`) and as a coordinator (`--queue`, `--workers 0`) with one
 * `node graph.js worker --workers N` process group, in alternated pairs; the throughput ratio (queue / local, median
 * of the pairs; target >= 0.95) and the per-slide scheduling latency: on each worker process, the gap between
 * finishing one slide's job and starting the next, plus the job's time that is not the slide's processing (BullMQ's
 * processedOn / finishedOn read back from Redis against the seconds the worker measured): what the queue adds. The worker group is started (and connected) before the coordinator's
 * clock starts, as a machine serving a queue would be.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { queueConnection } from '../engine/queue/connection.js';
import { QUEUE_NAME, QUEUE_PREFIX, type ItemJob, type ItemJobResult } from '../engine/queue/job-data.js';
import { userEnv } from './env.js';
import { slidesFigure, type Figure } from './figure.js';
import { ensureLut } from '../models/runtime/lut.js';
import { ensureModels } from '../stages/cli/models-build.js';
import { CACHE, CORES, SLIDES as SLIDES_DIR, ROOT } from './options.js';
import { smallSlides, throughputSlides, writeCsv, type SlideSet } from './inputs.js';
import { runJob, type JobResult } from './job.js';
import { startBenchRedis, type BenchRedis } from './queue-redis.js';
import { log, median, type BenchRecord } from './record.js';

export interface QueueThroughput {
  readonly slides: number;
  readonly tiles: number;
  readonly workers: number;
  readonly pairs: number;
  readonly local_tiles_per_s: number;
  readonly queue_tiles_per_s: number;
  /** Median over the pairs of queue / local tiles per second. */
  readonly ratio: number;
  /** Median of what the queue adds to a slide on its worker (ms, schedulingLatencies), and its 90th percentile. */
  readonly scheduling_latency_ms: number;
  readonly scheduling_latency_p90_ms: number;
  readonly local_cpu_s: number;
  readonly queue_coordinator_cpu_s: number;
}

/** `node graph.js worker` with `workers` processes; resolves once it says it serves the queue. */
function startWorkerGroup(url: string, workers: number): Promise<ChildProcess> {
  const args = [join(ROOT, 'graph.js'), 'worker', '--queue', url, '--root', SLIDES_DIR, '--root', tmpdir(), '--workers', String(workers)];
  const p = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: userEnv() });
  let err = '';
  return new Promise((resolve, reject) => {
    p.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (/worker: ready on /.test(err)) resolve(p);
    });
    p.once('exit', (code) => reject(new Error(`the worker group exited (${code}) before it was ready:\n${err}`)));
  });
}

function stop(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  });
}

/**
 * What the queue adds to each slide (ms), from the completed jobs Redis keeps: on each worker process, the gap
 * between finishing one job and starting the next (BullMQ hands the next job over in the completing call, so
 * usually 0), plus the part of the job's time that is not the slide's own processing (the worker's checks, the
 * process hand-off, the completion round trip: finishedOn - processedOn - the seconds the worker measured).
 */
async function schedulingLatencies(redis: BenchRedis): Promise<number[]> {
  const conn = await queueConnection(redis.url);
  const queue = new Queue<ItemJob, ItemJobResult>(QUEUE_NAME, { connection: conn.options, prefix: QUEUE_PREFIX });
  try {
    const jobs = await queue.getJobs(['completed'], 0, -1);
    const byProc = new Map<string, Array<{ start: number; end: number; overhead: number }>>();
    for (const j of jobs) {
      const r = j.returnvalue;
      if (r === null || r === undefined || j.processedOn === undefined || j.finishedOn === undefined) continue;
      const k = `${r.host}:${r.pid}`;
      const overhead = Math.max(0, j.finishedOn - j.processedOn - r.seconds * 1000);
      byProc.set(k, [...(byProc.get(k) ?? []), { start: j.processedOn, end: j.finishedOn, overhead }]);
    }
    const out: number[] = [];
    for (const runs of byProc.values()) {
      runs.sort((a, b) => a.start - b.start);
      runs.forEach((run, i) => out.push(run.overhead + (i > 0 ? Math.max(0, run.start - runs[i - 1]!.end) : 0)));
    }
    return out;
  } finally {
    await queue.close();
  }
}

const p90 = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.9))] ?? NaN;

/** `pairs` alternated local / queue runs of `set` with `workers` processes each. */
export async function measureQueueThroughput(set: SlideSet, jobArgs: readonly string[], pairs: number, workers: number): Promise<QueueThroughput> {
  const csv = writeCsv(set.ids);
  const local: JobResult[] = [];
  const queued: JobResult[] = [];
  const gaps: number[] = [];
  for (let i = 0; i < pairs; i++) {
    local.push(await runJob(csv, set.dir, jobArgs, ['--workers', String(workers)]));
    const redis = await startBenchRedis();
    try {
      const group = await startWorkerGroup(redis.url, workers);
      try {
        queued.push(await runJob(csv, set.dir, jobArgs, ['--queue', redis.url, '--workers', '0']));
      } finally {
        await stop(group);
      }
      gaps.push(...(await schedulingLatencies(redis)));
    } finally {
      await redis.stop();
    }
    log(`queue-throughput pair ${i + 1}: local ${local[i]!.wallS.toFixed(1)} s, queue ${queued[i]!.wallS.toFixed(1)} s`);
  }
  const tps = (r: JobResult): number => r.tiles / r.wallS;
  return {
    slides: set.ids.length,
    tiles: local[0]!.tiles,
    workers,
    pairs,
    local_tiles_per_s: median(local.map(tps)),
    queue_tiles_per_s: median(queued.map(tps)),
    ratio: median(local.map((l, i) => tps(queued[i]!) / tps(l))),
    scheduling_latency_ms: median(gaps),
    scheduling_latency_p90_ms: p90(gaps),
    local_cpu_s: median(local.map((r) => r.cpuS)),
    queue_coordinator_cpu_s: median(queued.map((r) => r.parentCpuS)),
  };
}

export function showQueueThroughput(record: Pick<BenchRecord, 'show'>, f: QueueThroughput): void {
  record.show(`queue vs local pool (${f.slides} slides, ${f.tiles} tiles, ${f.workers} processes, ${f.pairs} pairs)`, `${f.queue_tiles_per_s.toFixed(1)} vs ${f.local_tiles_per_s.toFixed(1)} tiles/s, ratio ${f.ratio.toFixed(3)}`);
  record.show('queue: scheduling latency per slide on its worker (median / p90)', `${f.scheduling_latency_ms.toFixed(0)} ms / ${f.scheduling_latency_p90_ms.toFixed(0)} ms`);
}

export function queueThroughputFigure(): Figure {
  return slidesFigure('queue vs local pool', (opts) => opts.runs('queue-throughput'), () => throughputSlides(), async ({ opts, record }, set) => {
    const f = await measureQueueThroughput(set, opts.jobArgs, opts.repeat, 2);
    record.result.queue_throughput = f;
    showQueueThroughput(record, f);
  });
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const flag = (name: string, fallback: number): number => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : fallback);
  // As the suite's driver does: the models and the lookup table exist before any measured run.
  const models = await ensureModels(join(CACHE, 'models'));
  await ensureLut(models.stainnet, join(CACHE, 'lut'), CORES);
  const set = argv.includes('--small') ? await smallSlides() : await throughputSlides();
  const f = await measureQueueThroughput(set, [], flag('--repeat', 3), flag('--workers', 2));
  showQueueThroughput({ show: (what, value) => console.log(`${what}: ${value}`) }, f);
  console.log(JSON.stringify(f));
}
