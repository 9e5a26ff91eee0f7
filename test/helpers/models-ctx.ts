/** Test helpers for the model stages: a minimal StageContext, tiles, built model files, counted sources. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { StageContext, StageMetrics, TileBudget } from '../../engine/types.js';
import { buildEfficientNetB0, buildStainNet } from '../../models/build.js';
import { modelProtoType } from '../../models/onnx-schema.js';
import type { Tile } from '../../stages/types.js';

export function makeCtx(name = 'test-stage', controller = new AbortController()): StageContext {
  const metrics: StageMetrics = {
    name, elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {},
  };
  const tiles: TileBudget = {
    limit: 1000, inUse: 0, maxInUse: 0,
    acquire: async () => undefined,
    release: () => undefined,
  };
  return { signal: controller.signal, name, metrics, tiles };
}

/** Deterministic pseudo-random bytes (xorshift32). */
export function randomBytesSeeded(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = s & 255;
  }
  return out;
}

export function makeTile(size: number, seed: number, image_id = 'img1'): Tile {
  return { image_id, patient_id: 'p1', image_num: 0, x: seed * size, y: 0, size, pixels: randomBytesSeeded(size * size * 3, seed) };
}

/** A source of batches that counts how many were pulled and whether its `finally` ran. */
export function countedSource<T>(items: readonly T[]): { source: AsyncIterable<T>; pulled: () => number; closed: () => boolean } {
  let pulled = 0;
  let closed = false;
  async function* gen(): AsyncIterable<T> {
    try {
      for (const it of items) {
        pulled++;
        yield it;
      }
    } finally {
      closed = true;
    }
  }
  return { source: gen(), pulled: () => pulled, closed: () => closed };
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** A temporary folder holding our built models (demo weights); removed by `cleanup`. */
export function builtModels(): { dir: string; stainnet: string; efficientnet: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'models-test-'));
  const stainnet = path.join(dir, 'stainnet.onnx');
  const efficientnet = path.join(dir, 'efficientnet_b0.onnx');
  writeFileSync(stainnet, buildStainNet());
  writeFileSync(efficientnet, buildEfficientNetB0());
  return { dir, stainnet, efficientnet, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** An ONNX model's metadata_props as a plain object. */
export function onnxMetadata(bytes: Uint8Array): Record<string, string> {
  const M = modelProtoType();
  const m = M.toObject(M.decode(bytes)) as { metadata_props: Array<{ key: string; value: string }> };
  return Object.fromEntries(m.metadata_props.map((p) => [p.key, p.value]));
}
