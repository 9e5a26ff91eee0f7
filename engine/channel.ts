/**
 * A bounded, single-consumer queue between two stages: `push` waits while it holds `capacity`
 * elements (backpressure), the reader is an async iterator. Capacity is counted in elements.
 */

/** Thrown into a producer's `push` when the consumer of this channel has gone away. */
export class ChannelCancelled extends Error {
  readonly code = 'E_CHANNEL_CANCELLED';
  constructor() {
    super('channel consumer has gone away');
  }
}

type Waiter = { resolve: () => void; reject: (e: unknown) => void };

export class Channel<T> implements AsyncIterable<T> {
  private readonly buf: T[] = [];
  private head = 0;
  private closed = false;
  private cancelled = false;
  private error: { e: unknown } | undefined;
  private readers: Waiter[] = [];
  private writers: Waiter[] = [];
  /** Largest number of elements held at once. */
  maxDepth = 0;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError(`channel capacity must be >= 1, got ${capacity}`);
  }

  /** Elements currently held. */
  get depth(): number {
    return this.buf.length - this.head;
  }

  /** True once the consumer cancelled: pushes are refused. */
  get isCancelled(): boolean {
    return this.cancelled;
  }

  /** Adds one element, waiting while the channel is full. Rejects once the consumer cancelled or the channel failed. */
  async push(value: T): Promise<void> {
    while (this.depth >= this.capacity && !this.cancelled && this.error === undefined) {
      await new Promise<void>((resolve, reject) => this.writers.push({ resolve, reject }));
    }
    if (this.error !== undefined) throw this.error.e;
    if (this.cancelled) throw new ChannelCancelled();
    if (this.closed) throw new Error('push after close');
    this.buf.push(value);
    if (this.depth > this.maxDepth) this.maxDepth = this.depth;
    this.wake(this.readers);
  }

  /** End of stream: the reader sees `done` after the queued elements. */
  close(): void {
    this.closed = true;
    this.wake(this.readers);
  }

  /** Fails the channel: both sides see `err` (queued elements are dropped). First failure wins. */
  fail(err: unknown): void {
    if (this.error !== undefined) return;
    this.error = { e: err };
    this.buf.length = 0;
    this.head = 0;
    this.wake(this.readers);
    this.wake(this.writers);
  }

  /** The consumer is gone: queued elements are dropped and producers' pushes reject with ChannelCancelled. */
  cancel(): void {
    this.cancelled = true;
    this.buf.length = 0;
    this.head = 0;
    this.wake(this.writers);
  }

  async next(): Promise<IteratorResult<T>> {
    for (;;) {
      if (this.error !== undefined) throw this.error.e;
      if (this.depth > 0) {
        const value = this.buf[this.head] as T;
        this.buf[this.head] = undefined as T; // let the element be collected
        this.head++;
        if (this.head > 1024 && this.head * 2 > this.buf.length) {
          this.buf.splice(0, this.head);
          this.head = 0;
        }
        this.wake(this.writers);
        return { done: false, value };
      }
      if (this.closed || this.cancelled) return { done: true, value: undefined };
      await new Promise<void>((resolve, reject) => this.readers.push({ resolve, reject }));
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.next(),
      return: async () => {
        this.cancel();
        return { done: true, value: undefined };
      },
    };
  }

  private wake(list: Waiter[]): void {
    const ws = list.splice(0, list.length);
    for (const w of ws) w.resolve();
  }
}
