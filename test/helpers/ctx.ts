/** A minimal StageContext for stage tests (the engine is not needed). */
import type { StageContext, StageMetrics, TileBudget } from '../../engine/types.js';

/** A counting tile budget: acquire waits while `inUse + n > limit`. */
export class TestBudget implements TileBudget {
  inUse = 0;
  maxInUse = 0;
  acquired = 0;
  private waiters: Array<() => void> = [];
  constructor(readonly limit: number) {}
  async acquire(n: number, signal?: AbortSignal): Promise<void> {
    while (this.inUse + n > this.limit) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => reject(signal?.reason);
        signal?.addEventListener('abort', onAbort, { once: true });
        this.waiters.push(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    }
    this.inUse += n;
    this.acquired += n;
    this.maxInUse = Math.max(this.maxInUse, this.inUse);
  }
  release(n: number): void {
    this.inUse -= n;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

export function makeCtx(opts: { limit?: number; signal?: AbortSignal; name?: string } = {}): StageContext & { tiles: TestBudget } {
  const name = opts.name ?? 'test';
  const metrics: StageMetrics = { name, elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} };
  return { signal: opts.signal ?? new AbortController().signal, name, metrics, tiles: new TestBudget(opts.limit ?? 1000) };
}

/** An async iterable over an array. */
export async function* from<T>(items: readonly T[]): AsyncIterable<T> {
  for (const x of items) yield x;
}
