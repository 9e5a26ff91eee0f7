/**
 * Staged delivery of one item attempt's results: kept in memory up to `memLimit` elements, past that
 * appended to a spill file, so memory stays bounded whatever the item's size. Delivered downstream
 * only once the attempt succeeded; a failed attempt is discarded. With a checkpoint directory the
 * whole attempt is written to `<sha256(key)>.partial-<pid>-<n>` and renamed atomically to
 * `<sha256(key)>.done` on commit, so a later run replays it instead of recomputing.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { encodeFrame, FrameDecoder } from './frames.js';

let seq = 0;
/** Names this machine in partial files: on shared storage, machines with the same pids never share one (engine/queue/). */
const host = hostname().replace(/[^\w.-]/g, '_');

/** File name of a committed item in a checkpoint directory. */
export function committedName(key: string): string {
  return `${createHash('sha256').update(key).digest('hex').slice(0, 40)}.done`;
}

/** Removes partial files left by killed runs (they are never replayed). */
export async function removePartials(dir: string): Promise<void> {
  for (const f of await readdir(dir)) if (f.includes('.partial-')) await rm(join(dir, f), { force: true });
}

/** The committed file for `key` if there is one whose header names the same key. */
export async function findCommitted(dir: string, key: string): Promise<string | undefined> {
  const path = join(dir, committedName(key));
  try {
    await stat(path);
  } catch {
    return undefined; // not committed (ENOENT)
  }
  for await (const header of readFrames(path)) {
    return (header as { key?: unknown }).key === key ? path : undefined;
  }
  return undefined;
}

/** The results of a committed file (skipping its header). */
export async function* replayCommitted(path: string): AsyncGenerator<unknown> {
  let first = true;
  for await (const v of readFrames(path)) {
    if (first) first = false;
    else yield v;
  }
}

async function* readFrames(path: string): AsyncGenerator<unknown> {
  const dec = new FrameDecoder();
  const rs = createReadStream(path, { highWaterMark: 1 << 20 });
  try {
    for await (const chunk of rs) yield* dec.push(chunk as Buffer);
  } finally {
    rs.destroy();
  }
}

/** Staged frames are written to the file in chunks of about this many bytes. */
const FLUSH_BYTES = 1 << 20;

export class Staging {
  private mem: unknown[] = [];
  /** Encoded frames not yet written: written in one call once they reach FLUSH_BYTES (one syscall per result was most of the parent's CPU). */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private file: FileHandle | undefined;
  private path: string | undefined;
  count = 0;

  /**
   * @param dir where spill/partial files go
   * @param memLimit elements kept in memory before spilling (0 with a checkpoint: everything goes to the file)
   * @param key the item key (header of checkpoint files)
   * @param checkpoint write a committed file in `dir` on commit
   */
  constructor(
    private readonly dir: string,
    private readonly memLimit: number,
    private readonly key: string,
    private readonly checkpoint: boolean,
  ) {}

  async add(value: unknown): Promise<void> {
    this.count++;
    if (!this.checkpoint && this.file === undefined && this.mem.length < this.memLimit) {
      this.mem.push(value);
      return;
    }
    await this.append(value);
  }

  /** Makes the attempt final: with a checkpoint, renames the file to its committed name. */
  async commit(): Promise<void> {
    if (!this.checkpoint) return;
    if (this.file === undefined) await this.openFile();
    await this.flush();
    await (this.file as FileHandle).sync();
    await (this.file as FileHandle).close();
    this.file = undefined;
    const done = join(this.dir, committedName(this.key));
    await rename(this.path as string, done);
    this.path = done;
  }

  /** The staged results in order: memory first, then the spill file. */
  async *replay(): AsyncGenerator<unknown> {
    const mem = this.mem;
    this.mem = [];
    yield* mem;
    if (this.path === undefined) return;
    if (this.file !== undefined) {
      await this.flush();
      await this.file.close();
      this.file = undefined;
    }
    yield* this.checkpoint ? replayCommitted(this.path) : readFrames(this.path);
  }

  /** Drops everything staged; a committed file is kept (it is the checkpoint). */
  async discard(keepCommitted = true): Promise<void> {
    this.mem = [];
    this.pending = [];
    this.pendingBytes = 0;
    if (this.file !== undefined) {
      await this.file.close();
      this.file = undefined;
    }
    if (this.path !== undefined && !(keepCommitted && this.path.endsWith('.done'))) await rm(this.path, { force: true });
  }

  private async openFile(): Promise<void> {
    const base = this.checkpoint ? committedName(this.key) : `stage-${seq}`;
    this.path = join(this.dir, `${base}.partial-${host}-${process.pid}-${seq++}`);
    this.file = await open(this.path, 'w');
    if (this.checkpoint) await this.writeFrame({ key: this.key });
  }

  private async append(value: unknown): Promise<void> {
    if (this.file === undefined) await this.openFile();
    await this.writeFrame(value);
  }

  private async writeFrame(value: unknown): Promise<void> {
    const [head, body] = encodeFrame(value) as [Buffer, Buffer];
    this.pending.push(head, body);
    this.pendingBytes += head.length + body.length;
    if (this.pendingBytes >= FLUSH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const buffers = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    // writev takes at most IOV_MAX (1024) buffers per call on Linux.
    for (let i = 0; i < buffers.length; i += 1024) await (this.file as FileHandle).writev(buffers.slice(i, i + 1024));
  }
}
