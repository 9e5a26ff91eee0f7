/**
 * Keyed reducer: gathers a patient's tile embeddings into an EmbeddingBag sorted by (image_num, y, x),
 * spilling rows to disk past a memory threshold so a bag of tens of thousands of tiles stays off the heap.
 *
 * Memory: per tile only its TileRef and a slot number stay in memory once spilled; rows live in one
 * append-only file per embedder output under ctx.spillDir (EfficientNet: avg and max; a ViT: cls and mean; row
 * `slot` at byte slot*dim*4 of its output's file), read back in sorted order by positional reads that coalesce runs
 * of consecutive slots.
 *
 * Ownership: extractOutput hands the rows (and any open spill files) to the bag; bag.dispose() closes
 * and removes them. Before that, dispose(acc) does. Both are idempotent. The spill files are opened
 * once and read through their descriptors, so the engine removing spillDir after extractOutput does not
 * break a bag that is still being read (POSIX unlink semantics).
 */
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { EngineError, type CombineContext, type CombineFn } from '../engine/types.js';
import type { EmbeddingBag, EmbeddingOutputSpec, TileEmbeddings, TileRef } from './types.js';

const STAGE = 'combine-embeddings';
/** Default in-memory row bytes per accumulator before spilling. */
export const DEFAULT_SPILL_THRESHOLD_BYTES = 64 * 1024 * 1024;
/**
 * Default in-memory row bytes across all accumulators of one reducer. Every patient's bag waits for the join
 * at the end of input, so without a shared limit 500 patients of 2,000 tiles (20 MB each, under the
 * per-bag threshold) would hold 10 GB.
 */
export const DEFAULT_MEMORY_BUDGET_BYTES = 256 * 1024 * 1024;
/** Rows per read from the spill files, and per chunk a spilled bag yields (256 rows of 1280 floats = 1.25 MiB). */
export const BAG_CHUNK_ROWS = 256;

interface Entry {
  readonly ref: TileRef;
  /** Row index in the spill files, or -1 while the rows are in memory. */
  slot: number;
  /** One row per output (in `outputs` order) while in memory; undefined once spilled. */
  rows: Float32Array[] | undefined;
}

export interface EmbeddingAcc {
  readonly ctx: CombineContext;
  /** The outputs' names and widths, set by the first tile (every tile must have the same). */
  outputs: readonly EmbeddingOutputSpec[] | undefined;
  entries: Entry[];
  /** Bytes of rows held in memory (entries with slot -1). */
  memBytes: number;
  spill: SpillFiles | undefined;
  /** 'extracted': the bag owns the rows and files now. */
  state: 'open' | 'extracted' | 'disposed';
}

export function combineEmbeddings(opts: { spillThresholdBytes?: number; memoryBudgetBytes?: number } = {}): CombineFn<TileEmbeddings, EmbeddingAcc, EmbeddingBag> {
  const memory = new BagMemory(opts.spillThresholdBytes ?? DEFAULT_SPILL_THRESHOLD_BYTES, opts.memoryBudgetBytes ?? DEFAULT_MEMORY_BUDGET_BYTES);
  return {
    createAccumulator: (ctx) => memory.fresh(ctx),
    addInput: (acc, g) => addGroup(memory, acc, g),
    mergeAccumulators: (accs, ctx) => mergeAccumulators(memory, accs, ctx),
    extractOutput: (acc) => extractBag(memory, acc),
    dispose: (acc) => memory.dispose(acc),
  };
}

/**
 * One reducer's row memory: each accumulator spills past `threshold` bytes, and past `budget` bytes across all of
 * them the one holding the most rows in memory spills.
 */
class BagMemory {
  /** Row bytes in memory across this reducer's accumulators (extracted bags still count: the join holds them). */
  private resident = 0;
  /** Accumulators still taking rows: where a spill can free memory. */
  private readonly active = new Set<EmbeddingAcc>();

  constructor(
    private readonly threshold: number,
    private readonly budget: number,
  ) {}

  fresh(ctx: CombineContext): EmbeddingAcc {
    const acc: EmbeddingAcc = { ctx, outputs: undefined, entries: [], memBytes: 0, spill: undefined, state: 'open' };
    this.active.add(acc);
    return acc;
  }

  async spill(acc: EmbeddingAcc): Promise<void> {
    this.resident -= acc.memBytes;
    await spillMemory(acc);
  }

  /** The accumulator takes no more rows (its bag was extracted): its memory still counts, but it cannot spill. */
  close(acc: EmbeddingAcc): void {
    this.active.delete(acc);
  }

  async dispose(acc: EmbeddingAcc): Promise<void> {
    if (acc.state === 'open') this.resident -= acc.memBytes;
    this.active.delete(acc);
    await disposeAcc(acc);
  }

  /** Adds one tile's rows (one per output, copied) to `acc`, then spills as the threshold and the budget say. */
  async add(acc: EmbeddingAcc, ref: TileRef, outputs: readonly EmbeddingOutputSpec[], rows: readonly Float32Array[]): Promise<void> {
    if (acc.state !== 'open') throw new EngineError('E_ACCUMULATOR_STATE', STAGE, acc.ctx.key, `addInput on a ${acc.state} accumulator`);
    acc.outputs ??= checkSpecs(acc, ref, outputs);
    if (!sameSpecs(acc.outputs, outputs) || rows.length !== outputs.length || rows.some((r, k) => r.length !== outputs[k]!.dim)) {
      throw new EngineError('E_EMBEDDING_DIM', STAGE, acc.ctx.key, `tile (${ref.x}, ${ref.y}) of image ${ref.image_id}: outputs ${describeRows(outputs, rows)}, expected ${describeSpecs(acc.outputs)}`);
    }
    // Copies: the input may be a view on a larger (batch) buffer that we must not keep alive.
    const bytes = rows.reduce((n, r) => n + r.byteLength, 0);
    acc.entries.push({ ref, slot: -1, rows: rows.map((r) => r.slice()) });
    acc.memBytes += bytes;
    this.resident += bytes;
    if (acc.memBytes > this.threshold) await this.spill(acc);
    else await this.enforceBudget();
  }

  /** Past the shared budget, the accumulator holding the most rows in memory spills them. */
  private async enforceBudget(): Promise<void> {
    while (this.resident > this.budget) {
      let largest: EmbeddingAcc | undefined;
      for (const a of this.active) if (a.memBytes > (largest?.memBytes ?? 0)) largest = a;
      if (largest === undefined) return; // what is left in memory belongs to extracted bags
      await this.spill(largest);
    }
  }
}

/** A group of one slide's tiles, packed: each tile's rows are views here, copied by add. */
async function addGroup(memory: BagMemory, acc: EmbeddingAcc, g: TileEmbeddings): Promise<EmbeddingAcc> {
  const n = g.x.length;
  if (g.y.length !== n || g.outputs.length === 0 || g.outputs.some((o) => !(o.dim > 0) || o.rows.length !== n * o.dim)) {
    const found = g.outputs.map((o) => `${o.name} ${o.rows.length} values (width ${o.dim})`).join(', ') || 'no outputs';
    throw new EngineError('E_EMBEDDING_DIM', STAGE, acc.ctx.key, `a group of ${n} tile(s) of image ${g.image_id} has ${g.y.length} y positions and ${found}, expected ${n} rows of each output`);
  }
  const specs = g.outputs.map((o) => ({ name: o.name, dim: o.dim }));
  for (let i = 0; i < n; i++) {
    const rows = g.outputs.map((o) => o.rows.subarray(i * o.dim, (i + 1) * o.dim));
    await memory.add(acc, { image_id: g.image_id, image_num: g.image_num, x: g.x[i]!, y: g.y[i]! }, specs, rows);
  }
  return acc;
}

/** The first tile's outputs: non-empty, distinct names, positive widths (E_EMBEDDING_DIM otherwise). */
function checkSpecs(acc: EmbeddingAcc, ref: TileRef, outputs: readonly EmbeddingOutputSpec[]): readonly EmbeddingOutputSpec[] {
  if (outputs.length === 0 || new Set(outputs.map((o) => o.name)).size !== outputs.length || outputs.some((o) => !(o.dim > 0))) {
    throw new EngineError('E_EMBEDDING_DIM', STAGE, acc.ctx.key, `tile (${ref.x}, ${ref.y}) of image ${ref.image_id}: outputs ${describeSpecs(outputs)}: expected distinct names of non-zero width`);
  }
  return outputs.map((o) => ({ name: o.name, dim: o.dim }));
}

function sameSpecs(a: readonly EmbeddingOutputSpec[], b: readonly EmbeddingOutputSpec[]): boolean {
  return a.length === b.length && a.every((o, k) => o.name === b[k]!.name && o.dim === b[k]!.dim);
}

function describeSpecs(outputs: readonly EmbeddingOutputSpec[]): string {
  return outputs.map((o) => `${o.name}[${o.dim}]`).join(', ') || 'none';
}

function describeRows(outputs: readonly EmbeddingOutputSpec[], rows: readonly Float32Array[]): string {
  return outputs.map((o, k) => `${o.name}[${rows[k]?.length ?? 'missing'}]`).join(', ') || 'none';
}

/** One accumulator holding every row of `accs`, which are disposed of (their files freed) once it is built. */
async function mergeAccumulators(memory: BagMemory, accs: EmbeddingAcc[], ctx: CombineContext): Promise<EmbeddingAcc> {
  const merged = memory.fresh(ctx);
  try {
    for (const acc of accs) await moveRows(memory, acc, merged);
  } catch (err) {
    await memory.dispose(merged);
    throw err;
  }
  // The inputs are consumed: free their files now (dispose is idempotent if the engine calls it too).
  for (const acc of accs) await memory.dispose(acc);
  return merged;
}

/** Adds `acc`'s rows to `into`: spilled rows are read back in runs and re-added (may re-spill), then those in memory. */
async function moveRows(memory: BagMemory, acc: EmbeddingAcc, into: EmbeddingAcc): Promise<void> {
  const spilled = acc.entries.filter((e) => e.slot >= 0);
  const outputs = acc.outputs ?? [];
  for (let i = 0; i < spilled.length; i += BAG_CHUNK_ROWS) {
    const batch = spilled.slice(i, i + BAG_CHUNK_ROWS);
    const slots = batch.map((e) => e.slot);
    const read: Float32Array[] = [];
    for (let k = 0; k < outputs.length; k++) read.push(await acc.spill!.read(k, slots));
    for (let j = 0; j < batch.length; j++) {
      await memory.add(into, batch[j]!.ref, outputs, read.map((r, k) => r.subarray(j * outputs[k]!.dim, (j + 1) * outputs[k]!.dim)));
    }
  }
  for (const e of acc.entries) if (e.slot < 0) await memory.add(into, e.ref, outputs, e.rows!);
}

/** The patient's bag, sorted by (image_num, y, x); a tile received twice is E_DUPLICATE_TILE. */
async function extractBag(memory: BagMemory, acc: EmbeddingAcc): Promise<EmbeddingBag> {
  if (acc.state !== 'open') throw new EngineError('E_ACCUMULATOR_STATE', STAGE, acc.ctx.key, `extractOutput on a ${acc.state} accumulator`);
  if (acc.spill !== undefined && acc.memBytes > 0) await memory.spill(acc);
  memory.close(acc);
  const entries = [...acc.entries].sort(compareEntries);
  for (let i = 1; i < entries.length; i++) {
    if (compareEntries(entries[i - 1]!, entries[i]!) === 0) {
      const r = entries[i]!.ref;
      throw new EngineError('E_DUPLICATE_TILE', STAGE, acc.ctx.key, `patient ${acc.ctx.key}: tile (${r.x}, ${r.y}) of image ${r.image_id} was received twice`);
    }
  }
  acc.state = 'extracted';
  return makeBag(acc.ctx.key, acc.outputs ?? [], entries, acc.spill);
}

function compareEntries(a: Entry, b: Entry): number {
  const p = a.ref;
  const q = b.ref;
  return p.image_num - q.image_num || p.y - q.y || p.x - q.x || (p.image_id < q.image_id ? -1 : p.image_id > q.image_id ? 1 : 0);
}

async function disposeAcc(acc: EmbeddingAcc): Promise<void> {
  if (acc.state !== 'open') return; // disposed already, or the bag owns everything now
  acc.state = 'disposed';
  acc.entries = [];
  acc.memBytes = 0;
  const spill = acc.spill;
  acc.spill = undefined;
  await spill?.remove();
}

/** Appends all in-memory rows of `acc` to its spill files (creating them on first use). */
async function spillMemory(acc: EmbeddingAcc): Promise<void> {
  acc.ctx.signal.throwIfAborted();
  acc.spill ??= await SpillFiles.create(acc.ctx.spillDir, acc.ctx.key, acc.outputs ?? []);
  const pending = acc.entries.filter((e) => e.slot < 0);
  for (let i = 0; i < pending.length; i += BAG_CHUNK_ROWS) {
    const batch = pending.slice(i, i + BAG_CHUNK_ROWS);
    const first = await acc.spill.append(batch.map((e) => e.rows!));
    batch.forEach((e, j) => {
      e.slot = first + j;
      e.rows = undefined;
    });
  }
  acc.memBytes = 0;
}

/** The append-only row files of one accumulator: one per embedder output (file k holds output k's rows). */
class SpillFiles {
  private rows = 0;
  private constructor(
    private readonly paths: readonly string[],
    private readonly files: readonly FileHandle[],
    private readonly outputs: readonly EmbeddingOutputSpec[],
    private readonly key: string,
  ) {}

  static async create(dir: string, key: string, outputs: readonly EmbeddingOutputSpec[]): Promise<SpillFiles> {
    await mkdir(dir, { recursive: true });
    const base = join(dir, `embeddings-${process.pid}-${randomBytes(6).toString('hex')}`);
    const paths = outputs.map((_, k) => `${base}.${k}`);
    const files: FileHandle[] = [];
    try {
      for (const p of paths) files.push(await open(p, 'wx+'));
    } catch (err) {
      await Promise.all(files.map((f) => f.close()));
      await Promise.all(paths.map((p) => rm(p, { force: true })));
      throw err;
    }
    return new SpillFiles(paths, files, outputs, key);
  }

  /** Appends tiles' rows (each tile: one row per output); returns the slot of the first. */
  async append(tiles: readonly Float32Array[][]): Promise<number> {
    const first = this.rows;
    for (let k = 0; k < this.files.length; k++) {
      await writeAll(this.files[k]!, concatRows(tiles.map((rows) => rows[k]!)), first * this.outputs[k]!.dim * 4);
    }
    this.rows += tiles.length;
    return first;
  }

  /** Output k's rows at `slots` (in that order) as one row-major array; runs of consecutive slots are read at once. */
  async read(k: number, slots: readonly number[]): Promise<Float32Array> {
    const rowBytes = this.outputs[k]!.dim * 4;
    const out = new Float32Array(slots.length * this.outputs[k]!.dim);
    const bytes = new Uint8Array(out.buffer);
    const fh = this.files[k]!;
    let i = 0;
    while (i < slots.length) {
      let j = i + 1;
      while (j < slots.length && slots[j] === slots[j - 1]! + 1) j++;
      const length = (j - i) * rowBytes;
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(bytes, i * rowBytes + done, length - done, slots[i]! * rowBytes + done);
        if (bytesRead === 0) throw new EngineError('E_SPILL_READ', STAGE, this.key, `spill file ${this.paths[k]} ended before slot ${slots[i]}`);
        done += bytesRead;
      }
      i = j;
    }
    return out;
  }

  async remove(): Promise<void> {
    try {
      await Promise.all(this.files.map((f) => f.close()));
    } finally {
      await Promise.all(this.paths.map((p) => rm(p, { force: true })));
    }
  }
}

function concatRows(rows: Float32Array[]): Uint8Array {
  const out = new Uint8Array(rows.reduce((s, r) => s + r.byteLength, 0));
  let at = 0;
  for (const r of rows) {
    out.set(new Uint8Array(r.buffer, r.byteOffset, r.byteLength), at);
    at += r.byteLength;
  }
  return out;
}

async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

/** A bag over sorted entries whose rows are in memory, in the spill files, or (after a final spill) all in the files. */
function makeBag(patient_id: string, outputs: readonly EmbeddingOutputSpec[], entries: Entry[], spill: SpillFiles | undefined): EmbeddingBag {
  let disposed = false;
  const tiles = entries.map((e) => e.ref);
  return {
    patient_id,
    outputs,
    tiles,
    async *rows(output) {
      const live = (): void => {
        if (disposed) throw new EngineError('E_DISPOSED', STAGE, patient_id, `bag of patient ${patient_id} read after dispose`);
      };
      live();
      const k = outputs.findIndex((o) => o.name === output);
      if (k < 0 && entries.length === 0) return; // a bag without tiles has no rows of any output
      if (k < 0) throw new EngineError('E_EMBEDDING_OUTPUT', STAGE, patient_id, `bag of patient ${patient_id} has no output '${output}' (it has ${describeSpecs(outputs)})`);
      if (spill === undefined) {
        // In memory: each row as it is. (Copying them into fresh 1.25 MiB chunks cost the parent a page fault per
        // 4 KB: ~100 ms per 2,000-tile patient, at the end of the job.)
        for (const e of [...entries]) {
          live();
          yield e.rows![k]!;
        }
        return;
      }
      for (let i = 0; i < entries.length; i += BAG_CHUNK_ROWS) {
        live();
        yield await spill.read(k, entries.slice(i, i + BAG_CHUNK_ROWS).map((e) => e.slot));
      }
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      entries.length = 0;
      await spill?.remove();
    },
  };
}
