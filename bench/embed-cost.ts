/**
 * Embedding cost in a fresh child process: CPU ms per tile (process.cpuUsage: all threads, robust to other jobs on
 * the host) of one embedder .onnx at one batch size, thread count and session-option set (bench/session-variants.ts),
 * optionally with another onnxruntime-node copy loaded by path (a version A/B: two copies cannot share a process,
 * both native libraries are libonnxruntime.so.1). The tiles are generated (deterministic, H&E-like colours), the same
 * in every child, so the outputs of two children can be compared (`dump`).
 *
 * The child's side: node dist/bench/embed-cost.js '<EmbedCostSpec as JSON>' prints an EmbedCostRun as JSON.
 */
import { spawnSync } from 'node:child_process';
import { realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as OrtTypes from 'onnxruntime-node';
import { sessionVariant } from './session-variants.js';

type Ort = typeof OrtTypes;

export interface EmbedCostSpec {
  /** The embedder .onnx (input `tiles` uint8 [N,S,S,3]; outputs `avg`, `max`). */
  readonly model: string;
  readonly batch: number;
  readonly threads: number;
  /** A SESSION_VARIANTS name. */
  readonly variant: string;
  /** A folder holding node_modules/onnxruntime-node to load instead of this project's (version A/B). */
  readonly ortDir?: string;
  /** Tiles measured (rounded up to whole batches), after one warm-up batch. */
  readonly tiles: number;
  /** Tile side in pixels (448: the job's default tile). */
  readonly size: number;
  /** Where to write the first batch's avg and max rows (float32, little-endian, avg then max). */
  readonly dump?: string;
}

export interface EmbedCostRun {
  readonly cpuMsPerTile: number;
  readonly wallMsPerTile: number;
  readonly tiles: number;
  /** onnxruntime's own version string. */
  readonly ortVersion: string;
}

/** Distinct generated tiles (a few, cycled): smooth H&E-like colour fields with pixel noise. */
function makeTiles(count: number, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let s = 12345;
  for (let k = 0; k < count; k++) {
    const px = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        s = (s * 1103515245 + 12345) >>> 0;
        const f = Math.sin((x + 37 * k) / 23) * Math.cos((y - 11 * k) / 31);
        const i = (y * size + x) * 3;
        px[i] = 200 + 40 * f + ((s >>> 26) & 15);
        px[i + 1] = 120 + 70 * f + ((s >>> 27) & 15);
        px[i + 2] = 190 + 30 * f + ((s >>> 28) & 7);
      }
    }
    out.push(px);
  }
  return out;
}

async function loadOrt(ortDir: string | undefined): Promise<Ort> {
  if (ortDir === undefined) return (await import('onnxruntime-node')).default as unknown as Ort;
  const mod = (await import(pathToFileURL(join(ortDir, 'node_modules/onnxruntime-node/dist/index.js')).href)) as { default: Ort };
  return mod.default;
}

/** Measures one spec in this process. */
export async function measureEmbedCost(spec: EmbedCostSpec): Promise<EmbedCostRun> {
  const ort = await loadOrt(spec.ortDir);
  const B = spec.batch;
  const distinct = makeTiles(Math.min(16, Math.max(4, B)), spec.size);
  const per = spec.size * spec.size * 3;
  const batches: OrtTypes.Tensor[] = [];
  const nBatches = Math.max(1, Math.ceil(spec.tiles / B));
  for (let b = 0; b <= nBatches; b++) {
    const buf = new Uint8Array(per * B);
    for (let k = 0; k < B; k++) buf.set(distinct[(b * B + k) % distinct.length]!, k * per);
    batches.push(new ort.Tensor('uint8', buf, [B, spec.size, spec.size, 3]));
  }
  const session = await ort.InferenceSession.create(spec.model, sessionVariant(spec.variant, spec.threads));
  try {
    const first = await session.run({ tiles: batches[0]! }); // warm-up (allocations, kernel selection)
    if (spec.dump !== undefined) {
      const avg = first.avg!.data as Float32Array;
      const max = first.max!.data as Float32Array;
      const both = new Float32Array(avg.length + max.length);
      both.set(avg);
      both.set(max, avg.length);
      writeFileSync(spec.dump, Buffer.from(both.buffer, both.byteOffset, both.byteLength));
    }
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let b = 1; b <= nBatches; b++) await session.run({ tiles: batches[b]! });
    const wall = Number(process.hrtime.bigint() - t0) / 1e6;
    const c = process.cpuUsage(c0);
    const tiles = nBatches * B;
    return { cpuMsPerTile: (c.user + c.system) / 1000 / tiles, wallMsPerTile: wall / tiles, tiles, ortVersion: ort.env.versions.node ?? 'unknown' };
  } finally {
    await session.release();
  }
}

/** Measures one spec in a fresh child process (nothing of earlier runs in its heap or arena). */
export function embedCostInChild(spec: EmbedCostSpec): EmbedCostRun {
  const res = spawnSync(process.execPath, [fileURLToPath(import.meta.url), JSON.stringify(spec)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (res.status !== 0) throw new Error(`embedding cost run ${JSON.stringify(spec)} failed (exit ${res.status}, signal ${res.signal})`);
  return JSON.parse(res.stdout) as EmbedCostRun;
}

// Run as a script (embedCostInChild's child), not imported.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const run = await measureEmbedCost(JSON.parse(process.argv[2]!) as EmbedCostSpec);
  process.stdout.write(JSON.stringify(run) + '\n');
}
