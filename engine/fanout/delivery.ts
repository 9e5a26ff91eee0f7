/**
 * Delivery: a slot's finished items' commits (fsync, rename) and deliveries downstream, running while the worker
 * already works on the next item, so that a worker never waits for the disk or for downstream between two items.
 * One at a time per slot, in item order; the first failure is kept and fails the slot.
 */
import type { Staging } from '../staging.js';

export class DeliveryQueue {
  /** The last queued delivery (each waits for the one before it, so this settles after all of them). */
  private tail: Promise<void> = Promise.resolve();
  private error: unknown;

  /** @param onFailure called on a failure: stops the slot's current item at once (its process is killed) */
  constructor(private readonly onFailure: () => void) {}

  /** Throws the first delivery failure, if there was one. */
  check(): void {
    if (this.error !== undefined) throw this.error;
  }

  /**
   * Queues an attempt's commit and the delivery of its staged results by `deliver`, then `done(count)`; the
   * staging is discarded on every path.
   */
  commitAndDeliver(staging: Staging, deliver: (results: AsyncIterable<unknown>) => Promise<number>, done: (count: number) => void): void {
    const previous = this.tail;
    this.tail = (async () => {
      try {
        await previous;
        await staging.commit();
        done(await deliver(staging.replay()));
      } finally {
        await staging.discard();
      }
    })();
    this.tail.catch((e: unknown) => {
      this.error ??= e;
      this.onFailure();
    });
  }

  /** Settles when every queued delivery has; rejects with a failure (the first: later ones wait for it). */
  drained(): Promise<void> {
    return this.tail;
  }

  /** Like drained() but never rejects: its error, if any, was thrown already or loses to the one in flight. */
  async settled(): Promise<void> {
    await this.tail.catch(() => undefined);
  }
}
