/**
 * What a queue worker needs to know of this pipeline's slide jobs (engine/queue/worker.ts knows no slides): the paths a
 * job names (its slide file and folder, its models), the config as this machine runs it (its own StainNet lookup-table
 * cache and onnxruntime threads), and how far a result takes a slide (for the job's progress).
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { SlideConfig } from '../../graph.js';
import type { ItemJob } from '../../engine/queue/job-data.js';
import type { RootGuard } from '../../engine/queue/roots.js';
import type { JobPaths, QueueWorkerOptions } from '../../engine/queue/worker.js';
import { resolveSlidePath } from '../slides/resolve.js';
import type { SlideResult, SlideTask } from '../types.js';
import { cacheDir } from './cache-dir.js';

/** The exports of graph.js a job may name. */
export const SLIDE_EXPORTS: readonly string[] = ['perSlide'];

/** The slide's folder (checked first), its file when it resolves (a missing one is the slide's own error, E_SLIDE_MISSING), the models. */
async function slideJobPaths(job: ItemJob, roots: RootGuard): Promise<JobPaths> {
  const task = job.item as SlideTask;
  const config = job.config as SlideConfig;
  const reads = [String(task.slidesDir)];
  await roots.check(reads[0]!, 'slides folder', job.stage, job.key); // before looking inside it
  const file = await resolveSlidePath(task.slidesDir, task.image_id).catch(() => undefined);
  if (file !== undefined) reads.push(file);
  const models = [config.embedder, ...(config.normalizer === 'none' ? [] : [config.normalizer])];
  return { reads, models };
}

/** How far a result takes its slide: the summary says how many tiles are kept, embeddings come a group at a time. */
function measure(value: unknown): { total?: number; tiles?: number } {
  const r = value as SlideResult;
  if (r.kind === 'summary') return { total: r.tiles_kept };
  if (r.kind === 'embeddings') return { tiles: r.x.length };
  return {};
}

/**
 * The slide-specific part of a QueueWorker's options. The lookup table: each machine builds its own, into
 * `lutCacheDir` (local disk; default <cache>/lut as a local run's: WSI_CACHE_DIR or ./.cache), so workers never write into each other's cache.
 */
export function slideWorkerParts(processes: number, lutCacheDir: string = join(cacheDir(), 'lut')): Pick<QueueWorkerOptions, 'paths' | 'localConfig' | 'measure' | 'exportNames'> {
  const threads = Math.max(1, Math.floor(availableParallelism() / Math.max(1, processes)));
  return {
    exportNames: SLIDE_EXPORTS,
    paths: slideJobPaths,
    localConfig: (job) => ({ ...(job.config as SlideConfig), lutCacheDir: join(lutCacheDir), threads }),
    measure,
  };
}
