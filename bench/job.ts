/**
 * The main job as a child process (`node graph.js ... --no-resume`), its process tree's RSS and CPU sampled from
 * here every 50 ms: what the pipeline, memory-series, first-tile and overhead figures measure.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { descendants, treeRssBytes } from '../stages/cli/proc-tree.js';
import { userEnv } from './env.js';
import { ROOT } from './options.js';

export interface JobResult {
  wallS: number;
  /** CPU seconds (user + system) of the job's process tree. */
  cpuS: number;
  /** ... of the job's own process (the parent of the workers). */
  parentCpuS: number;
  tiles: number;
  peakRssMb: number;
  maxInflight: number;
  report: { elapsed_s: number; peak_rss_mb: number; exit_code: number };
}

/** utime + stime of one process, in clock ticks (USER_HZ, 100 on Linux). */
function cpuTicksOf(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // fields 14 and 15
  } catch {
    return undefined;
  }
}

/** Peak RSS and the last CPU ticks seen of a process tree, sampled until stop(). */
class TreeSampler {
  peak = 0;
  /** pid -> last seen utime + stime (clock ticks). */
  readonly cpuTicks = new Map<number, number>();
  private readonly timer: NodeJS.Timeout;
  private stopped = false;

  constructor(private readonly pid: number | undefined) {
    this.timer = setInterval(() => this.sample(), 50);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private sample(): void {
    if (this.stopped || this.pid === undefined) return;
    this.peak = Math.max(this.peak, treeRssBytes(this.pid));
    for (const pid of [this.pid, ...descendants(this.pid)]) {
      const ticks = cpuTicksOf(pid);
      if (ticks !== undefined) this.cpuTicks.set(pid, ticks);
    }
  }
}

/** Runs the main job on `csv` and `slidesDir` with the suite's --job-args and `extra` flags; rejects unless it exits 0. */
export async function runJob(csv: string, slidesDir: string, jobArgs: readonly string[], extra: readonly string[] = []): Promise<JobResult> {
  const out = await mkdtemp(join(os.tmpdir(), 'bench-job-'));
  try {
    const args = [join(ROOT, 'graph.js'), '--csv', csv, '--slides', slidesDir, '--out', out, '--progress', 'none', '--no-resume', ...jobArgs, ...extra];
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: userEnv() });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const sampler = new TreeSampler(child.pid);
    let code: number | null;
    try {
      code = await new Promise<number | null>((res, rej) => {
        child.on('error', rej);
        child.on('exit', (c) => {
          sampler.stop();
          res(c);
        });
      });
    } finally {
      sampler.stop();
    }
    const wallS = (performance.now() - t0) / 1000;
    if (code !== 0) throw new Error(`job ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as JobResult['report'] & { tiles_written: number; max_tiles_in_flight: number };
    // CPU of the whole tree, from the last sample of each process (misses at most one interval per process).
    const cpuS = [...sampler.cpuTicks.values()].reduce((a, b) => a + b, 0) / 100;
    const parentCpuS = (sampler.cpuTicks.get(child.pid!) ?? 0) / 100;
    return { wallS, cpuS, parentCpuS, tiles: report.tiles_written, peakRssMb: sampler.peak / 2 ** 20, maxInflight: report.max_tiles_in_flight, report };
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
