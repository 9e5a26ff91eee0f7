/**
 * A minimal TIFF / BigTIFF directory reader (both byte orders): reads each IFD's geometry, codec and
 * tile/strip offsets once, so the slide reader can find pyramid levels and fetch compressed JPEG tiles
 * itself instead of asking libvips to re-parse the file for every region.
 */
import type { FileHandle } from 'node:fs/promises';

/** One image file directory, with the tags the slide reader uses. */
export interface TiffIfd {
  readonly index: number;
  readonly width: number;
  readonly height: number;
  readonly samplesPerPixel: number;
  readonly bitsPerSample: number;
  /** 1 none, 5 LZW, 7 JPEG, 8 Deflate, 33003/33005 Aperio JPEG2000... */
  readonly compression: number;
  /** 2 RGB, 6 YCbCr... */
  readonly photometric: number;
  readonly planarConfig: number;
  readonly newSubfileType: number;
  /** Tile size when tiled, undefined for strip images. */
  readonly tileWidth?: number;
  readonly tileHeight?: number;
  /** Tile (or strip) offsets and byte counts, row-major. */
  readonly offsets: readonly number[];
  readonly byteCounts: readonly number[];
  readonly jpegTables?: Uint8Array;
  readonly description?: string;
  readonly subIfds: readonly number[];
  /** YCbCrSubsampling (default [2,2]), Predictor (default 1). */
  readonly ycbcrSubsampling: readonly number[];
  readonly predictor: number;
}

export interface TiffFile {
  readonly littleEndian: boolean;
  readonly bigTiff: boolean;
  readonly ifds: readonly TiffIfd[];
}

/** Raised for files that are not TIFF or whose directories are damaged. */
export class TiffFormatError extends Error {
  readonly code = 'E_TIFF';
}

const TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8 };
/** More directories than this means a loop or garbage. */
const MAX_IFDS = 4096;

async function readAt(fh: FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fh.read(buf, 0, length, offset);
  if (bytesRead !== length) throw new TiffFormatError(`truncated TIFF: wanted ${length} bytes at offset ${offset}, got ${bytesRead}`);
  return buf;
}

/** Parses the header and every IFD in the main chain (SubIFD offsets are recorded, not followed). */
export async function parseTiff(fh: FileHandle): Promise<TiffFile> {
  const head = await readAt(fh, 0, 16).catch(() => {
    throw new TiffFormatError('not a TIFF file (shorter than a TIFF header)');
  });
  const order = head.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') throw new TiffFormatError('not a TIFF file (bad byte-order mark)');
  const le = order === 'II';
  const u16 = (b: Buffer, o: number): number => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (b: Buffer, o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const u64 = (b: Buffer, o: number): number => Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o));
  const magic = u16(head, 2);
  if (magic !== 42 && magic !== 43) throw new TiffFormatError(`not a TIFF file (magic ${magic})`);
  const big = magic === 43;
  const entrySize = big ? 20 : 12;
  const countSize = big ? 8 : 2;
  const inlineSize = big ? 8 : 4;

  const readValues = async (type: number, count: number, b: Buffer, valueOffset: number): Promise<number[] | Buffer> => {
    const size = TYPE_SIZE[type] ?? 1;
    const total = size * count;
    const data = total <= inlineSize ? b.subarray(valueOffset, valueOffset + total) : await readAt(fh, big ? u64(b, valueOffset) : u32(b, valueOffset), total);
    if (type === 1 || type === 2 || type === 6 || type === 7) return Buffer.from(data);
    const out = new Array<number>(count);
    for (let i = 0; i < count; i++) {
      const o = i * size;
      if (type === 3 || type === 8) out[i] = u16(data, o);
      else if (type === 4 || type === 9 || type === 13) out[i] = u32(data, o);
      else if (type === 16 || type === 17 || type === 18) out[i] = u64(data, o);
      else if (type === 5 || type === 10) out[i] = u32(data, o) / (u32(data, o + 4) || 1);
      else if (type === 11) out[i] = le ? data.readFloatLE(o) : data.readFloatBE(o);
      else if (type === 12) out[i] = le ? data.readDoubleLE(o) : data.readDoubleBE(o);
      else out[i] = 0;
    }
    return out;
  };

  const ifds: TiffIfd[] = [];
  const seen = new Set<number>();
  let next = big ? u64(head, 8) : u32(head, 4);
  while (next !== 0) {
    if (seen.has(next) || ifds.length >= MAX_IFDS) throw new TiffFormatError('TIFF directory chain loops');
    seen.add(next);
    const countBuf = await readAt(fh, next, countSize);
    const n = big ? u64(countBuf, 0) : u16(countBuf, 0);
    if (n === 0 || n > 10000) throw new TiffFormatError(`TIFF directory at ${next} has ${n} entries`);
    const body = await readAt(fh, next + countSize, n * entrySize + (big ? 8 : 4));
    const tags = new Map<number, number[] | Buffer>();
    for (let i = 0; i < n; i++) {
      const o = i * entrySize;
      const tag = u16(body, o);
      const type = u16(body, o + 2);
      const count = big ? u64(body, o + 4) : u32(body, o + 4);
      if (TYPE_SIZE[type] === undefined) continue; // unknown type: skip the tag, as libtiff does
      tags.set(tag, await readValues(type, count, body, o + (big ? 12 : 8)));
    }
    const num = (tag: number, dflt: number): number => {
      const v = tags.get(tag);
      if (v === undefined) return dflt;
      return Buffer.isBuffer(v) ? (v[0] ?? dflt) : (v[0] ?? dflt);
    };
    const arr = (tag: number): number[] => {
      const v = tags.get(tag);
      return v === undefined ? [] : Buffer.isBuffer(v) ? [...v] : v;
    };
    const tiled = tags.has(322);
    const jt = tags.get(347);
    const desc = tags.get(270);
    ifds.push({
      index: ifds.length,
      width: num(256, 0),
      height: num(257, 0),
      samplesPerPixel: num(277, 1),
      bitsPerSample: num(258, 1),
      compression: num(259, 1),
      photometric: num(262, 2),
      planarConfig: num(284, 1),
      newSubfileType: num(254, 0),
      tileWidth: tiled ? num(322, 0) : undefined,
      tileHeight: tiled ? num(323, 0) : undefined,
      offsets: tiled ? arr(324) : arr(273),
      byteCounts: tiled ? arr(325) : arr(279),
      jpegTables: Buffer.isBuffer(jt) ? new Uint8Array(jt) : undefined,
      description: Buffer.isBuffer(desc) ? desc.toString('latin1').replace(/\0+$/, '') : undefined,
      subIfds: arr(330),
      ycbcrSubsampling: tags.has(530) ? arr(530) : [2, 2],
      predictor: num(317, 1),
    });
    const nextOff = n * entrySize;
    next = big ? u64(body, nextOff) : u32(body, nextOff);
  }
  if (ifds.length === 0) throw new TiffFormatError('TIFF has no image directory');
  return { littleEndian: le, bigTiff: big, ifds };
}
