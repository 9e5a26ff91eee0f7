/**
 * One slide's HDF5 file, written with h5wasm (the HDF5 C library compiled to WebAssembly; its Node build reads
 * and writes real paths through Emscripten's NODERAWFS). Datasets are created at their final shape, chunked,
 * and filled block by block (write_slice), so no more than a block of rows is ever handed to the library.
 *
 * Determinism: HDF5 stamps every object header with the time it was created and modified (track_times, which
 * h5wasm does not expose). The library reads the time through Emscripten's clock, which calls Date.now: every
 * h5wasm call here runs synchronously inside `pinnedClock`, which makes Date.now return 0 for the duration of
 * the call and restores it before any other code can run. So the same data gives the same bytes.
 */
import type { Dataset, File as H5File } from 'h5wasm';

type H5 = typeof import('h5wasm').default;
let loaded: Promise<H5> | undefined;

/** h5wasm, loaded once on first use (the worker processes, which import graph.ts, never load it). */
export function loadH5wasm(): Promise<H5> {
  loaded ??= import('h5wasm/node').then(async (m) => {
    const h5 = m.default as unknown as H5;
    await h5.ready;
    return h5;
  });
  return loaded;
}

/** Runs `fn` with Date.now pinned to 0 (HDF5's object timestamps); synchronous, so no other code sees it. */
export function pinnedClock<T>(fn: () => T): T {
  const real = Date.now;
  Date.now = () => 0;
  try {
    return fn();
  } finally {
    Date.now = real;
  }
}

export type AttrValue = number | string | readonly number[];

/** A float32 [rows, dim] dataset filled in blocks of whole rows, in order. */
export interface RowDataset {
  readonly name: string;
  readonly rows: number;
  readonly dim: number;
  /** Rows written so far. */
  written: number;
  readonly handle: Dataset;
}

/** Rows per HDF5 chunk of a features dataset (64 x 1280 floats = 320 KB, under HDF5's 1 MB chunk cache). */
export const CHUNK_ROWS = 64;

export class SlideH5 {
  private constructor(
    readonly path: string,
    private readonly file: H5File,
  ) {}

  /**
   * Opens `path` for writing: the caller creates it first with node (so a missing folder or a full disk is a proper
   * errno naming the file); h5wasm does not throw when HDF5 cannot open a file, so its id is checked here.
   */
  static create(h5: H5, path: string): SlideH5 {
    const file = pinnedClock(() => new h5.File(path, 'w'));
    if (!(file.file_id > 0n)) throw new Error(`HDF5 could not create ${path}`);
    return new SlideH5(path, file);
  }

  /**
   * A float32 [rows, dim] dataset, chunked by CHUNK_ROWS rows, to be filled with `append`. h5wasm creates a dataset
   * from data of its full shape; so it is created empty ([0, dim], extendible to [rows, dim]) and resized, which
   * allocates nothing: the chunks are written by `append`.
   */
  rowDataset(name: string, rows: number, dim: number): RowDataset {
    const handle = pinnedClock(() => {
      const d = this.file.create_dataset({ name, data: new Float32Array(0), shape: [0, dim], maxshape: [rows, dim], dtype: '<f', chunks: [Math.max(1, Math.min(rows, CHUNK_ROWS)), dim] });
      d.resize([rows, dim]);
      return d;
    });
    return { name, rows, dim, written: 0, handle };
  }

  /** Writes whole rows after those already written. */
  append(ds: RowDataset, rows: Float32Array): void {
    const n = rows.length / ds.dim;
    if (!Number.isInteger(n) || ds.written + n > ds.rows) throw new Error(`${this.path}: ${rows.length} floats are not whole rows of ${ds.name} (${ds.written} of ${ds.rows} x ${ds.dim} written)`);
    if (n === 0) return;
    pinnedClock(() => ds.handle.write_slice([[ds.written, ds.written + n], []], rows));
    ds.written += n;
  }

  /** A dataset written at once (coords, the histogram): int64 or float32. */
  dataset(name: string, data: BigInt64Array | Float32Array, shape: number[]): Dataset {
    return pinnedClock(() => this.file.create_dataset({ name, data, shape, dtype: data instanceof BigInt64Array ? '<q' : '<f' }));
  }

  /** A second name for a dataset (`features` for `features_avg`): a hard link, the data is stored once. */
  link(target: string, name: string): void {
    pinnedClock(() => this.file.create_hard_link(`/${target}`, name));
  }

  /** Attributes on the file (root group) or on one of its datasets; numbers are stored as float64, integers as int64. */
  attrs(values: Readonly<Record<string, AttrValue | undefined>>, on?: Dataset): void {
    const target = on ?? this.file;
    pinnedClock(() => {
      for (const [name, value] of Object.entries(values)) {
        if (value === undefined) continue;
        if (typeof value === 'string') target.create_attribute(name, value);
        else {
          const list = typeof value === 'number' ? [value] : [...value];
          const ints = list.every((v) => Number.isSafeInteger(v));
          const data = ints ? BigInt64Array.from(list, (v) => BigInt(v)) : Float64Array.from(list);
          target.create_attribute(name, data, typeof value === 'number' ? [] : [list.length], ints ? '<q' : '<d');
        }
      }
    });
  }

  /** Closes the file (HDF5 writes its metadata now): a failure throws. */
  close(): void {
    const status = pinnedClock(() => this.file.close());
    if (status < 0) throw new Error(`HDF5 could not close ${this.path} (status ${status})`);
  }
}
