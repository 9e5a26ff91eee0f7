/**
 * The run-wide tile budget: counts tiles resident in memory and makes `acquire` wait while the
 * local count would pass the limit. Worker processes keep their own budget and report their usage
 * here (`report`), so `inUse`/`maxInUse` are the global figures across processes.
 */
import type { TileBudget } from './types.js';
import { EngineError } from './types.js';

export class Budget implements TileBudget {
  private local = 0;
  private remote = new Map<string, number>();
  private remoteSum = 0;
  private peak = 0;
  private waiters: Array<() => void> = [];

  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError(`tile budget must be >= 1, got ${limit}`);
  }

  /** Tiles in use here plus what worker processes last reported. */
  get inUse(): number {
    return this.local + this.remoteSum;
  }

  get maxInUse(): number {
    return this.peak;
  }

  async acquire(n: number, signal?: AbortSignal): Promise<void> {
    if (n > this.limit) {
      throw new EngineError('E_BUDGET', 'TileBudget', undefined, `cannot acquire ${n} tiles: the limit is ${this.limit}`);
    }
    while (this.local + n > this.limit) {
      signal?.throwIfAborted();
      await new Promise<void>((resolve) => {
        const onAbort = (): void => resolve();
        signal?.addEventListener('abort', onAbort, { once: true });
        this.waiters.push(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    }
    signal?.throwIfAborted();
    this.local += n;
    this.updatePeak();
  }

  release(n: number): void {
    if (n > this.local) {
      throw new EngineError('E_BUDGET', 'TileBudget', undefined, `release(${n}) with only ${this.local} tiles in use`);
    }
    this.local -= n;
    const ws = this.waiters.splice(0, this.waiters.length);
    for (const w of ws) w();
  }

  /** Records a worker process's current usage (its own maximum feeds the global maximum via the sum). */
  report(source: string, inUse: number, maxInUse = 0): void {
    this.remoteSum += inUse - (this.remote.get(source) ?? 0);
    // Between two reports a worker may have peaked higher than either report shows.
    if (maxInUse > this.peak) this.peak = maxInUse;
    if (inUse === 0) this.remote.delete(source);
    else this.remote.set(source, inUse);
    this.updatePeak();
  }

  private updatePeak(): void {
    if (this.inUse > this.peak) this.peak = this.inUse;
  }
}

/**
 * A view of a budget for one item (one slide in a worker): counts what the item holds so that whatever
 * is still held when the item ends (error, abort, a stage that never released) goes back in one call.
 */
export class ScopedBudget implements TileBudget {
  private held = 0;

  constructor(private readonly parent: TileBudget) {}

  get limit(): number {
    return this.parent.limit;
  }
  get inUse(): number {
    return this.parent.inUse;
  }
  get maxInUse(): number {
    return this.parent.maxInUse;
  }

  async acquire(n: number, signal?: AbortSignal): Promise<void> {
    await this.parent.acquire(n, signal);
    this.held += n;
  }

  release(n: number): void {
    if (n > this.held) {
      throw new EngineError('E_BUDGET', 'TileBudget', undefined, `release(${n}) with only ${this.held} tiles held by this item`);
    }
    this.held -= n;
    this.parent.release(n);
  }

  /** Gives back everything the item still holds; returns how many tiles that was. */
  releaseAll(): number {
    const n = this.held;
    if (n > 0) this.release(n);
    return n;
  }
}
