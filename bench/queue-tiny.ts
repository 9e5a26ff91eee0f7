/**
 * The control-plane bench's item (bench/queue-control.ts): a worker module whose export does next to nothing, so a
 * job's cost is the queue's own (BullMQ, Redis, the worker's process hand-off, the checkpoint file, the replay).
 */
import type { ItemFn } from '../engine/worker.js';

/** A slide task's fields (stages/types.ts SlideTask), so that a job weighs in Redis what a slide's does. */
export interface TinyItem {
  readonly key: string;
  readonly image_id: string;
  readonly patient_id: string;
  readonly image_num: number;
  readonly slidesDir: string;
  readonly fileStamp: string;
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
