/**
 * The sharp/libvips slide backend: TIFF and BigTIFF (tiled or strip), pyramidal TIFF, JPEG Aperio SVS,
 * OME-TIFF. Pyramid levels come from our own IFD parse (tiled or not, sizes); pixels are decoded by
 * libvips. JPEG-tiled levels are read through tiff-region.ts (no re-parse of the file per region).
 */
import { open, type FileHandle } from 'node:fs/promises';
import sharp from 'sharp';
import { brightfieldCheck, mapToRgb, type ChannelMapping } from './brightfield.js';
import { SlideError } from './errors.js';
import { chooseLevel, findLevels, thumbnailSource, type LevelStorage, type RgbImage, type SlideFacts, type SlideLevel, type SlideReader } from './reader.js';
import { tiffFacts, tiffPixelKind } from './tiff-facts.js';
import { parseTiff, TiffFormatError, type TiffFile, type TiffIfd } from './tiff-parse.js';
import { canCopyTiles, canReadTiles, readTiledRegion, tiledRegion } from './tiff-region.js';
import { CorruptTileError, TileCheck, type JpegCheckSetting } from './tile-check.js';

// libvips' operation cache would keep decoded slide pixels alive between regions: off.
sharp.cache(false);

/** Call once in each worker process: one libvips thread per worker (the workers are the parallelism). */
export function configureSharpForWorker(): void {
  sharp.concurrency(1);
}

/** Aperio's JPEG 2000 codes (33003, 33005) and other codecs libtiff in sharp does not decode. */
const UNSUPPORTED_COMPRESSION = new Set([33003, 33004, 33005, 34712, 34713]);

/**
 * Opens a TIFF-family slide. Levels: page 0 and its SubIFDs when it has them (an OME-TIFF pyramid), else the
 * main chain's pages (findLevels). An image that is not 8-bit RGB brightfield is refused (E_SLIDE_NOT_BRIGHTFIELD)
 * before any pixel is read, unless `allowNonRgb`: then every read maps it to RGB the same way (brightfield.ts).
 * `jpegCheck` (default 'quick'): every JPEG tile a read decodes is checked first (tile-check.ts); a corrupt one
 * fails the read with E_TILE_CORRUPT.
 */
export async function openSharpSlide(path: string, image_id: string, opts: { allowNonRgb?: boolean; jpegCheck?: JpegCheckSetting } = {}): Promise<SlideReader> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new SlideError(missing ? 'E_SLIDE_MISSING' : 'E_SLIDE_READ', image_id, path, (err as Error).message, { cause: err });
  }
  try {
    let tiff: TiffFile;
    try {
      tiff = await parseTiff(fh);
    } catch (err) {
      // Not a TIFF, or a damaged directory (a value pointing outside the file or past a limit): format; an I/O error: read.
      throw new SlideError(err instanceof TiffFormatError ? 'E_SLIDE_FORMAT' : 'E_SLIDE_READ', image_id, path, (err as Error).message, { cause: err });
    }
    const ifd0 = tiff.ifds[0]!;
    const mapping = brightfieldCheck(tiffPixelKind(tiff), opts.allowNonRgb === true, image_id, path);
    if (UNSUPPORTED_COMPRESSION.has(ifd0.compression)) {
      throw new SlideError('E_SLIDE_FORMAT', image_id, path, `TIFF compression ${ifd0.compression} (e.g. JPEG 2000) is not decoded by libvips`);
    }
    let meta: sharp.Metadata;
    try {
      meta = await sharp(path, { page: 0, limitInputPixels: false }).metadata();
    } catch (err) {
      throw new SlideError('E_SLIDE_FORMAT', image_id, path, `libvips cannot read it: ${(err as Error).message}`, { cause: err });
    }
    // An OME-TIFF pyramid is page 0's SubIFDs (those whose tiles we can copy: see canCopyTiles); the main chain's
    // other pages are then its channels / planes.
    const pages = ifd0.subImages.length > 0 ? [ifd0, ...ifd0.subImages.filter((d) => canCopyTiles(d, tiff.littleEndian))] : tiff.ifds;
    const pageIdx = findLevels(pages.map((d) => ({ width: d.width, height: d.height, tiled: d.tileWidth !== undefined })));
    const levels = pageIdx.map((i): SlideLevel => {
      const d = pages[i]!;
      return { width: d.width, height: d.height, downsample: (ifd0.width / d.width + ifd0.height / d.height) / 2 };
    });
    const facts = { ...tiffFacts(tiff), ...(mapping !== undefined && { channelMapping: mapping.text }) };
    // A mapped image is read in its own colourspace and depth (libvips' sRGB conversion would otherwise apply first).
    const native = mapping === undefined ? undefined : { space: meta.space ?? 'multiband', depth: meta.depth ?? 'uchar' };
    return new SharpSlide(image_id, path, fh, pageIdx.map((i) => pages[i]!), levels, facts, mapping && native && { ...mapping, ...native }, opts.jpegCheck ?? 'quick');
  } catch (err) {
    await fh.close();
    throw err;
  }
}

class SharpSlide implements SlideReader {
  readonly backend = 'sharp' as const;
  readonly width: number;
  readonly height: number;
  private closed = false;

  constructor(
    readonly image_id: string,
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly pages: readonly TiffIfd[],
    readonly levels: readonly SlideLevel[],
    readonly facts: SlideFacts,
    /** Set for a non-brightfield image let through (--allow-non-rgb): how its samples become RGB, and libvips' native colourspace and depth. */
    readonly mapping: (ChannelMapping & { readonly space: string; readonly depth: string }) | undefined,
    private readonly jpegCheck: JpegCheckSetting,
  ) {
    this.width = levels[0]!.width;
    this.height = levels[0]!.height;
  }

  /** Each JPEG-tiled level's tile check, made on first use (undefined: not JPEG tiles, or --jpeg-check off). */
  private readonly checks = new Map<number, TileCheck>();

  /** The tile check of a level (tests and the bench read its count). */
  tileCheck(level: number): TileCheck | undefined {
    const ifd = this.pages[level];
    if (this.jpegCheck === 'off' || ifd === undefined || !TileCheck.applies(ifd)) return undefined;
    let c = this.checks.get(level);
    if (c === undefined) this.checks.set(level, (c = new TileCheck(ifd, this.jpegCheck)));
    return c;
  }

  /** E_TILE_CORRUPT for a tile of `level`, placed in level-0 pixels. */
  private corrupt(level: number, err: CorruptTileError): SlideError {
    const ifd = this.pages[level]!;
    const ds = this.levels[level]!.downsample;
    const x = Math.round(err.column * ifd.tileWidth! * ds);
    const y = Math.round(err.row * ifd.tileHeight! * ds);
    // The tile's box, cut to the slide (an edge tile's padding is not pixels of it).
    const tile = { level, x, y, width: Math.min(Math.round(ifd.tileWidth! * ds), this.width - x), height: Math.min(Math.round(ifd.tileHeight! * ds), this.height - y) };
    const where = `tile at level-0 x ${tile.x}, y ${tile.y} (${tile.width}x${tile.height} px${level > 0 ? `, level ${level}` : ''}; JPEG tile ${err.index} of TIFF page ${ifd.index})`;
    return new SlideError('E_TILE_CORRUPT', this.image_id, this.path, `${where} is corrupt: ${err.fault}`, { cause: err, tile });
  }

  /**
   * Checks the JPEG tiles under a region that libvips reads from the file itself (a mapped image's page, a thumbnail
   * page): their bytes read here, each tile once.
   */
  private async verifyTiles(level: number, x: number, y: number, width: number, height: number): Promise<void> {
    const check = this.tileCheck(level);
    if (check === undefined) return;
    const ifd = this.pages[level]!;
    const tw = ifd.tileWidth!;
    const th = ifd.tileHeight!;
    const across = Math.ceil(ifd.width / tw);
    for (let r = Math.floor(y / th); r <= Math.floor((y + height - 1) / th); r++) {
      for (let c = Math.floor(x / tw); c <= Math.floor((x + width - 1) / tw); c++) {
        const i = r * across + c;
        if (!check.has(i)) check.verify(i, await this.tileBytes(ifd, i));
      }
    }
  }

  /** The stored (compressed) bytes of tile `index` of a page. */
  private async tileBytes(ifd: TiffIfd, index: number): Promise<Buffer> {
    const n = ifd.byteCounts[index] ?? 0;
    const off = ifd.offsets[index];
    if (off === undefined || n === 0) throw new Error(`tile ${index} of TIFF page ${ifd.index} has no data`);
    const buf = Buffer.alloc(n);
    const { bytesRead } = await this.fh.read(buf, 0, n, off);
    if (bytesRead !== n) throw new Error(`truncated TIFF: tile ${index} of page ${ifd.index} is cut short`);
    return buf;
  }

  async readRegion(level: number, x: number, y: number, width: number, height: number): Promise<Uint8Array> {
    const ifd = this.pages[level];
    if (ifd === undefined) throw new RangeError(`slide ${this.image_id}: no level ${level}`);
    if (x < 0 || y < 0 || width < 1 || height < 1 || x + width > ifd.width || y + height > ifd.height) {
      throw new RangeError(`slide ${this.image_id}: region ${x},${y} ${width}x${height} outside level ${level} (${ifd.width}x${ifd.height})`);
    }
    const check = this.tileCheck(level);
    try {
      if (canReadTiles(ifd) && this.mapping === undefined) return await readTiledRegion(this.fh, ifd, x, y, width, height, check);
      // A SubIFD level: its tiles copied into a mini TIFF (libvips cannot open a SubIFD through sharp).
      if (ifd.subIfd !== undefined) return await this.rgb(await tiledRegion(this.fh, ifd, x, y, width, height, check));
      await this.verifyTiles(level, x, y, width, height);
      return await this.rgb(this.page(ifd).extract({ left: x, top: y, width, height }));
    } catch (err) {
      if (err instanceof CorruptTileError) throw this.corrupt(level, err);
      throw new SlideError('E_SLIDE_READ', this.image_id, this.path, `reading level ${level} region ${x},${y} ${width}x${height}: ${(err as Error).message}`, { cause: err });
    }
  }

  async thumbnail(downsample: number): Promise<{ image: RgbImage; level: number }> {
    const width = Math.floor(this.width / downsample);
    const height = Math.floor(this.height / downsample);
    if (width < 1 || height < 1) throw new SlideError('E_SLIDE_TOO_SMALL', this.image_id, this.path, `smaller than one thumbnail pixel at 1/${downsample}`);
    const level = chooseLevel(this.levels, downsample);
    const ifd = this.pages[level]!;
    try {
      const src = thumbnailSource(this.width, this.height, this.levels[level]!, width, height, downsample);
      // A SubIFD level or a mapped image is read through readRegion below, which checks its tiles.
      if (this.mapping === undefined && ifd.subIfd === undefined) await this.verifyTiles(level, 0, 0, src.width, src.height);
      let img = this.page(ifd);
      if (src.width !== ifd.width || src.height !== ifd.height) img = img.extract({ left: 0, top: 0, width: src.width, height: src.height });
      // A SubIFD level, or a mapped image (mapped to RGB first, then resized, as the banded thumbnail does): RGB regions.
      if (this.mapping !== undefined || ifd.subIfd !== undefined) img = sharp(await this.readRegion(level, 0, 0, src.width, src.height), { raw: { width: src.width, height: src.height, channels: 3 }, limitInputPixels: false });
      if (src.width !== width || src.height !== height) img = img.resize(width, height, { fit: 'fill' });
      const data = await rgb(img);
      return { image: { width, height, data }, level };
    } catch (err) {
      if (err instanceof CorruptTileError) throw this.corrupt(level, err);
      if (err instanceof SlideError) throw err;
      throw new SlideError('E_SLIDE_READ', this.image_id, this.path, `thumbnail from level ${level}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The level's page of the main chain, opened by libvips. */
  private page(ifd: TiffIfd): sharp.Sharp {
    return sharp(this.path, { page: ifd.index, limitInputPixels: false });
  }

  /** 3-channel sRGB uint8: libvips' conversion for brightfield pages; the stated mapping for a forced non-brightfield one. */
  private async rgb(img: sharp.Sharp): Promise<Buffer> {
    if (this.mapping === undefined) return rgb(img);
    const m = this.mapping;
    const { data, info } = await img.toColourspace(m.space).raw({ depth: m.depth as 'uchar' }).toBuffer({ resolveWithObject: true });
    const out = mapToRgb(data, info.width * info.height, info.channels, m);
    return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  }

  storage(level: number): LevelStorage | undefined {
    const ifd = this.pages[level];
    if (ifd === undefined) return undefined;
    const tiled = ifd.tileWidth !== undefined && ifd.tileHeight !== undefined;
    // A strip image's rows per strip, from its strip count (the tag itself is not kept by the parse).
    const unitRows = tiled ? ifd.tileHeight! : Math.ceil(ifd.height / Math.max(1, ifd.offsets.length));
    const unitBytes = (tiled ? ifd.tileWidth! : ifd.width) * unitRows * 3;
    if (!canReadTiles(ifd) || this.mapping !== undefined) return { unitBytes };
    const across = Math.ceil(ifd.width / ifd.tileWidth!);
    const check = this.tileCheck(level);
    const read = async (index: number): Promise<Buffer> => {
      const buf = await this.tileBytes(ifd, index);
      try {
        check?.verify(index, buf);
      } catch (err) {
        if (err instanceof CorruptTileError) throw this.corrupt(level, err);
        throw err;
      }
      return buf;
    };
    const jpeg = { tileWidth: ifd.tileWidth!, tileHeight: ifd.tileHeight!, across, down: Math.ceil(ifd.height / ifd.tileHeight!), photometric: ifd.photometric, tables: ifd.jpegTables, read };
    return { unitBytes, jpeg };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

/** Whatever the page holds (grey, RGBA...), as 3-channel sRGB uint8. */
async function rgb(img: sharp.Sharp): Promise<Buffer> {
  const { data, info } = await img.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`expected 3 channels, got ${info.channels}`);
  return data;
}
