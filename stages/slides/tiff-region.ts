/**
 * Fast region reads from a JPEG-tiled TIFF level. Opening the slide with libvips for every region
 * re-parses the whole file (a 64k slide has ~65,000 tile offsets per level); decoding each JPEG tile in
 * its own sharp call costs ~2 ms of overhead per tile. Instead, the compressed tiles a region needs are
 * copied, unchanged, into a small in-memory TIFF with the level's own tags (JPEGTables, photometric,
 * subsampling), which libvips decodes in one call. libtiff sees exactly the tags of the original file,
 * so colour handling (for example Aperio's RGB-in-JPEG with a YCbCr subsampling tag) is unchanged.
 */
import type { FileHandle } from 'node:fs/promises';
import sharp from 'sharp';
import type { TiffIfd } from './tiff-parse.js';
import type { TileCheck } from './tile-check.js';

/** True when the region reader below can serve this level (8-bit, chunky, 3-channel, JPEG tiles). */
export function canReadTiles(ifd: TiffIfd): boolean {
  return (
    ifd.tileWidth !== undefined &&
    ifd.tileHeight !== undefined &&
    ifd.compression === 7 &&
    ifd.samplesPerPixel === 3 &&
    ifd.bitsPerSample === 8 &&
    ifd.planarConfig === 1 &&
    (ifd.photometric === 2 || ifd.photometric === 6)
  );
}

/**
 * True when tiledRegion can serve this level by copying its tiles, whatever their codec (libtiff decodes the mini
 * TIFF): tiled and chunky, and 8-bit or from a little-endian file (the mini TIFF is little-endian, and uncompressed
 * or deflated samples of more than a byte are stored in the file's byte order). How the SubIFD levels of an
 * OME-TIFF are read: libvips cannot be pointed at a SubIFD through sharp 0.34 (its `subifd` input option is not
 * passed on to libvips).
 */
export function canCopyTiles(ifd: TiffIfd, littleEndian: boolean): boolean {
  return ifd.tileWidth !== undefined && ifd.tileHeight !== undefined && (ifd.planarConfig === 1 || ifd.samplesPerPixel === 1) && (ifd.bitsPerSample === 8 || littleEndian);
}

/**
 * Reads an RGB region (level pixel coordinates, inside the level) as width*height*3 bytes. `check`: each JPEG tile is
 * checked before libvips decodes it (libvips does not report a corrupt JPEG tile: tile-check.ts).
 */
export async function readTiledRegion(fh: FileHandle, ifd: TiffIfd, x: number, y: number, width: number, height: number, check?: TileCheck): Promise<Buffer> {
  return (await tiledRegion(fh, ifd, x, y, width, height, check)).raw().toBuffer();
}

/** The region as a sharp image of its tiles copied into a mini TIFF with the level's own tags, not yet decoded. */
export async function tiledRegion(fh: FileHandle, ifd: TiffIfd, x: number, y: number, width: number, height: number, check?: TileCheck): Promise<sharp.Sharp> {
  const tw = ifd.tileWidth!;
  const th = ifd.tileHeight!;
  const across = Math.ceil(ifd.width / tw);
  const c0 = Math.floor(x / tw);
  const c1 = Math.floor((x + width - 1) / tw);
  const r0 = Math.floor(y / th);
  const r1 = Math.floor((y + height - 1) / th);
  const cols = c1 - c0 + 1;
  const rows = r1 - r0 + 1;
  // Copy the compressed tiles (row-major) into one buffer.
  const idx: number[] = [];
  for (let r = r0; r <= r1; r++) for (let c = c0; c <= c1; c++) idx.push(r * across + c);
  let total = 0;
  for (const i of idx) total += ifd.byteCounts[i] ?? 0;
  const data = Buffer.alloc(total);
  const offsets: number[] = [];
  let pos = 0;
  for (const i of idx) {
    const n = ifd.byteCounts[i] ?? 0;
    const off = ifd.offsets[i];
    if (off === undefined || n === 0) throw new Error(`tile ${i} of TIFF page ${ifd.index} has no data`);
    const { bytesRead } = await fh.read(data, pos, n, off);
    if (bytesRead !== n) throw new Error(`truncated TIFF: tile ${i} of page ${ifd.index} is cut short`);
    check?.verify(i, data.subarray(pos, pos + n));
    offsets.push(pos);
    pos += n;
  }
  // The mini image is cut to the level's right/bottom edge so partial tiles stay partial.
  const miniW = Math.min((c1 + 1) * tw, ifd.width) - c0 * tw;
  const miniH = Math.min((r1 + 1) * th, ifd.height) - r0 * th;
  const tiff = buildMiniTiff(ifd, miniW, miniH, cols * rows, offsets, idx.map((i) => ifd.byteCounts[i]!), data);
  return sharp(tiff, { limitInputPixels: false }).extract({ left: x - c0 * tw, top: y - r0 * th, width, height });
}

/** A classic little-endian TIFF: header, IFD, out-of-line values, then the tile data. */
function buildMiniTiff(ifd: TiffIfd, w: number, h: number, n: number, dataOffsets: number[], counts: number[], data: Buffer): Buffer {
  type Entry = [tag: number, type: number, values: number[] | Buffer];
  const entries: Entry[] = [
    [256, 4, [w]],
    [257, 4, [h]],
    [258, 3, Array<number>(ifd.samplesPerPixel).fill(ifd.bitsPerSample)],
    [259, 3, [ifd.compression]],
    [262, 3, [ifd.photometric]],
    [277, 3, [ifd.samplesPerPixel]],
    [284, 3, [1]],
    [322, 4, [ifd.tileWidth!]],
    [323, 4, [ifd.tileHeight!]],
    [324, 4, dataOffsets], // patched below once the data position is known
    [325, 4, counts],
  ];
  if (ifd.predictor !== 1) entries.push([317, 3, [ifd.predictor]]);
  if (ifd.sampleFormat !== 1) entries.push([339, 3, Array<number>(ifd.samplesPerPixel).fill(ifd.sampleFormat)]);
  if (ifd.jpegTables !== undefined) entries.push([347, 7, Buffer.from(ifd.jpegTables)]);
  if (ifd.photometric === 6) entries.push([530, 3, [...ifd.ycbcrSubsampling]]);
  entries.sort((a, b) => a[0] - b[0]); // libtiff wants ascending tags
  const ifdSize = 2 + entries.length * 12 + 4;
  const size = (e: Entry): number => (Buffer.isBuffer(e[2]) ? e[2].length : e[2].length * (e[1] === 3 ? 2 : 4));
  let extra = 8 + ifdSize;
  for (const e of entries) if (size(e) > 4) extra += (size(e) + 1) & ~1;
  const dataStart = extra;
  entries[entries.findIndex((e) => e[0] === 324)] = [324, 4, dataOffsets.map((o) => o + dataStart)];
  if (n !== dataOffsets.length) throw new Error('tile count mismatch');
  const out = Buffer.alloc(dataStart + data.length);
  out.write('II', 0, 'latin1');
  out.writeUInt16LE(42, 2);
  out.writeUInt32LE(8, 4);
  out.writeUInt16LE(entries.length, 8);
  let ext = 8 + ifdSize;
  entries.forEach((e, i) => {
    const o = 10 + i * 12;
    const [tag, type, values] = e;
    out.writeUInt16LE(tag, o);
    out.writeUInt16LE(type, o + 2);
    out.writeUInt32LE(values.length, o + 4);
    const sz = size(e);
    const at = sz > 4 ? ext : o + 8;
    if (sz > 4) {
      out.writeUInt32LE(ext, o + 8);
      ext += (sz + 1) & ~1;
    }
    if (Buffer.isBuffer(values)) values.copy(out, at);
    else values.forEach((v, k) => (type === 3 ? out.writeUInt16LE(v, at + k * 2) : out.writeUInt32LE(v, at + k * 4)));
  });
  out.writeUInt32LE(0, 10 + entries.length * 12);
  data.copy(out, dataStart);
  return out;
}
