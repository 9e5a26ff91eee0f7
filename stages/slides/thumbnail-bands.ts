/**
 * The 1/ds thumbnail of a slide, read in horizontal bands so tile selection needs O(thumbnail width x band)
 * memory instead of the whole thumbnail (117 MB at 100k x 100k). The bands are pixel-for-pixel the rows of
 * `SlideReader.thumbnail(ds)`:
 * - when the chosen level needs no resize (e.g. a /16 level), a band is just that level's rows;
 * - when it is resized by a power-of-two vertical factor f (a /4 level shrunk 4x, level 0 shrunk 16x), each
 *   band is resized from its source rows plus HALO thumbnail rows above and below (cut off afterwards). A band
 *   starts on a multiple of f source rows, so libvips' box shrink (by floor(f/2)) and lanczos3 reduce (by the
 *   rest, 2) see the same pixels at the same kernel phase as in the whole image: libvips' reducev walks its
 *   source position as Y += vshrink from each region's top, which is exact only when vshrink is a dyadic
 *   number, hence powers of two only;
 * - otherwise (e.g. a /16 level of height floor(H/16) when H mod 16 >= 8, where thumbnailSource asks for
 *   th-1 rows stretched to th, or factors like 3 or 1.99), libvips' band could differ from its whole image in
 *   the last bit of a kernel phase: 'stretch' area-averages instead (thumbnail-stretch.ts), exact per band and
 *   per column chunk by construction, so no path reads a whole level (they once did: 'whole').
 * Memory is bounded by stated, counted limits (THUMBNAIL_LIMITS), whatever the slide's width:
 * - 'chunked': a 'resize' whose full-width band would hold more than `bandBytes` of source pixels (level 0 of a
 *   wide single-level slide: 100k px x 704 rows is 211 MB) is cut into column chunks too, each read with
 *   HALO thumbnail columns each side on multiples of f (exact, as the rows are; strips are re-read per chunk);
 * - 'jpeg': level 0 of a JPEG-tiled slide with no usable pyramid level, by default, is made from its
 *   compressed tiles at reduced scale (thumbnail-jpeg.ts: ~4x less CPU, not bit-identical; `exact: true` opts out);
 * - 'box': level 0 without JPEG tiles (strips...) where the exact path would need chunks, by default: full-width
 *   rows read once, a few thumbnail rows at a time, box-averaged (thumbnail-box.ts; `exact: true` opts out);
 * - a slide whose thumbnail band, or decoder unit (a strip), exceeds its limit is refused
 *   (E_SLIDE_TOO_LARGE, naming the limit), never read into memory.
 */
import sharp from 'sharp';
import { SlideError } from './errors.js';
import { chooseLevel, thumbnailSource, type RgbImage, type SlideReader } from './reader.js';
import { DEFAULT_THUMBNAIL_THREADS, GROUP_PX, JpegThumbnail, jpegThumbnailApplies } from './thumbnail-jpeg.js';
import { BoxThumbnail } from './thumbnail-box.js';
import { StretchThumbnail } from './thumbnail-stretch.js';

/** Thumbnail rows of context each side of a resized band: lanczos3 after the box shrink reaches ~3-4 rows. */
export const HALO = 8;
/** Source rows read per call when a band needs more (aligned to multiples, like TIFF tiles of 256/512 rows). */
const CHUNK_ROWS = 256;

/** One band of thumbnail rows `y .. y+image.height-1`, full thumbnail width. */
export interface ThumbnailBand {
  readonly y: number;
  readonly image: RgbImage;
}

/** The memory limits of the thumbnail (bytes), stated once; every read below is sized or refused by them. */
export const THUMBNAIL_LIMITS = {
  /** Source pixels one exact band read may hold (a 'resize' band's rows and read-ahead, a 'chunked' chunk). */
  bandBytes: 16 * 2 ** 20,
  /** Thumbnail rows held at once at full thumbnail width: a band, a 'jpeg' group (a wider slide is refused). */
  rowsBytes: 64 * 2 ** 20,
  /** A decoder's unit: one strip or tile of the level (a bigger one is refused). */
  wholeBytes: 512 * 2 ** 20,
} as const;

/** Options of the thumbnail path. */
export interface ThumbnailOptions {
  /** Never the reduced-scale JPEG path: level 0 is resized exactly (slower). Default false. */
  readonly exact?: boolean;
  /** Thumbnail rows of the tallest band asked for (the selector's tile-row height); default 32. */
  readonly bandRows?: number;
  /** Overrides THUMBNAIL_LIMITS.bandBytes (tests force the chunked path on small slides with it). */
  readonly bandBytes?: number;
  /** sharp calls in flight on the 'jpeg' path (default 2). */
  readonly threads?: number;
}

/** How the thumbnail is made: size, level, the part of the level it covers, and the band method. */
export interface ThumbnailPlan {
  readonly width: number;
  readonly height: number;
  readonly level: number;
  readonly source: { readonly width: number; readonly height: number };
  /**
   * 'rows': no resize; 'resize': power-of-two vertical factor, banded; 'chunked': the same in column chunks;
   * 'jpeg': from level 0's JPEG tiles at reduced scale; 'box': level 0 box-averaged from full-width rows read once
   * (strips, non-JPEG tiles, where 'chunked' would re-read them per chunk); 'stretch': any other factor, area-averaged
   * per band in column chunks (thumbnail-stretch.ts).
   */
  readonly method: 'rows' | 'resize' | 'chunked' | 'jpeg' | 'box' | 'stretch';
  /** Bytes of source pixels one exact band read may hold ('chunked' sizes its chunks by it). */
  readonly bandBytes: number;
  readonly threads: number;
}

/** Counted sizes, for tests and benchmarks: the largest source read and the largest buffer yielded or decoded. */
export interface ThumbnailStats {
  maxReadBytes: number;
  maxBandBytes: number;
}

export function thumbnailPlan(slide: SlideReader, ds: number, opts: ThumbnailOptions = {}): ThumbnailPlan {
  const width = Math.floor(slide.width / ds);
  const height = Math.floor(slide.height / ds);
  if (width < 1 || height < 1) throw new SlideError('E_SLIDE_TOO_SMALL', slide.image_id, slide.path, `smaller than one thumbnail pixel at 1/${ds}`);
  const level = chooseLevel(slide.levels, ds);
  const source = thumbnailSource(slide.width, slide.height, slide.levels[level]!, width, height, ds);
  const f = source.height / height;
  const bandBytes = opts.bandBytes ?? THUMBNAIL_LIMITS.bandBytes;
  const bandRows = Math.max(1, opts.bandRows ?? 32);
  const base = { width, height, level, source, bandBytes, threads: Math.max(1, opts.threads ?? DEFAULT_THUMBNAIL_THREADS) };
  const tooLarge = (what: string): never => {
    throw new SlideError('E_SLIDE_TOO_LARGE', slide.image_id, slide.path, `${slide.width}x${slide.height}: ${what}`);
  };
  const mib = (n: number): string => `${(n / 2 ** 20).toFixed(0)} MiB`;
  const storage = slide.storage?.(level);
  if (storage !== undefined && storage.unitBytes > THUMBNAIL_LIMITS.wholeBytes) {
    tooLarge(`one strip/tile of level ${level} decodes to ${mib(storage.unitBytes)}, over the ${mib(THUMBNAIL_LIMITS.wholeBytes)} limit`);
  }
  if (width * 3 * (bandRows + 2 * HALO) > THUMBNAIL_LIMITS.rowsBytes) {
    tooLarge(`a ${bandRows}-row band of its ${width}x${height} thumbnail is over the ${mib(THUMBNAIL_LIMITS.rowsBytes)} limit of thumbnail rows held at once`);
  }
  if (source.width === width && source.height === height) return { ...base, method: 'rows' };
  const resizable = Number.isInteger(f) && (f & (f - 1)) === 0;
  if (level === 0 && opts.exact !== true && jpegThumbnailApplies(storage?.jpeg, ds)) {
    const groupRows = Math.max(1, Math.floor(GROUP_PX / storage!.jpeg!.tileHeight)) * (storage!.jpeg!.tileHeight / ds);
    if (width * 3 * groupRows <= THUMBNAIL_LIMITS.rowsBytes) return { ...base, method: 'jpeg' };
  }
  if (resizable) {
    // RowWindow: the band's source rows (halo included), plus a chunk of read-ahead, twice while it grows.
    const windowBytes = source.width * 3 * ((bandRows + 2 * HALO) * f + CHUNK_ROWS) * 2;
    if (windowBytes <= bandBytes) return { ...base, method: 'resize' };
    const boxable = level === 0 && opts.exact !== true && Number.isInteger(ds) && width * ds * ds * 3 <= THUMBNAIL_LIMITS.rowsBytes;
    if (boxable) return { ...base, method: 'box' };
    if (source.width === width * f && chunkColumns(bandRows, f, bandBytes) >= 1) return { ...base, method: 'chunked' };
    // A level whose width is not exactly f thumbnails (a rounded pyramid level) cannot be chunked exactly by libvips:
    // area-averaged in column chunks instead.
  }
  return { ...base, method: 'stretch' };
}

/** Thumbnail columns per chunk so a band of `rows` thumbnail rows (halo included) holds at most `bytes` of source. */
function chunkColumns(rows: number, f: number, bytes: number): number {
  return Math.floor(bytes / (3 * f * f * (rows + 2 * HALO))) - 2 * HALO;
}

/**
 * Yields the thumbnail in bands cut at `cuts` (strictly increasing thumbnail rows, first 0, last the
 * thumbnail height). Stop early by returning from the loop: nothing is read past the current band.
 */
export async function* thumbnailBands(slide: SlideReader, ds: number, cuts: readonly number[], plan = thumbnailPlan(slide, ds), stats?: ThumbnailStats): AsyncGenerator<ThumbnailBand> {
  const th = plan.height;
  if (cuts[0] !== 0 || cuts[cuts.length - 1] !== th || cuts.some((c, i) => i > 0 && c <= cuts[i - 1]!)) {
    throw new RangeError(`band cuts must rise strictly from 0 to ${th}: ${cuts.slice(0, 8).join(',')}${cuts.length > 8 ? ',..' : ''}`);
  }
  const count = (read: number, band: number): void => {
    if (stats === undefined) return;
    stats.maxReadBytes = Math.max(stats.maxReadBytes, read);
    stats.maxBandBytes = Math.max(stats.maxBandBytes, band);
  };
  const groups = (): Groups => {
    // libvips reads a strip TIFF from its top for every region: fewer, larger reads (up to rowsBytes) cost less.
    if (plan.method === 'box') return new BoxThumbnail(slide, ds, plan.width, plan.height, THUMBNAIL_LIMITS.rowsBytes);
    const jpeg = slide.storage?.(0)?.jpeg;
    if (jpeg === undefined) throw new RangeError(`slide ${slide.image_id}: level 0 has no JPEG tiles`);
    return new JpegThumbnail(slide, jpeg, ds, plan.width, plan.height, plan.threads);
  };
  const bands =
    plan.method === 'stretch' ? stretchBands(slide, cuts, plan, count)
    : plan.method === 'jpeg' || plan.method === 'box' ? groupBands(groups(), cuts, plan, count)
    : plan.method === 'chunked' ? chunkedBands(slide, cuts, plan, count)
    : windowBands(slide, cuts, plan, count);
  yield* bands;
}

type Count = (readBytes: number, bandBytes: number) => void;

/** 'stretch': each band area-averaged from its source rows, in column chunks of at most bandBytes. */
async function* stretchBands(slide: SlideReader, cuts: readonly number[], plan: ThumbnailPlan, count: Count): AsyncGenerator<ThumbnailBand> {
  const stretch = new StretchThumbnail(slide, plan.level, plan.source, plan.width, plan.height, plan.bandBytes);
  for (let i = 0; i + 1 < cuts.length; i++) {
    const a = cuts[i]!;
    const b = cuts[i + 1]!;
    const data = await stretch.band(a, b);
    count(stretch.maxReadBytes, data.length);
    yield { y: a, image: { width: plan.width, height: b - a, data } };
  }
}

/** 'rows' and 'resize': full-width source rows through a RowWindow. */
async function* windowBands(slide: SlideReader, cuts: readonly number[], plan: ThumbnailPlan, count: Count): AsyncGenerator<ThumbnailBand> {
  const { width: tw, height: th, level, source: src } = plan;
  const f = src.height / th;
  const rows = new RowWindow(slide, level, src.width, src.height);
  for (let i = 0; i + 1 < cuts.length; i++) {
    const a = cuts[i]!;
    const b = cuts[i + 1]!;
    if (plan.method === 'rows') {
      const data = await rows.get(a, b);
      count(rows.bytes, data.length);
      yield { y: a, image: { width: tw, height: b - a, data } };
      continue;
    }
    // Source rows k0*f .. k1*f: a multiple of f (so of libvips' shrink, f/2) at the top, the halo each side.
    const k0 = Math.max(0, a - HALO);
    const k1 = Math.min(th, b + HALO);
    const pixels = await rows.get(k0 * f, k1 * f);
    const out = await resizeBand(slide, level, pixels, src.width, (k1 - k0) * f, tw, k1 - k0, `${a}-${b}`);
    count(rows.bytes, out.length);
    yield { y: a, image: { width: tw, height: b - a, data: out.subarray((a - k0) * tw * 3, (b - k0) * tw * 3) } };
  }
}

/** 'chunked': each band in column chunks, each chunk read with HALO thumbnail columns/rows each side. */
async function* chunkedBands(slide: SlideReader, cuts: readonly number[], plan: ThumbnailPlan, count: Count): AsyncGenerator<ThumbnailBand> {
  const { width: tw, height: th, level, source: src } = plan;
  const f = src.height / th;
  for (let i = 0; i + 1 < cuts.length; i++) {
    const a = cuts[i]!;
    const b = cuts[i + 1]!;
    const k0 = Math.max(0, a - HALO);
    const k1 = Math.min(th, b + HALO);
    const cols = chunkColumns(k1 - k0 - 2 * HALO, f, plan.bandBytes);
    if (cols < 1) throw new SlideError('E_SLIDE_TOO_LARGE', slide.image_id, slide.path, `thumbnail band ${a}-${b} is too tall for the ${plan.bandBytes}-byte band limit`);
    const out = new Uint8Array(tw * (b - a) * 3);
    for (let c0 = 0; c0 < tw; c0 += cols) {
      const c1 = Math.min(tw, c0 + cols);
      const m0 = Math.max(0, c0 - HALO);
      const m1 = Math.min(tw, c1 + HALO);
      const pixels = await slide.readRegion(level, m0 * f, k0 * f, (m1 - m0) * f, (k1 - k0) * f);
      const part = await resizeBand(slide, level, pixels, (m1 - m0) * f, (k1 - k0) * f, m1 - m0, k1 - k0, `${a}-${b} columns ${c0}-${c1}`);
      count(pixels.length, out.length);
      const pw = m1 - m0;
      for (let r = a; r < b; r++) out.set(part.subarray(((r - k0) * pw + (c0 - m0)) * 3, ((r - k0) * pw + (c1 - m0)) * 3), ((r - a) * tw + c0) * 3);
    }
    yield { y: a, image: { width: tw, height: b - a, data: out } };
  }
}

/** What 'jpeg' and 'box' make: the thumbnail in fixed groups of rows, full width. */
interface Groups {
  readonly groupRows: number;
  group(g: number): Promise<Uint8Array>;
  readonly maxDecodedBytes?: number;
}

/** 'jpeg' and 'box': groups of thumbnail rows (thumbnail-jpeg.ts, thumbnail-box.ts), cut at `cuts`. */
async function* groupBands(thumb: Groups, cuts: readonly number[], plan: ThumbnailPlan, count: Count): AsyncGenerator<ThumbnailBand> {
  const tw = plan.width;
  const G = thumb.groupRows;
  let cur = -1;
  let data: Uint8Array = new Uint8Array(0);
  for (let i = 0; i + 1 < cuts.length; i++) {
    const a = cuts[i]!;
    const b = cuts[i + 1]!;
    const out = new Uint8Array(tw * (b - a) * 3);
    for (let g = Math.floor(a / G); g * G < b; g++) {
      if (g !== cur) {
        const held = data.length; // the previous group is alive until the new one replaces it
        data = await thumb.group(g);
        cur = g;
        // 'box' reads groupRows x ds full-width source rows (<= bandBytes) for each group.
        const read = plan.method === 'box' ? Math.min(G, plan.height - g * G) * plan.width * 3 * (plan.source.height / plan.height) ** 2 : (thumb.maxDecodedBytes ?? 0);
        count(held + data.length + read, out.length);
      }
      const r0 = Math.max(a, g * G);
      const r1 = Math.min(b, (g + 1) * G);
      out.set(data.subarray((r0 - g * G) * tw * 3, (r1 - g * G) * tw * 3), (r0 - a) * tw * 3);
    }
    yield { y: a, image: { width: tw, height: b - a, data: out } };
  }
}

async function resizeBand(slide: SlideReader, level: number, pixels: Uint8Array, w: number, h: number, tw: number, rows: number, what: string): Promise<Buffer> {
  try {
    return await sharp(pixels, { raw: { width: w, height: h, channels: 3 }, limitInputPixels: false }).resize(tw, rows, { fit: 'fill' }).raw().toBuffer();
  } catch (err) {
    throw new SlideError('E_SLIDE_READ', slide.image_id, slide.path, `thumbnail band ${what} from level ${level}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * A sliding window of a level's rows (full source width): requests move down the level; rows above the
 * current request are dropped, missing rows are read in CHUNK_ROWS-aligned reads so a TIFF tile row is
 * decoded about once, not once per band.
 */
class RowWindow {
  private start = 0;
  private end = 0;
  private data = new Uint8Array(0);
  /** Bytes held at the last growth (the kept rows and the fresh read, both alive while they are joined). */
  bytes = 0;

  constructor(
    private readonly slide: SlideReader,
    private readonly level: number,
    private readonly width: number,
    private readonly height: number,
  ) {}

  /** Rows [y0, y1) as one RGB buffer; y0 never goes back above an earlier request's y0. */
  async get(y0: number, y1: number): Promise<Uint8Array> {
    if (y0 < this.start || y1 > this.height) throw new RangeError(`rows ${y0}-${y1} outside the window ${this.start}-${this.height}`);
    const rowBytes = this.width * 3;
    if (y1 > this.end) {
      const from = Math.max(this.end, y0);
      const to = Math.min(this.height, Math.ceil(y1 / CHUNK_ROWS) * CHUNK_ROWS);
      const fresh = await this.slide.readRegion(this.level, 0, from, this.width, to - from);
      const keep = y0 < this.end ? this.data.subarray((y0 - this.start) * rowBytes) : new Uint8Array(0);
      const next = new Uint8Array(keep.length + fresh.length);
      next.set(keep);
      next.set(fresh, keep.length);
      this.bytes = Math.max(this.bytes, keep.length + fresh.length + next.length);
      this.data = next;
      this.start = y0 < this.end ? y0 : from;
      this.end = to;
    }
    return this.data.subarray((y0 - this.start) * rowBytes, (y1 - this.start) * rowBytes);
  }
}
