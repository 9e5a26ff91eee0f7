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
 *   th-1 rows stretched to th, or factors like 3 or 1.99), a band could differ from the whole image in the
 *   last bit of a kernel phase: we read the whole thumbnail once and cut it into bands (exact, but O(area)).
 */
import sharp from 'sharp';
import { SlideError } from './errors.js';
import { chooseLevel, thumbnailSource, type RgbImage, type SlideReader } from './reader.js';

/** Thumbnail rows of context each side of a resized band: lanczos3 after the box shrink reaches ~3-4 rows. */
export const HALO = 8;
/** Source rows read per call when a band needs more (aligned to multiples, like TIFF tiles of 256/512 rows). */
const CHUNK_ROWS = 256;

/** One band of thumbnail rows `y .. y+image.height-1`, full thumbnail width. */
export interface ThumbnailBand {
  readonly y: number;
  readonly image: RgbImage;
}

/** How the thumbnail is made: size, level, the part of the level it covers, and the band method. */
export interface ThumbnailPlan {
  readonly width: number;
  readonly height: number;
  readonly level: number;
  readonly source: { readonly width: number; readonly height: number };
  /** 'rows': no resize; 'resize': power-of-two vertical factor, banded; 'whole': read whole, then cut. */
  readonly method: 'rows' | 'resize' | 'whole';
}

export function thumbnailPlan(slide: SlideReader, ds: number): ThumbnailPlan {
  const width = Math.floor(slide.width / ds);
  const height = Math.floor(slide.height / ds);
  if (width < 1 || height < 1) throw new SlideError('E_SLIDE_TOO_SMALL', slide.image_id, slide.path, `smaller than one thumbnail pixel at 1/${ds}`);
  const level = chooseLevel(slide.levels, ds);
  const source = thumbnailSource(slide.width, slide.height, slide.levels[level]!, width, height, ds);
  const f = source.height / height;
  const method = source.width === width && source.height === height ? 'rows' : Number.isInteger(f) && (f & (f - 1)) === 0 ? 'resize' : 'whole';
  return { width, height, level, source, method };
}

/**
 * Yields the thumbnail in bands cut at `cuts` (strictly increasing thumbnail rows, first 0, last the
 * thumbnail height). Stop early by returning from the loop: nothing is read past the current band.
 */
export async function* thumbnailBands(slide: SlideReader, ds: number, cuts: readonly number[], plan = thumbnailPlan(slide, ds)): AsyncGenerator<ThumbnailBand> {
  const { width: tw, height: th, level, source: src } = plan;
  if (cuts[0] !== 0 || cuts[cuts.length - 1] !== th || cuts.some((c, i) => i > 0 && c <= cuts[i - 1]!)) {
    throw new RangeError(`band cuts must rise strictly from 0 to ${th}: ${cuts.slice(0, 8).join(',')}${cuts.length > 8 ? ',..' : ''}`);
  }
  if (plan.method === 'whole') {
    const { image } = await slide.thumbnail(ds);
    for (let i = 0; i + 1 < cuts.length; i++) {
      yield { y: cuts[i]!, image: { width: tw, height: cuts[i + 1]! - cuts[i]!, data: image.data.subarray(cuts[i]! * tw * 3, cuts[i + 1]! * tw * 3) } };
    }
    return;
  }
  const f = src.height / th;
  const rows = new RowWindow(slide, level, src.width, src.height);
  for (let i = 0; i + 1 < cuts.length; i++) {
    const a = cuts[i]!;
    const b = cuts[i + 1]!;
    if (plan.method === 'rows') {
      yield { y: a, image: { width: tw, height: b - a, data: await rows.get(a, b) } };
      continue;
    }
    // Source rows k0*f .. k1*f: a multiple of f (so of libvips' shrink, f/2) at the top, the halo each side.
    const k0 = Math.max(0, a - HALO);
    const k1 = Math.min(th, b + HALO);
    const pixels = await rows.get(k0 * f, k1 * f);
    let out: Buffer;
    try {
      out = await sharp(pixels, { raw: { width: src.width, height: (k1 - k0) * f, channels: 3 }, limitInputPixels: false }).resize(tw, k1 - k0, { fit: 'fill' }).raw().toBuffer();
    } catch (err) {
      throw new SlideError('E_SLIDE_READ', slide.image_id, slide.path, `thumbnail band ${a}-${b} from level ${level}: ${(err as Error).message}`, { cause: err });
    }
    yield { y: a, image: { width: tw, height: b - a, data: out.subarray((a - k0) * tw * 3, (b - k0) * tw * 3) } };
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
      this.data = next;
      this.start = y0 < this.end ? y0 : from;
      this.end = to;
    }
    return this.data.subarray((y0 - this.start) * rowBytes, (y1 - this.start) * rowBytes);
  }
}
