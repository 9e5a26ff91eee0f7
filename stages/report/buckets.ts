/**
 * A time series in bounded memory: values added at times (ms since the run started) land in fixed-width buckets;
 * when a time falls past the last bucket, neighbouring buckets are merged in pairs and the width doubles. So a
 * series never holds more than `maxBuckets` numbers, whatever the run's length, and its resolution is the run's
 * length over maxBuckets (at worst half that: the width is a power of two times the first one).
 */

/** How two buckets merge, and how a value joins its bucket: summed (counts) or the largest kept (levels). */
export type BucketMode = 'sum' | 'max';

/** The series as the report keeps it. */
export interface BucketSeries {
  /** Width of a bucket, ms. */
  readonly bucket_ms: number;
  /** One value per bucket from time 0; trailing empty buckets are not kept. */
  readonly values: number[];
}

export class Buckets {
  private width: number;
  private readonly values: number[] = [];

  constructor(
    private readonly mode: BucketMode,
    firstWidthMs: number,
    private readonly maxBuckets: number,
  ) {
    if (!(firstWidthMs > 0) || !Number.isInteger(maxBuckets) || maxBuckets < 2) throw new RangeError(`Buckets: width ${firstWidthMs} ms, ${maxBuckets} buckets`);
    this.width = firstWidthMs;
  }

  /** Adds `value` at `tMs` (negative times count as 0). */
  add(tMs: number, value: number): void {
    let i = Math.floor(Math.max(0, tMs) / this.width);
    while (i >= this.maxBuckets) {
      this.coarsen();
      i = Math.floor(Math.max(0, tMs) / this.width);
    }
    while (this.values.length <= i) this.values.push(0);
    this.values[i] = this.mode === 'sum' ? this.values[i]! + value : Math.max(this.values[i]!, value);
  }

  /** Pairs of buckets merged into one, twice as wide. */
  private coarsen(): void {
    const merged: number[] = [];
    for (let i = 0; i < this.values.length; i += 2) {
      const a = this.values[i]!;
      const b = this.values[i + 1] ?? 0;
      merged.push(this.mode === 'sum' ? a + b : Math.max(a, b));
    }
    this.values.length = 0;
    this.values.push(...merged);
    this.width *= 2;
  }

  series(): BucketSeries {
    return { bucket_ms: this.width, values: this.values.slice() };
  }
}
