/**
 * Micro-batching: batches of at most `size`, flushed when full, `maxWaitMs` after the batch's first
 * element (so no element waits forever at the tail), and at the end of input.
 */
import type { Stage } from './types.js';

/** The timer the batcher uses; tests inject a fake one. */
export interface Clock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface BatchOptions {
  /** Largest batch. */
  readonly size: number;
  /** Longest a batch's first element waits before the batch is flushed anyway (ms). */
  readonly maxWaitMs: number;
  readonly clock?: Clock;
  /** Capacity of the output edge, in batches. */
  readonly highWaterMark?: number;
}

export function batchStage<T>(opts: BatchOptions): Stage<T, T[]> {
  const { size, maxWaitMs } = opts;
  const clock = opts.clock ?? realClock;
  if (!(size >= 1)) throw new RangeError(`batch size must be >= 1, got ${size}`);
  return async function* batch(source) {
    const it = source[Symbol.asyncIterator]();
    let buf: T[] = [];
    let timer: unknown;
    let expired: Promise<'timeout'> | undefined;
    // The pending pull survives a timeout: the next loop turn awaits the same promise.
    let pending: Promise<IteratorResult<T>> | undefined;
    try {
      for (;;) {
        pending ??= it.next();
        const r = expired ? await Promise.race([pending, expired]) : await pending;
        if (r === 'timeout') {
          expired = undefined;
          timer = undefined;
          const out = buf;
          buf = [];
          yield out;
          continue;
        }
        pending = undefined;
        if (r.done) break;
        buf.push(r.value);
        if (buf.length === 1 && buf.length < size) {
          expired = new Promise((resolve) => {
            timer = clock.setTimeout(() => resolve('timeout'), maxWaitMs);
          });
        }
        if (buf.length >= size) {
          if (timer !== undefined) clock.clearTimeout(timer);
          timer = undefined;
          expired = undefined;
          const out = buf;
          buf = [];
          yield out;
        }
      }
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
      if (buf.length > 0) yield buf;
    } finally {
      if (timer !== undefined) clock.clearTimeout(timer);
      await it.return?.();
    }
  };
}
