/** Shared fixtures for the output-area tests: a minimal StageContext, in-memory bags, fake examples. */
import type { StageContext, StageMetrics, TileBudget } from '../../engine/types.js';
import type { EncodedExample, PatientRecord } from '../../stages/tfrecord/example.js';
import type { EmbeddingBag, TileRef } from '../../stages/types.js';

export function stageContext(name: string, signal: AbortSignal = new AbortController().signal): StageContext {
  const metrics: StageMetrics = { name, elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} };
  const tiles: TileBudget = { limit: 1, inUse: 0, maxInUse: 0, acquire: async () => {}, release: () => {} };
  return { signal, name, metrics, tiles };
}

/** An in-memory bag of `n` tiles with deterministic rows; `state.disposed` counts dispose calls. */
export function memoryBag(patient_id: string, n: number, dim = 4) {
  const state = { disposed: 0 };
  const tiles: TileRef[] = Array.from({ length: n }, (_, i) => ({ image_id: 'img-a', image_num: 0, x: 448 * i, y: 0 }));
  const value = (which: number, i: number) => which * 1000 + i + patient_id.length / 10;
  const bag: EmbeddingBag = {
    patient_id,
    outputs: [{ name: 'avg', dim }, { name: 'max', dim }],
    tiles,
    async *rows(which) {
      const w = which === 'avg' ? 1 : 2;
      for (let r = 0; r < n; r++) yield new Float32Array(dim).map((_, d) => value(w, r * dim + d));
    },
    async dispose() {
      state.disposed++;
    },
  };
  return { bag, state };
}

export function patientRecord(patient_id: string, n: number, label = 'L') {
  const { bag, state } = memoryBag(patient_id, n);
  const record: PatientRecord = {
    patient_id,
    patient: { patient_id, center_id: '1', label, image_ids: ['img-a'], lines: [2] },
    bag,
    histogram: { patient_id, tiles: n, histogram: new Float32Array(4096).fill(1 / 4096) },
  };
  return { record, state };
}

/** A fake EncodedExample of `size` deterministic bytes, yielded in two chunks; counts reads and disposals. */
export function fakeExample(patient_id: string, size: number) {
  const state = { disposed: 0, reads: 0 };
  const bytes = new Uint8Array(size).map((_, i) => (i * 7 + patient_id.charCodeAt(patient_id.length - 1)) & 0xff);
  const example: EncodedExample = {
    patient_id,
    num_tiles: 1,
    byteLength: size,
    async *chunks() {
      state.reads++;
      yield bytes.subarray(0, size >> 1);
      yield bytes.subarray(size >> 1);
    },
    async dispose() {
      state.disposed++;
    },
  };
  return { example, state, bytes };
}

export async function* fromArray<T>(items: readonly T[], onPull?: (index: number) => void): AsyncGenerator<T> {
  for (let i = 0; i < items.length; i++) {
    onPull?.(i);
    yield items[i]!;
  }
}
