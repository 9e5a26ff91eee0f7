/**
 * The control-plane bench's item (bench/queue-control.ts): a worker module whose export does next to nothing, so a
 * job's cost is the queue's own (BullMQ, Redis, the worker's process hand-off, the checkpoint file, the replay).
 */
import type { ItemFn } from '../engine/worker.js';

export interface TinyItem {
  readonly key: string;
}

export interface TinyResult {
  readonly key: string;
  readonly n: number;
}

/** One small result per item. */
export function tinyItem(): ItemFn<TinyItem, TinyResult> {
  return async function* (item: TinyItem): AsyncGenerator<TinyResult> {
    yield { key: item.key, n: 1 };
  };
}
