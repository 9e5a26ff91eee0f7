/**
 * Sink: writes EncodedExamples to sharded TFRecord files `<prefix>-00000-of-0000N.tfrecord`.
 *
 * Determinism: the shards' bytes depend only on the set of examples, never on their arrival order.
 * Records are sorted by patient_id (JS string order) and cut into N contiguous ranges balanced by bytes
 * (record i goes to shard floor(N * (bytes before i + half its size) / total bytes)).
 *
 * Streaming: each example is framed as it arrives into one staging file (arrival order) while only
 * (patient_id, offset, length) stays in memory. At the end the records are copied, in sorted order, into
 * the shard files; when there is one shard and the arrival was already sorted (the engine's join emits
 * keys in sorted order) the staging file is simply renamed, with no copy. With several shards the disk
 * briefly holds the data twice.
 *
 * Shard count: `shards` if given; otherwise ceil(total bytes / targetShardBytes) (default 256 MiB,
 * TensorFlow's guidance is files of 100 MB or more), at least 1 and at most one per record.
 *
 * Crash safety: everything is written under hidden `.*.tmp` names, fsynced, and renamed to the final
 * names only once complete; on failure the temporary files are removed. After the rename, stale shards
 * with the same prefix from an earlier run (other shard counts) are removed so the folder holds one dataset.
 * The job points outDir at a fresh staging folder: the dataset is swapped in as a whole (stages/dataset/).
 * A file-system error (ENOSPC, EIO, ...) is one E_OUTPUT_IO error naming the file and the errno.
 */
import { mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { EngineError, type Sink } from '../engine/types.js';
import type { EncodedExample } from './tfrecord/example.js';
import { TfrecordWriter } from './tfrecord/framing.js';
import { errnoText, isSystemError } from './dataset/io.js';

export const DEFAULT_TARGET_SHARD_BYTES = 256 * 1024 * 1024;

export interface ShardSummary {
  /** File name (inside outDir). */
  readonly file: string;
  readonly records: number;
  readonly bytes: number;
}

export interface WriteSummary {
  readonly outDir: string;
  readonly records: number;
  readonly bytes: number;
  readonly shards: readonly ShardSummary[];
  /** As given in the options (patients expected from the CSV); records may be fewer (dropped patients). */
  readonly expectedPatients: number | undefined;
}

export interface WriteTfrecordsOptions {
  readonly outDir: string;
  /** File name prefix (default 'data'). */
  readonly prefix?: string;
  /** Fixed shard count; default from the data size (see targetShardBytes). */
  readonly shards?: number;
  readonly targetShardBytes?: number;
  /** Only reported in the summary. */
  readonly expectedPatients?: number;
  /** Receives the summary once the shards are in place. */
  readonly onSummary?: (summary: WriteSummary) => void;
}

/** `<prefix>-00003-of-00010.tfrecord` (5 digits each, as TensorFlow's own sharded writers name files). */
export function shardName(prefix: string, index: number, count: number): string {
  return `${prefix}-${String(index).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.tfrecord`;
}

/** Matches a finished shard name of `prefix`. */
export function shardPattern(prefix: string): RegExp {
  return new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-(\\d{5})-of-(\\d{5})\\.tfrecord$`);
}

/** Shard index of each record (given in sorted order, by size): contiguous ranges balanced by bytes. */
export function planShards(sizes: readonly number[], shards: number): number[] {
  const total = sizes.reduce((s, v) => s + v, 0);
  let before = 0;
  return sizes.map((size) => {
    const index = total === 0 ? 0 : Math.min(shards - 1, Math.floor((shards * (before + size / 2)) / total));
    before += size;
    return index;
  });
}

/** The default shard count for `records` records of `totalBytes` bytes. */
export function defaultShardCount(totalBytes: number, records: number, targetShardBytes = DEFAULT_TARGET_SHARD_BYTES): number {
  return Math.max(1, Math.min(records, Math.ceil(totalBytes / targetShardBytes)));
}

interface Placed {
  readonly patient_id: string;
  readonly offset: number;
  readonly length: number;
}

const STAGE = 'write-tfrecords';

export function writeTfrecords(opts: WriteTfrecordsOptions): Sink<EncodedExample> {
  const prefix = opts.prefix ?? 'data';
  if (opts.shards !== undefined && (!Number.isInteger(opts.shards) || opts.shards < 1 || opts.shards > 99999)) {
    throw new EngineError('E_USAGE', STAGE, undefined, `shards must be an integer from 1 to 99999, got ${opts.shards}`);
  }
  if (!/^[\w.-]+$/.test(prefix)) throw new EngineError('E_USAGE', STAGE, undefined, `prefix ${JSON.stringify(prefix)} must be letters, digits, '.', '_' or '-'`);

  return async function writeTfrecordsSink(source, ctx) {
    const name = ctx.name;
    await mkdir(opts.outDir, { recursive: true });
    const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
    const stagingPath = join(opts.outDir, `.${prefix}.staging-${tag}.tmp`);
    const temps: string[] = [stagingPath];
    /** The file being written: named by a file-system error. */
    let current = stagingPath;
    let staging: TfrecordWriter | undefined = await createWriter(stagingPath, name);
    let committed = false;
    try {
      const placed: Placed[] = [];
      const seen = new Set<string>();
      let sorted = true;
      for await (const example of source) {
        try {
          ctx.signal.throwIfAborted();
          const id = example.patient_id;
          if (seen.has(id)) throw new EngineError('E_DUPLICATE_PATIENT', name, id, `patient ${id} arrived twice at the TFRecord writer`);
          if (placed.length > 0 && id < placed[placed.length - 1]!.patient_id) sorted = false;
          seen.add(id);
          const offset = staging.position;
          await staging.writeRecord(example.byteLength, example.chunks());
          placed.push({ patient_id: id, offset, length: staging.position - offset });
          ctx.metrics.custom['records'] = placed.length;
          ctx.metrics.custom['bytes'] = staging.position;
        } finally {
          await example.dispose();
        }
      }
      ctx.signal.throwIfAborted();
      await staging.close({ sync: true });
      staging = undefined;

      const order = [...placed].sort((a, b) => (a.patient_id < b.patient_id ? -1 : a.patient_id > b.patient_id ? 1 : 0));
      const total = order.reduce((s, p) => s + p.length, 0);
      const count = opts.shards ?? defaultShardCount(total, order.length, opts.targetShardBytes);
      const plan = planShards(order.map((p) => p.length), count);
      const shards: Array<{ file: string; temp: string; records: Placed[] }> = [];
      for (let i = 0; i < count; i++) {
        const file = shardName(prefix, i, count);
        shards.push({ file, temp: join(opts.outDir, `.${file}.${tag}.tmp`), records: [] });
      }
      order.forEach((p, i) => shards[plan[i]!]!.records.push(p));

      if (count === 1 && sorted) {
        shards[0]!.temp = stagingPath; // already the final bytes
      } else {
        const input = await open(stagingPath, 'r');
        try {
          for (const shard of shards) {
            temps.push(shard.temp);
            current = shard.temp;
            await copyRecords(input, shard.records, shard.temp, ctx.signal);
          }
        } finally {
          await input.close();
        }
      }
      ctx.signal.throwIfAborted();
      for (const shard of shards) {
        current = join(opts.outDir, shard.file);
        await rename(shard.temp, current);
      }
      committed = true;
      await rm(stagingPath, { force: true });
      await removeStaleShards(opts.outDir, prefix, new Set(shards.map((s) => s.file)));

      const summary: WriteSummary = {
        outDir: opts.outDir,
        records: order.length,
        bytes: total,
        shards: shards.map((s) => ({ file: s.file, records: s.records.length, bytes: s.records.reduce((n, p) => n + p.length, 0) })),
        expectedPatients: opts.expectedPatients,
      };
      ctx.metrics.custom['shards'] = count;
      opts.onSummary?.(summary);
    } catch (err) {
      throw ioFailure(err, name, current);
    } finally {
      if (staging !== undefined) await staging.abandon();
      if (!committed) await Promise.all(temps.map((p) => rm(p, { force: true })));
    }
  };
}

async function createWriter(path: string, stage: string): Promise<TfrecordWriter> {
  try {
    return await TfrecordWriter.create(path);
  } catch (err) {
    throw ioFailure(err, stage, path);
  }
}

/** A file-system error as E_OUTPUT_IO naming `path` and the errno; any other error unchanged. */
function ioFailure(err: unknown, stage: string, path: string): unknown {
  return isSystemError(err) ? new EngineError('E_OUTPUT_IO', stage, undefined, `cannot write ${path}: ${errnoText(err)}`, { cause: err }) : err;
}

/** Copies `records` (framed records in the staging file) into a new file, coalescing adjacent ranges. */
async function copyRecords(input: FileHandle, records: readonly Placed[], path: string, signal: AbortSignal): Promise<void> {
  const out = await open(path, 'w');
  try {
    const buffer = new Uint8Array(4 << 20);
    let i = 0;
    while (i < records.length) {
      signal.throwIfAborted();
      let start = records[i]!.offset;
      let end = start + records[i]!.length;
      for (i++; i < records.length && records[i]!.offset === end; i++) end += records[i]!.length;
      while (start < end) {
        const { bytesRead } = await input.read(buffer, 0, Math.min(buffer.length, end - start), start);
        if (bytesRead === 0) throw new EngineError('E_STAGING_READ', STAGE, undefined, `staging file ended at byte ${start}`);
        let done = 0;
        while (done < bytesRead) done += (await out.write(buffer, done, bytesRead - done)).bytesWritten;
        start += bytesRead;
      }
    }
    await out.sync();
  } finally {
    await out.close();
  }
}

async function removeStaleShards(dir: string, prefix: string, keep: ReadonlySet<string>): Promise<void> {
  const pattern = shardPattern(prefix);
  for (const file of await readdir(dir)) {
    if (pattern.test(file) && !keep.has(file)) await rm(join(dir, file), { force: true });
  }
}
