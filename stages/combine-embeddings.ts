/**
 * Keyed reducer: gathers a patient's tile embeddings into an EmbeddingBag sorted by (image_num, y, x),
 * spilling rows to disk past a memory threshold so a bag of tens of thousands of tiles stays off the heap.
 *
 * Memory: per tile only its TileRef and a slot number stay in memory once spilled; rows live in two
 * append-only files under ctx.spillDir (one for avg rows, one for max rows, row `slot` at byte
 * slot*dim*4), read back in sorted order by positional reads that coalesce runs of consecutive slots.
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
import type { EmbeddingBag, TileEmbeddings, TileRef } from './types.js';

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
  avg: Float32Array | undefined;
  max: Float32Array | undefined;
}

export interface EmbeddingAcc {
  readonly ctx: CombineContext;
  dim: number | undefined;
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
    const acc: EmbeddingAcc = { ctx, dim: undefined, entries: [], memBytes: 0, spill: undefined, state: 'open' };
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

  /** Adds one tile's rows (copied) to `acc`, then spills as the threshold and the budget say. */
  async add(acc: EmbeddingAcc, ref: TileRef, avg: Float32Array, max: Float32Array): Promise<void> {
    if (acc.state !== 'open') throw new EngineError('E_ACCUMULATOR_STATE', STAGE, acc.ctx.key, `addInput on a ${acc.state} accumulator`);
    if (avg.length !== max.length || (acc.dim !== undefined && avg.length !== acc.dim) || avg.length === 0) {
      throw new EngineError('E_EMBEDDING_DIM', STAGE, acc.ctx.key, `tile (${ref.x}, ${ref.y}) of image ${ref.image_id}: avg has ${avg.length} and max ${max.length} values, expected ${acc.dim ?? 'equal non-zero'}`);
    }
    acc.dim = avg.length;
    // Copies: the input may be a view on a larger (batch) buffer that we must not keep alive.
    acc.entries.push({ ref, slot: -1, avg: avg.slice(), max: max.slice() });
    acc.memBytes += avg.byteLength * 2;
    this.resident += avg.byteLength * 2;
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
  if (g.y.length !== n || !(g.dim > 0) || g.avg.length !== n * g.dim || g.max.length !== n * g.dim) {
    throw new EngineError('E_EMBEDDING_DIM', STAGE, acc.ctx.key, `a group of ${n} tile(s) of image ${g.image_id} has ${g.y.length} y positions and ${g.avg.length} avg / ${g.max.length} max values, expected ${n} x ${g.dim}`);
  }
  for (let i = 0; i < n; i++) {
    const rows = [i * g.dim, (i + 1) * g.dim] as const;
    await memory.add(acc, { image_id: g.image_id, image_num: g.image_num, x: g.x[i]!, y: g.y[i]! }, g.avg.subarray(...rows), g.max.subarray(...rows));
  }
  return acc;
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
  const dim = acc.dim ?? 0;
  for (let i = 0; i < spilled.length; i += BAG_CHUNK_ROWS) {
    const batch = spilled.slice(i, i + BAG_CHUNK_ROWS);
    const slots = batch.map((e) => e.slot);
    const avg = await acc.spill!.read('avg', slots, dim);
    const max = await acc.spill!.read('max', slots, dim);
    for (let j = 0; j < batch.length; j++) {
      await memory.add(into, batch[j]!.ref, avg.subarray(j * dim, (j + 1) * dim), max.subarray(j * dim, (j + 1) * dim));
    }
  }
  for (const e of acc.entries) if (e.slot < 0) await memory.add(into, e.ref, e.avg!, e.max!);
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
  return makeBag(acc.ctx.key, acc.dim ?? 0, entries, acc.spill);
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
  acc.spill ??= await SpillFiles.create(acc.ctx.spillDir, acc.ctx.key, acc.dim ?? 0);
  const pending = acc.entries.filter((e) => e.slot < 0);
  for (let i = 0; i < pending.length; i += BAG_CHUNK_ROWS) {
    const batch = pending.slice(i, i + BAG_CHUNK_ROWS);
    const first = await acc.spill.append(batch.map((e) => e.avg!), batch.map((e) => e.max!));
    batch.forEach((e, j) => {
      e.slot = first + j;
      e.avg = undefined;
      e.max = undefined;
    });
  }
  acc.memBytes = 0;
}

/** The two append-only row files of one accumulator. */
class SpillFiles {
  private rows = 0;
  private constructor(
    private readonly paths: { avg: string; max: string },
    private readonly files: { avg: FileHandle; max: FileHandle },
    private readonly rowBytes: number,
    private readonly key: string,
  ) {}

  static async create(dir: string, key: string, dim: number): Promise<SpillFiles> {
    await mkdir(dir, { recursive: true });
    const base = join(dir, `embeddings-${process.pid}-${randomBytes(6).toString('hex')}`);
    const paths = { avg: `${base}.avg`, max: `${base}.max` };
    const avg = await open(paths.avg, 'wx+');
    let max: FileHandle;
    try {
      max = await open(paths.max, 'wx+');
    } catch (err) {
      await avg.close();
      await rm(paths.avg, { force: true });
      throw err;
    }
    return new SpillFiles(paths, { avg, max }, dim * 4, key);
  }

  /** Appends rows; returns the slot of the first. */
  async append(avg: Float32Array[], max: Float32Array[]): Promise<number> {
    const first = this.rows;
    const position = first * this.rowBytes;
    await writeAll(this.files.avg, concatRows(avg), position);
    await writeAll(this.files.max, concatRows(max), position);
    this.rows += avg.length;
    return first;
  }

  /** Reads the rows at `slots` (in that order) into one row-major array; runs of consecutive slots are read at once. */
  async read(which: 'avg' | 'max', slots: readonly number[], dim: number): Promise<Float32Array> {
    const out = new Float32Array(slots.length * dim);
    const bytes = new Uint8Array(out.buffer);
    const fh = this.files[which];
    let i = 0;
    while (i < slots.length) {
      let j = i + 1;
      while (j < slots.length && slots[j] === slots[j - 1]! + 1) j++;
      const length = (j - i) * this.rowBytes;
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(bytes, i * this.rowBytes + done, length - done, slots[i]! * this.rowBytes + done);
        if (bytesRead === 0) throw new EngineError('E_SPILL_READ', STAGE, this.key, `spill file ${this.paths[which]} ended before slot ${slots[i]}`);
        done += bytesRead;
      }
      i = j;
    }
    return out;
  }

  async remove(): Promise<void> {
    try {
      await Promise.all([this.files.avg.close(), this.files.max.close()]);
    } finally {
      await Promise.all([rm(this.paths.avg, { force: true }), rm(this.paths.max, { force: true })]);
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
function makeBag(patient_id: string, dim: number, entries: Entry[], spill: SpillFiles | undefined): EmbeddingBag {
  let disposed = false;
  const tiles = entries.map((e) => e.ref);
  return {
    patient_id,
    dim,
    tiles,
    async *rows(which) {
      const live = (): void => {
        if (disposed) throw new EngineError('E_DISPOSED', STAGE, patient_id, `bag of patient ${patient_id} read after dispose`);
      };
      live();
      if (spill === undefined) {
        // In memory: each row as it is. (Copying them into fresh 1.25 MiB chunks cost the parent a page fault per
        // 4 KB: ~100 ms per 2,000-tile patient, at the end of the job.)
        for (const e of [...entries]) {
          live();
          yield e[which]!;
        }
        return;
      }
      for (let i = 0; i < entries.length; i += BAG_CHUNK_ROWS) {
        live();
        yield await spill.read(which, entries.slice(i, i + BAG_CHUNK_ROWS).map((e) => e.slot), dim);
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
