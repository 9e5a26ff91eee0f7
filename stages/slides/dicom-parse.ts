/**
 * The DICOM container side of the DICOM WSI backend (backend-dicom.ts): one instance (a `.dcm` file) read
 * into what a pyramid level needs: sizes, frame grid, transfer syntax, and an index of where each frame's
 * bytes are. Attributes are parsed by dicom-parser (npm) from the file's header only: the file is read up
 * to the Pixel Data element (a prefix grown until the element is reached, within DICOM_LIMITS), never
 * the pixel data. Encapsulated frames are located by the Basic Offset Table, else by walking the item
 * headers of the fragments once (8 bytes read per fragment); frames are then read one at a time.
 */
import type { FileHandle } from 'node:fs/promises';
import dicomParser from 'dicom-parser';

/** Limits on what a DICOM file may make us allocate; each is checked before the allocation. */
export const DICOM_LIMITS = {
  /** Bytes of header (everything before Pixel Data, including per-frame functional groups). */
  headerBytes: 256 * 1024 * 1024,
  /** Frames in one instance. */
  frames: 4_000_000,
  /** One frame's compressed or raw bytes. */
  frameBytes: 64 * 1024 * 1024,
} as const;

export const TS_JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
export const TS_EXPLICIT_LE = '1.2.840.10008.1.2.1';
export const TS_IMPLICIT_LE = '1.2.840.10008.1.2';

/** Names of transfer syntaxes we refuse, for the error message. */
const SYNTAX_NAMES: Record<string, string> = {
  '1.2.840.10008.1.2.2': 'explicit VR big endian',
  '1.2.840.10008.1.2.1.99': 'deflated explicit VR little endian',
  '1.2.840.10008.1.2.4.51': 'JPEG extended (12-bit)',
  '1.2.840.10008.1.2.4.57': 'JPEG lossless',
  '1.2.840.10008.1.2.4.70': 'JPEG lossless SV1',
  '1.2.840.10008.1.2.4.80': 'JPEG-LS lossless',
  '1.2.840.10008.1.2.4.81': 'JPEG-LS near-lossless',
  '1.2.840.10008.1.2.4.90': 'JPEG 2000 lossless',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000',
  '1.2.840.10008.1.2.4.201': 'HTJ2K lossless',
  '1.2.840.10008.1.2.4.202': 'HTJ2K lossless RPCL',
  '1.2.840.10008.1.2.4.203': 'HTJ2K',
  '1.2.840.10008.1.2.5': 'RLE lossless',
};

export function syntaxName(uid: string): string {
  return SYNTAX_NAMES[uid] === undefined ? uid : `${uid} (${SYNTAX_NAMES[uid]})`;
}

/** A DICOM file we do not read, or one that is damaged. `kind` as in TiffFormatError. */
export class DicomFormatError extends Error {
  constructor(
    /** 'not-brightfield': uncompressed pixels other than 8-bit RGB (E_SLIDE_NOT_BRIGHTFIELD). */
    readonly kind: 'unsupported' | 'damaged' | 'not-brightfield',
    message: string,
  ) {
    super(message);
    this.name = 'DicomFormatError';
  }
}

/** One instance: a pyramid level (VOLUME), or a label/overview/thumbnail image (skipped by the backend). */
export interface DicomInstance {
  readonly path: string;
  readonly imageType: readonly string[];
  readonly seriesUid: string;
  readonly transferSyntax: string;
  /** Total pixel matrix (the level's size). */
  readonly width: number;
  readonly height: number;
  /** Frame size. */
  readonly frameWidth: number;
  readonly frameHeight: number;
  readonly samplesPerPixel: number;
  readonly planar: number;
  readonly photometric: string;
  /** BitsAllocated, PixelRepresentation (1: signed), NumberOfOpticalPaths (channels; 1 when absent). */
  readonly bits: number;
  readonly signed: boolean;
  readonly opticalPaths: number;
  /** Level-0 mm per pixel (PixelSpacing in the shared Pixel Measures; else ImagedVolumeWidth/Height over the matrix), objective power. */
  readonly spacingMm?: { readonly x: number; readonly y: number };
  readonly objectivePower?: number;
  /** Frame index at grid cell (row-major, ceil(width/frameWidth) across); -1: no frame (TILED_SPARSE gap). */
  readonly grid: Int32Array;
  /** Frame i's bytes are file [start[i], end[i]); encapsulated: item headers included, stripped on read. */
  readonly start: Float64Array;
  readonly end: Float64Array;
  readonly encapsulated: boolean;
}

const PIXEL_DATA = 'x7fe00010';

/** Reads the header of `path` (open as `fh`) and indexes its frames. Throws DicomFormatError or an I/O error. */
export async function readDicomInstance(fh: FileHandle, path: string): Promise<DicomInstance> {
  const size = (await fh.stat()).size;
  const ds = await readHeader(fh, size);
  const str = (tag: string): string => (ds.string(tag) ?? '').trim();
  const num = (tag: string, read: 'uint16' | 'uint32' | 'int'): number | undefined => {
    if (ds.elements[tag] === undefined) return undefined;
    const v = read === 'int' ? Number.parseInt(str(tag), 10) : ds[read](tag);
    return v === undefined || !Number.isFinite(v) ? undefined : v;
  };
  const transferSyntax = str('x00020010').replace(/\0/g, '');
  const frameWidth = num('x00280011', 'uint16');
  const frameHeight = num('x00280010', 'uint16');
  if (frameWidth === undefined || frameHeight === undefined || frameWidth < 1 || frameHeight < 1) throw new DicomFormatError('damaged', 'no Rows/Columns (0028,0010/0011): not an image');
  const width = num('x00480006', 'uint32') ?? frameWidth;
  const height = num('x00480007', 'uint32') ?? frameHeight;
  const frames = num('x00280008', 'int') ?? 1;
  if (frames < 1 || frames > DICOM_LIMITS.frames) throw new DicomFormatError('damaged', `NumberOfFrames ${frames} outside 1..${DICOM_LIMITS.frames}`);
  const samplesPerPixel = num('x00280002', 'uint16') ?? 3;
  const bits = num('x00280100', 'uint16') ?? 8;
  const photometric = str('x00280004') || 'RGB';
  if (transferSyntax !== TS_JPEG_BASELINE && transferSyntax !== TS_EXPLICIT_LE && transferSyntax !== TS_IMPLICIT_LE) {
    throw new DicomFormatError('unsupported', `transfer syntax ${syntaxName(transferSyntax || '(none)')} is not read (JPEG baseline ${TS_JPEG_BASELINE} and uncompressed little endian are)`);
  }
  const encapsulated = transferSyntax === TS_JPEG_BASELINE;
  if (!encapsulated && (bits !== 8 || samplesPerPixel !== 3 || photometric !== 'RGB')) {
    throw new DicomFormatError('not-brightfield', `uncompressed pixels with ${samplesPerPixel} sample(s) of ${bits} bits, ${photometric}: only 8-bit RGB is read`);
  }
  const grid = frameGrid(ds, width, height, frameWidth, frameHeight, frames);
  const pixel = ds.elements[PIXEL_DATA];
  if (pixel === undefined) throw new DicomFormatError('damaged', 'no Pixel Data (7FE0,0010)');
  const index = encapsulated
    ? await indexFragments(fh, size, pixel.dataOffset, frames)
    : indexNative(pixel, size, frames, frameWidth * frameHeight * 3);
  const imageType = str('x00080008').split('\\').map((s) => s.trim().toUpperCase());
  const pixelKind = { bits, signed: num('x00280103', 'uint16') === 1, opticalPaths: num('x00480302', 'uint32') ?? 1, ...scaleOf(ds, width, height) };
  return { path, imageType, seriesUid: str('x0020000e').replace(/\0/g, ''), transferSyntax, width, height, frameWidth, frameHeight, samplesPerPixel, planar: num('x00280006', 'uint16') ?? 0, photometric, ...pixelKind, grid, ...index, encapsulated };
}

/**
 * The stated scale: PixelSpacing (0028,0030: row\column spacing, mm) in the shared functional groups' Pixel
 * Measures, else ImagedVolumeWidth/Height (0048,0001/0002, mm) over the total pixel matrix; ObjectiveLensPower
 * (0048,0112) of the first optical path. Absent values stay absent.
 */
function scaleOf(ds: dicomParser.DataSet, width: number, height: number): Pick<DicomInstance, 'spacingMm' | 'objectivePower'> {
  const positive = (v: string | undefined): number | undefined => {
    const n = v === undefined ? NaN : Number.parseFloat(v);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  };
  const measures = ds.elements['x52009229']?.items?.[0]?.dataSet?.elements['x00289110']?.items?.[0]?.dataSet;
  const spacing = (measures?.string('x00280030') ?? '').split('\\').map((v) => positive(v.trim()));
  let spacingMm: { x: number; y: number } | undefined;
  if (spacing[0] !== undefined && spacing[1] !== undefined) spacingMm = { x: spacing[1], y: spacing[0] };
  else {
    const w = positive(ds.string('x00480001')?.trim());
    const h = positive(ds.string('x00480002')?.trim());
    if (w !== undefined && h !== undefined) spacingMm = { x: w / width, y: h / height };
  }
  const power = positive(ds.elements['x00480105']?.items?.[0]?.dataSet?.string('x00480112')?.trim());
  return { ...(spacingMm !== undefined && { spacingMm }), ...(power !== undefined && { objectivePower: power }) };
}

/** The header, parsed up to (not into) Pixel Data: a file prefix grown x4 until the element is reached. */
async function readHeader(fh: FileHandle, size: number): Promise<dicomParser.DataSet> {
  for (let n = Math.min(size, 256 * 1024); ; n = Math.min(size, DICOM_LIMITS.headerBytes, n * 4)) {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    if (bytesRead !== n) throw new DicomFormatError('damaged', `file shorter than its size (${bytesRead} of ${n} bytes read)`);
    if (n >= 132 && buf.toString('latin1', 128, 132) !== 'DICM') throw new DicomFormatError('unsupported', 'not a DICOM Part 10 file (no DICM prefix at byte 128)');
    let ds: dicomParser.DataSet | undefined;
    let failure: unknown;
    try {
      ds = dicomParser.parseDicom(buf, { untilTag: PIXEL_DATA });
    } catch (err) {
      failure = err;
    }
    if (ds?.elements[PIXEL_DATA] !== undefined) return ds;
    if (n >= size) {
      if (ds !== undefined) throw new DicomFormatError('damaged', 'no Pixel Data (7FE0,0010)');
      throw new DicomFormatError('damaged', `header not parsable: ${parserMessage(failure)}`);
    }
    if (n >= DICOM_LIMITS.headerBytes) {
      throw new DicomFormatError('damaged', `no Pixel Data within the first ${DICOM_LIMITS.headerBytes} bytes (header limit)`);
    }
  }
}

/** dicom-parser throws strings, Errors or { exception, dataSet }. */
function parserMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null && 'exception' in err) return parserMessage((err as { exception: unknown }).exception);
  return String(err);
}

/**
 * Grid cell -> frame. TILED_FULL (also when DimensionOrganizationType is absent): frames row-major, the
 * first focal plane / optical path first. TILED_SPARSE: each frame's position from the per-frame Plane
 * Position (Slide) Sequence; positions must lie on the frame grid; the first frame at a position wins.
 */
function frameGrid(ds: dicomParser.DataSet, width: number, height: number, fw: number, fh: number, frames: number): Int32Array {
  const across = Math.ceil(width / fw);
  const down = Math.ceil(height / fh);
  const grid = new Int32Array(across * down).fill(-1);
  const organisation = (ds.string('x00209311') ?? '').trim().toUpperCase();
  if (organisation === '' || organisation === 'TILED_FULL') {
    if (frames < grid.length) throw new DicomFormatError('damaged', `TILED_FULL needs ${across}x${down} = ${grid.length} frames for ${width}x${height} in ${fw}x${fh} frames, found ${frames}`);
    for (let i = 0; i < grid.length; i++) grid[i] = i;
    return grid;
  }
  if (organisation !== 'TILED_SPARSE') throw new DicomFormatError('unsupported', `DimensionOrganizationType ${organisation} (only TILED_FULL and TILED_SPARSE are read)`);
  const perFrame = ds.elements['x52009230']?.items ?? [];
  if (perFrame.length !== frames) throw new DicomFormatError('damaged', `TILED_SPARSE with ${perFrame.length} per-frame functional groups for ${frames} frames`);
  perFrame.forEach((item, i) => {
    const pos = item.dataSet?.elements['x0048021a']?.items?.[0]?.dataSet;
    const col = pos?.int32('x0048021e');
    const row = pos?.int32('x0048021f');
    if (col === undefined || row === undefined) throw new DicomFormatError('damaged', `TILED_SPARSE frame ${i + 1} has no Plane Position (Slide) column/row`);
    const c = (col - 1) / fw;
    const r = (row - 1) / fh;
    if (!Number.isInteger(c) || !Number.isInteger(r) || c < 0 || r < 0 || c >= across || r >= down) {
      throw new DicomFormatError('unsupported', `TILED_SPARSE frame ${i + 1} at column ${col}, row ${row} is not on the ${fw}x${fh} frame grid of ${width}x${height}`);
    }
    if (grid[r * across + c] === -1) grid[r * across + c] = i;
  });
  return grid;
}

/** Native (uncompressed) frames: contiguous, `frameBytes` each. */
function indexNative(pixel: dicomParser.Element, size: number, frames: number, frameBytes: number): { start: Float64Array; end: Float64Array } {
  if (pixel.hadUndefinedLength === true) throw new DicomFormatError('damaged', 'uncompressed Pixel Data with undefined length');
  if (pixel.length < frames * frameBytes || pixel.dataOffset + frames * frameBytes > size) {
    throw new DicomFormatError('damaged', `Pixel Data holds ${Math.min(pixel.length, size - pixel.dataOffset)} bytes, ${frames} frames need ${frames * frameBytes}`);
  }
  const start = new Float64Array(frames);
  const end = new Float64Array(frames);
  for (let i = 0; i < frames; i++) {
    start[i] = pixel.dataOffset + i * frameBytes;
    end[i] = start[i]! + frameBytes;
  }
  return { start, end };
}

interface Item {
  readonly tag: number;
  readonly length: number;
}

async function readItem(fh: FileHandle, pos: number, size: number): Promise<Item> {
  if (pos + 8 > size) throw new DicomFormatError('damaged', `Pixel Data item at byte ${pos} runs past the end of the file (truncated?)`);
  const b = Buffer.alloc(8);
  await fh.read(b, 0, 8, pos);
  const item = { tag: ((b.readUInt16LE(0) << 16) | b.readUInt16LE(2)) >>> 0, length: b.readUInt32LE(4) };
  if (item.tag === ITEM && pos + 8 + item.length > size) throw new DicomFormatError('damaged', `Pixel Data fragment at byte ${pos} (${item.length} bytes) runs past the end of the file (truncated?)`);
  return item;
}

const ITEM = 0xfffee000;
const SEQ_END = 0xfffee0dd;

/**
 * Encapsulated frames: by the Basic Offset Table when it has one entry per frame; otherwise by walking
 * the fragments once: one fragment per frame when the counts agree, else a frame starts at each fragment
 * that begins with a JPEG SOI marker.
 */
async function indexFragments(fh: FileHandle, size: number, dataOffset: number, frames: number): Promise<{ start: Float64Array; end: Float64Array }> {
  const bot = await readItem(fh, dataOffset, size);
  if (bot.tag !== ITEM) throw new DicomFormatError('damaged', `encapsulated Pixel Data does not start with an item (found tag ${bot.tag.toString(16)})`);
  const first = dataOffset + 8 + bot.length;
  const start = new Float64Array(frames);
  const end = new Float64Array(frames);
  if (bot.length === frames * 4) {
    const table = Buffer.alloc(bot.length);
    await fh.read(table, 0, bot.length, dataOffset + 8);
    for (let i = 0; i < frames; i++) start[i] = first + table.readUInt32LE(i * 4);
    const last = await walkFragments(fh, size, start[frames - 1]!, () => undefined);
    for (let i = 0; i < frames; i++) end[i] = i + 1 < frames ? start[i + 1]! : last;
    if (start.some((s, i) => s >= end[i]! || s < first)) throw new DicomFormatError('damaged', 'Basic Offset Table entries are not increasing');
    return { start, end };
  }
  const fragments: number[] = [];
  const soi: boolean[] = [];
  const last = await walkFragments(fh, size, first, (pos, isSoi) => {
    if (fragments.length >= DICOM_LIMITS.frames * 4) throw new DicomFormatError('damaged', `more than ${DICOM_LIMITS.frames * 4} Pixel Data fragments`);
    fragments.push(pos);
    soi.push(isSoi);
  });
  const starts = fragments.length === frames ? fragments : fragments.filter((_, i) => soi[i]);
  if (starts.length !== frames) throw new DicomFormatError('damaged', `${fragments.length} Pixel Data fragments (${starts.length} frame starts) for ${frames} frames`);
  for (let i = 0; i < frames; i++) {
    start[i] = starts[i]!;
    end[i] = i + 1 < frames ? starts[i + 1]! : last;
  }
  return { start, end };
}

/** Walks items from `pos` to the sequence delimiter (or the end of the file); returns where the items end. */
async function walkFragments(fh: FileHandle, size: number, pos: number, onFragment: (pos: number, soi: boolean) => void): Promise<number> {
  const head = Buffer.alloc(10); // the item header and the fragment's first two bytes, in one read
  while (pos + 8 <= size) {
    head.fill(0);
    await fh.read(head, 0, Math.min(10, size - pos), pos);
    const tag = ((head.readUInt16LE(0) << 16) | head.readUInt16LE(2)) >>> 0;
    const length = head.readUInt32LE(4);
    if (tag === SEQ_END) return pos;
    if (tag !== ITEM) throw new DicomFormatError('damaged', `Pixel Data fragment expected at byte ${pos}, found tag ${tag.toString(16)}`);
    if (length > DICOM_LIMITS.frameBytes) throw new DicomFormatError('damaged', `Pixel Data fragment of ${length} bytes at byte ${pos} (limit ${DICOM_LIMITS.frameBytes})`);
    if (pos + 8 + length > size) throw new DicomFormatError('damaged', `Pixel Data fragment at byte ${pos} (${length} bytes) runs past the end of the file (truncated?)`);
    onFragment(pos, length >= 2 && head[8] === 0xff && head[9] === 0xd8);
    pos += 8 + length;
  }
  return pos;
}

/** Frame i's bytes: raw pixels, or the encapsulated fragments joined (item headers stripped). */
export async function readFrameBytes(fh: FileHandle, inst: DicomInstance, i: number): Promise<Buffer> {
  const s = inst.start[i]!;
  const n = inst.end[i]! - s;
  if (!(n > 0) || n > DICOM_LIMITS.frameBytes) throw new DicomFormatError('damaged', `frame ${i + 1} of ${n} bytes (limit ${DICOM_LIMITS.frameBytes})`);
  const buf = Buffer.alloc(n);
  const { bytesRead } = await fh.read(buf, 0, n, s);
  if (bytesRead !== n) throw new DicomFormatError('damaged', `frame ${i + 1} is cut short (truncated file)`);
  if (!inst.encapsulated) return buf;
  const parts: Buffer[] = [];
  for (let p = 0; p + 8 <= n; ) {
    const tag = ((buf.readUInt16LE(p) << 16) | buf.readUInt16LE(p + 2)) >>> 0;
    const len = buf.readUInt32LE(p + 4);
    if (tag !== ITEM || p + 8 + len > n) throw new DicomFormatError('damaged', `frame ${i + 1}: bad fragment item at byte ${s + p}`);
    parts.push(buf.subarray(p + 8, p + 8 + len));
    p += 8 + len;
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
