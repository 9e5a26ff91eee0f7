/**
 * A small streaming BigTIFF writer for tiled, JPEG-compressed RGB pyramids: tile data is appended as it
 * is produced (memory holds only the offset tables), the directories are written at the end.
 */
import { open, type FileHandle } from 'node:fs/promises';

export interface TiffLevelSpec {
  readonly width: number;
  readonly height: number;
  readonly tileSize: number;
  /** YCbCr chroma subsampling of the JPEG tiles: [2,2] for 4:2:0, [1,1] for 4:4:4. */
  readonly subsampling: readonly [number, number];
  readonly description?: string;
}

/** Where a written tile lies in the file. */
export interface TileRef {
  readonly offset: number;
  readonly count: number;
}

interface LevelRecord {
  readonly spec: TiffLevelSpec;
  readonly offsets: number[];
  readonly counts: number[];
}

/** Writes levels in order; call `beginLevel`, then `addTile` row-major for every tile, then `close`. */
export class BigTiffWriter {
  private pos = 16;
  private readonly levels: LevelRecord[] = [];

  private constructor(private readonly fh: FileHandle) {}

  static async create(path: string): Promise<BigTiffWriter> {
    const fh = await open(path, 'w');
    return new BigTiffWriter(fh);
  }

  beginLevel(spec: TiffLevelSpec): void {
    this.levels.push({ spec, offsets: [], counts: [] });
  }

  /** Appends a tile's JPEG; returns where it lies, for `addTileRef`. */
  async addTile(jpeg: Uint8Array): Promise<TileRef> {
    const level = this.levels[this.levels.length - 1];
    if (level === undefined) throw new Error('addTile before beginLevel');
    const ref = { offset: this.pos, count: jpeg.length };
    level.offsets.push(this.pos);
    level.counts.push(jpeg.length);
    await this.fh.write(jpeg, 0, jpeg.length, this.pos);
    this.pos += jpeg.length;
    return ref;
  }

  /** The next tile is a JPEG already written (tiles sharing one stream: huge slides in tiny files, for tests). */
  addTileRef(ref: TileRef): void {
    const level = this.levels[this.levels.length - 1];
    if (level === undefined) throw new Error('addTileRef before beginLevel');
    level.offsets.push(ref.offset);
    level.counts.push(ref.count);
  }

  /** Writes the directories and the header, then closes the file. */
  async close(): Promise<void> {
    try {
      let firstIfd = 0;
      let prevNextFieldPos = -1;
      for (let i = 0; i < this.levels.length; i++) {
        const lvl = this.levels[i]!;
        const ifdPos = align8(this.pos);
        const bytes = buildIfd(lvl, i === 0 ? 0 : 1, ifdPos);
        await this.fh.write(bytes, 0, bytes.length, ifdPos);
        if (i === 0) firstIfd = ifdPos;
        else {
          const ptr = Buffer.alloc(8);
          ptr.writeBigUInt64LE(BigInt(ifdPos));
          await this.fh.write(ptr, 0, 8, prevNextFieldPos);
        }
        prevNextFieldPos = ifdPos + 8 + ENTRY_COUNT * 20;
        this.pos = ifdPos + bytes.length;
      }
      const head = Buffer.alloc(16);
      head.write('II', 0, 'latin1');
      head.writeUInt16LE(43, 2);
      head.writeUInt16LE(8, 4);
      head.writeUInt16LE(0, 6);
      head.writeBigUInt64LE(BigInt(firstIfd), 8);
      await this.fh.write(head, 0, 16, 0);
    } finally {
      await this.fh.close();
    }
  }

  /** Closes the file without finishing it (on error paths). */
  async abort(): Promise<void> {
    await this.fh.close();
  }
}

const align8 = (n: number): number => (n + 7) & ~7;
const ENTRY_COUNT = 14;

/** One IFD (tags sorted), its out-of-line values right after it. */
function buildIfd(lvl: LevelRecord, subfileType: number, at: number): Buffer {
  const { spec, offsets, counts } = lvl;
  const desc = Buffer.from(`${spec.description ?? 'synthetic slide'}\0`, 'latin1');
  const headerLen = 8 + ENTRY_COUNT * 20 + 8;
  let extra = at + headerLen;
  const blobs: Buffer[] = [];
  const outOfLine = (b: Buffer): number => {
    const where = extra;
    blobs.push(b);
    extra += b.length;
    return where;
  };
  const u64arr = (vals: readonly number[]): Buffer => {
    const b = Buffer.alloc(vals.length * 8);
    vals.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), i * 8));
    return b;
  };
  const entries: Array<[tag: number, type: number, count: number, value: Buffer]> = [];
  const short = (tag: number, ...v: number[]): void => {
    const b = Buffer.alloc(Math.max(8, v.length * 2));
    v.forEach((x, i) => b.writeUInt16LE(x, i * 2));
    entries.push([tag, 3, v.length, v.length * 2 <= 8 ? b : Buffer.alloc(0)]);
  };
  const long = (tag: number, v: number): void => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(v, 0);
    entries.push([tag, 4, 1, b]);
  };
  const ref = (tag: number, type: number, count: number, data: Buffer): void => {
    if (data.length <= 8) {
      const b = Buffer.alloc(8);
      data.copy(b);
      entries.push([tag, type, count, b]);
    } else {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt(outOfLine(data)));
      entries.push([tag, type, count, b]);
    }
  };
  long(254, subfileType);
  long(256, spec.width);
  long(257, spec.height);
  short(258, 8, 8, 8);
  short(259, 7); // JPEG
  short(262, 6); // YCbCr: the tiles are ordinary JFIF streams
  ref(270, 2, desc.length, desc);
  short(277, 3);
  short(284, 1);
  long(322, spec.tileSize);
  long(323, spec.tileSize);
  ref(324, 16, offsets.length, u64arr(offsets));
  ref(325, 16, counts.length, u64arr(counts));
  short(530, spec.subsampling[0], spec.subsampling[1]);
  if (entries.length !== ENTRY_COUNT) throw new Error('IFD entry count mismatch');
  const head = Buffer.alloc(headerLen);
  head.writeBigUInt64LE(BigInt(ENTRY_COUNT), 0);
  entries.forEach(([tag, type, count, value], i) => {
    const o = 8 + i * 20;
    head.writeUInt16LE(tag, o);
    head.writeUInt16LE(type, o + 2);
    head.writeBigUInt64LE(BigInt(count), o + 4);
    value.copy(head, o + 12, 0, 8);
  });
  head.writeBigUInt64LE(0n, headerLen - 8); // next IFD, patched by close()
  return Buffer.concat([head, ...blobs]);
}
