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
  /** Which of its parent's SubIFDs this is (OME-TIFF pyramid levels); undefined for a page of the main chain. */
  readonly subIfd?: number;
  /** The SubIFD directories, parsed (only page 0's: the others are channels/planes we do not read). */
  readonly subImages: readonly TiffIfd[];
  /** SampleFormat: 1 unsigned integer (default), 2 signed, 3 IEEE float. */
  readonly sampleFormat: number;
  /** XResolution / YResolution (pixels per ResolutionUnit) and ResolutionUnit (1 none, 2 inch (default), 3 cm). */
  readonly xResolution?: number;
  readonly yResolution?: number;
  readonly resolutionUnit: number;
  /** YCbCrSubsampling (default [2,2]), Predictor (default 1). */
  readonly ycbcrSubsampling: readonly number[];
  readonly predictor: number;
}

export interface TiffFile {
  readonly littleEndian: boolean;
  readonly bigTiff: boolean;
  readonly ifds: readonly TiffIfd[];
}

/** Raised for files that are not TIFF or whose directories are damaged; the message names the directory, tag or tile. */
export class TiffFormatError extends Error {
  readonly code = 'E_TIFF';

  constructor(
    message: string,
    /** 'not-tiff': no TIFF header (another backend may read it); 'damaged': a TIFF whose values point outside the file or past a limit. */
    readonly kind: 'not-tiff' | 'damaged' = 'damaged',
  ) {
    super(message);
    this.name = 'TiffFormatError';
  }
}

/**
 * What the parser accepts, whatever the file says: each limit keeps a hostile value (a count of 0x3FFFFFFF, a
 * tile of 0xE0000000 bytes) from becoming an allocation or a read, on top of the file-size check.
 */
export const TIFF_LIMITS = {
  /** Directories in the main chain: more means a loop or garbage. */
  maxIfds: 4096,
  /** Entries in one directory. */
  maxEntries: 10000,
  /** Values of one tag we read: 4M values (32 MiB of BigTIFF offsets) is the offset table of a 512k x 512k level at 256-px tiles. */
  maxTagValues: 4 << 20,
  /** Values of all the tags we read, all directories together (several directories cannot share one huge table to multiply it). */
  maxTotalValues: 16 << 20,
  /** Tile side, pixels (real slides use 240 to 4096). */
  maxTileSide: 16384,
  /** Extra bytes a compressed tile may have over twice its raw size (JPEG headers, markers). */
  tileSlackBytes: 1 << 20,
} as const;

/**
 * The file, bounded by its size: every offset and length the parser or the tile reader takes from the file is
 * checked here (`need`) before any buffer is allocated or any byte read, so a damaged value fails with a
 * TiffFormatError naming what it belongs to instead of reaching Buffer.alloc or fs.read (where a length over
 * 2^31 aborts the process on a Node assertion).
 */
export class BoundedFile {
  private constructor(
    readonly fh: FileHandle,
    /** Size when opened: the bound of every span. */
    readonly size: number,
  ) {}

  static async of(fh: FileHandle): Promise<BoundedFile> {
    return new BoundedFile(fh, (await fh.stat()).size);
  }

  /** Throws unless bytes [offset, offset + length) lie inside the file; `what` names the structure. */
  need(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new TiffFormatError(`${what}: offset ${offset} is not a file position`);
    if (!Number.isSafeInteger(length) || length < 0) throw new TiffFormatError(`${what}: length ${length} is not a byte count`);
    if (offset > this.size || length > this.size - offset) {
      throw new TiffFormatError(`${what}: ${length} bytes at offset ${offset} run past the end of the file (${this.size} bytes; truncated or damaged)`);
    }
  }

  /** Reads bytes [offset, offset + length) after `need`; a short read (the file shrank) is an error too. */
  async read(offset: number, length: number, what: string): Promise<Buffer> {
    this.need(offset, length, what);
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) throw new TiffFormatError(`${what}: the file ended after ${done} of ${length} bytes at offset ${offset} (truncated)`);
      done += bytesRead;
    }
    return buf;
  }
}

const TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8 };

/** The tags the slide reader uses, by name (only these are read; libtiff reads the rest when libvips opens the file). */
const TAG_NAMES: ReadonlyMap<number, string> = new Map([
  [254, 'NewSubfileType'], [256, 'ImageWidth'], [257, 'ImageLength'], [258, 'BitsPerSample'], [259, 'Compression'],
  [262, 'PhotometricInterpretation'], [270, 'ImageDescription'], [273, 'StripOffsets'], [277, 'SamplesPerPixel'],
  [279, 'StripByteCounts'], [282, 'XResolution'], [283, 'YResolution'], [284, 'PlanarConfiguration'], [296, 'ResolutionUnit'], [317, 'Predictor'], [322, 'TileWidth'],
  [323, 'TileLength'], [324, 'TileOffsets'], [325, 'TileByteCounts'], [330, 'SubIFDs'], [339, 'SampleFormat'], [347, 'JPEGTables'], [530, 'YCbCrSubSampling'],
]);

type TagValues = number[] | Buffer;

/** Byte order and BigTIFF-ness: how to read numbers and directory entries. */
class Layout {
  readonly entrySize: number;
  readonly countSize: number;
  readonly inlineSize: number;

  constructor(
    readonly le: boolean,
    readonly big: boolean,
  ) {
    this.entrySize = big ? 20 : 12;
    this.countSize = big ? 8 : 2;
    this.inlineSize = big ? 8 : 4;
  }

  u16(b: Buffer, o: number): number {
    return this.le ? b.readUInt16LE(o) : b.readUInt16BE(o);
  }
  u32(b: Buffer, o: number): number {
    return this.le ? b.readUInt32LE(o) : b.readUInt32BE(o);
  }
  /** Above 2^53 the value is not exact, and not a safe integer: `need` rejects it as a position or length. */
  u64(b: Buffer, o: number): number {
    return Number(this.le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o));
  }
  /** An offset field (4 or 8 bytes). */
  offset(b: Buffer, o: number): number {
    return this.big ? this.u64(b, o) : this.u32(b, o);
  }

  decode(type: number, count: number, data: Buffer): TagValues {
    if (type === 1 || type === 2 || type === 6 || type === 7) return Buffer.from(data);
    const size = TYPE_SIZE[type]!;
    const out = new Array<number>(count);
    for (let i = 0; i < count; i++) {
      const o = i * size;
      if (type === 3 || type === 8) out[i] = this.u16(data, o);
      else if (type === 4 || type === 9 || type === 13) out[i] = this.u32(data, o);
      else if (type === 16 || type === 17 || type === 18) out[i] = this.u64(data, o);
      else if (type === 5 || type === 10) out[i] = this.u32(data, o) / (this.u32(data, o + 4) || 1);
      else if (type === 11) out[i] = this.le ? data.readFloatLE(o) : data.readFloatBE(o);
      else out[i] = this.le ? data.readDoubleLE(o) : data.readDoubleBE(o);
    }
    return out;
  }
}

export type TiffLimits = { readonly [K in keyof typeof TIFF_LIMITS]: number };

/**
 * Parses the header and every IFD in the main chain, and page 0's SubIFDs (an OME-TIFF's pyramid levels; other
 * pages' SubIFD offsets are recorded, not followed). Throws a TiffFormatError naming the directory, tag or tile
 * for any value outside the file or past `limits`.
 */
export async function parseTiff(fh: FileHandle, limits: TiffLimits = TIFF_LIMITS): Promise<TiffFile> {
  const file = await BoundedFile.of(fh);
  if (file.size < 8) throw new TiffFormatError(`not a TIFF file (${file.size} bytes, shorter than a TIFF header)`, 'not-tiff');
  const head = await file.read(0, Math.min(16, file.size), 'TIFF header');
  const order = head.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') throw new TiffFormatError('not a TIFF file (bad byte-order mark)', 'not-tiff');
  const magic = order === 'II' ? head.readUInt16LE(2) : head.readUInt16BE(2);
  if (magic !== 42 && magic !== 43) throw new TiffFormatError(`not a TIFF file (magic ${magic})`, 'not-tiff');
  const L = new Layout(order === 'II', magic === 43);
  if (L.big && head.length < 16) throw new TiffFormatError(`not a TIFF file (${file.size} bytes, shorter than a BigTIFF header)`, 'not-tiff');

  const ifds: TiffIfd[] = [];
  const seen = new Set<number>();
  const budget = { values: limits.maxTotalValues };
  let next = L.offset(head, L.big ? 8 : 4);
  let from = 'the header';
  while (next !== 0) {
    if (seen.has(next)) throw new TiffFormatError(`TIFF directory chain loops: directory ${ifds.length} (from ${from}) is at offset ${next}, seen before`);
    if (ifds.length >= limits.maxIfds) throw new TiffFormatError(`TIFF has more than ${limits.maxIfds} directories`);
    seen.add(next);
    const where = `TIFF directory ${ifds.length} (at offset ${next}, from ${from})`;
    const { tags, nextOffset } = await readDirectory(file, L, next, where, limits, budget);
    let ifd = toIfd(ifds.length, tags);
    checkIfd(file, ifd, `TIFF directory ${ifds.length}`, limits);
    if (ifds.length === 0 && ifd.subIfds.length > 0) ifd = { ...ifd, subImages: await readSubIfds(file, L, ifd, seen, limits, budget) };
    ifds.push(ifd);
    from = `directory ${ifd.index}`;
    next = nextOffset;
  }
  if (ifds.length === 0) throw new TiffFormatError('TIFF has no image directory');
  return { littleEndian: L.le, bigTiff: L.big, ifds };
}

/** A page's SubIFDs, each checked like a main-chain directory (and against the same loop set, count and value budget). */
async function readSubIfds(file: BoundedFile, L: Layout, parent: TiffIfd, seen: Set<number>, limits: TiffLimits, budget: { values: number }): Promise<TiffIfd[]> {
  if (parent.subIfds.length > limits.maxIfds) throw new TiffFormatError(`TIFF directory ${parent.index}: ${parent.subIfds.length} SubIFDs, over the limit of ${limits.maxIfds}`);
  const out: TiffIfd[] = [];
  for (const [k, at] of parent.subIfds.entries()) {
    const where = `TIFF directory ${parent.index}, SubIFD ${k} (at offset ${at})`;
    if (seen.has(at)) throw new TiffFormatError(`${where}: a directory seen before (a loop)`);
    seen.add(at);
    const { tags } = await readDirectory(file, L, at, where, limits, budget);
    const sub = { ...toIfd(parent.index, tags), subIfd: k };
    checkIfd(file, sub, where, limits);
    out.push(sub);
  }
  return out;
}

/** One directory's entries: the values of the tags we use (each checked against the file and the limits), and the next offset. */
async function readDirectory(file: BoundedFile, L: Layout, at: number, where: string, limits: TiffLimits, budget: { values: number }): Promise<{ tags: Map<number, TagValues>; nextOffset: number }> {
  const n = L.big ? L.u64(await file.read(at, 8, `${where}: entry count`), 0) : L.u16(await file.read(at, 2, `${where}: entry count`), 0);
  if (n === 0 || n > limits.maxEntries) throw new TiffFormatError(`${where} has ${n} entries`);
  const body = await file.read(at + L.countSize, n * L.entrySize + L.inlineSize, `${where}: ${n} entries`);
  const tags = new Map<number, TagValues>();
  for (let i = 0; i < n; i++) {
    const o = i * L.entrySize;
    const tag = L.u16(body, o);
    const type = L.u16(body, o + 2);
    const name = TAG_NAMES.get(tag);
    // Tags we do not use are not read; an unknown type: skip the tag, as libtiff does.
    if (name === undefined || TYPE_SIZE[type] === undefined) continue;
    const count = L.big ? L.u64(body, o + 4) : L.u32(body, o + 4);
    const what = `${where}, tag ${tag} (${name})`;
    const total = TYPE_SIZE[type]! * count;
    const valueAt = o + L.entrySize - L.inlineSize;
    const inline = total <= L.inlineSize;
    if (!inline) file.need(L.offset(body, valueAt), total, `${what}, ${count} values`);
    if (count > limits.maxTagValues) throw new TiffFormatError(`${what}: count ${count} is over the limit of ${limits.maxTagValues} values`);
    if (count > budget.values) throw new TiffFormatError(`${what}: count ${count} is over what is left of the limit of ${limits.maxTotalValues} values for all directories`);
    budget.values -= count;
    const data = inline ? body.subarray(valueAt, valueAt + total) : await file.read(L.offset(body, valueAt), total, what);
    tags.set(tag, L.decode(type, count, data));
  }
  return { tags, nextOffset: L.offset(body, n * L.entrySize) };
}

function toIfd(index: number, tags: ReadonlyMap<number, TagValues>): TiffIfd {
  const num = (tag: number, dflt: number): number => tags.get(tag)?.[0] ?? dflt;
  const arr = (tag: number): number[] => {
    const v = tags.get(tag);
    return v === undefined ? [] : Buffer.isBuffer(v) ? [...v] : v;
  };
  const tiled = tags.has(322);
  const jt = tags.get(347);
  const desc = tags.get(270);
  return {
    index,
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
    subImages: [],
    sampleFormat: num(339, 1),
    xResolution: tags.has(282) ? num(282, 0) : undefined,
    yResolution: tags.has(283) ? num(283, 0) : undefined,
    resolutionUnit: num(296, 2),
    ycbcrSubsampling: tags.has(530) ? arr(530) : [2, 2],
    predictor: num(317, 1),
  };
}

/**
 * The directory's geometry and its tile (or strip) table, against the file: sizes are positive integers, a tiled
 * image has an offset and a byte count for every tile, and every tile or strip lies inside the file (a tile
 * also within TIFF_LIMITS of its raw size). Tiles are what tiff-region.ts reads by offset: after this, no
 * value it takes from the directory can ask for bytes the file does not hold.
 */
function checkIfd(file: BoundedFile, ifd: TiffIfd, where: string, limits: TiffLimits): void {
  const size = (v: number, tag: number, max = 0xffffffff): void => {
    if (!Number.isInteger(v) || v < 1 || v > max) throw new TiffFormatError(`${where}, tag ${tag} (${TAG_NAMES.get(tag)}): ${v} is not a size from 1 to ${max}`);
  };
  size(ifd.width, 256);
  size(ifd.height, 257);
  size(ifd.samplesPerPixel, 277, 0xffff);
  size(ifd.bitsPerSample, 258, 0xffff);
  const perPlane = ifd.planarConfig === 2 ? ifd.samplesPerPixel : 1;
  // Strips are read by libtiff (which estimates missing byte counts): only the ones listed are checked.
  let chunks = ifd.offsets.length;
  let kind = 'strip';
  let cap = Infinity;
  if (ifd.tileWidth !== undefined && ifd.tileHeight !== undefined) {
    size(ifd.tileWidth, 322, limits.maxTileSide);
    size(ifd.tileHeight, 323, limits.maxTileSide);
    kind = 'tile';
    chunks = Math.ceil(ifd.width / ifd.tileWidth) * Math.ceil(ifd.height / ifd.tileHeight) * perPlane;
    for (const tag of [324, 325]) {
      const have = (tag === 324 ? ifd.offsets : ifd.byteCounts).length;
      if (have < chunks) throw new TiffFormatError(`${where}, tag ${tag} (${TAG_NAMES.get(tag)}): ${have} entries for the ${chunks} tiles of a ${ifd.width}x${ifd.height} image in ${ifd.tileWidth}x${ifd.tileHeight} tiles`);
    }
    const raw = ifd.tileWidth * ifd.tileHeight * (ifd.planarConfig === 2 ? 1 : ifd.samplesPerPixel) * Math.ceil(ifd.bitsPerSample / 8);
    cap = 2 * raw + limits.tileSlackBytes;
  }
  for (let i = 0; i < chunks; i++) {
    const off = ifd.offsets[i]!;
    const n = ifd.byteCounts[i] ?? 0;
    const what = `${where}, ${kind} ${i} (tags ${kind === 'tile' ? '324/325' : '273/279'})`;
    // A tile of 0 bytes is a missing tile (some writers leave them): it fails when read, not here.
    if (n > 0) file.need(off, n, what);
    if (n > cap) throw new TiffFormatError(`${what}: byte count ${n} is over ${cap}, twice the raw size of a ${ifd.tileWidth}x${ifd.tileHeight} tile and ${limits.tileSlackBytes} bytes`);
  }
}
