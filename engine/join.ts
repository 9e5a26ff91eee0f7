/**
 * CoGroupByKey: consumes N keyed inputs concurrently (so no branch deadlocks on a full edge) and emits
 * one `[key, { name: values[] }]` per key over all inputs, in sorted key order, with `[]` where an
 * input has no value for the key. Holds every value until the end of input (inputs are per-key reducer outputs).
 */
import type { KV, Node } from './index.js';
import { compareKeys } from './combine.js';

/** `{a: Node<KV<string, A>>, b: ...}` -> `{a: A[], b: B[]}`. */
export type JoinOutput<R> = { [K in keyof R]: R[K] extends Node<KV<string, infer V>> ? V[] : never };

export async function* joinStage(names: string[], inputs: AsyncIterable<KV<string, unknown>>[]): AsyncGenerator<KV<string, Record<string, unknown[]>>> {
  const groups = new Map<string, unknown[][]>();
  await Promise.all(
    inputs.map(async (src, idx) => {
      for await (const [key, value] of src) {
        let g = groups.get(key);
        if (g === undefined) {
          g = names.map(() => []);
          groups.set(key, g);
        }
        (g[idx] as unknown[]).push(value);
      }
    }),
  );
  for (const key of [...groups.keys()].sort(compareKeys)) {
    const g = groups.get(key) as unknown[][];
    groups.delete(key);
    const out: Record<string, unknown[]> = {};
    names.forEach((n, i) => (out[n] = g[i] as unknown[]));
    yield [key, out] as const;
  }
}
