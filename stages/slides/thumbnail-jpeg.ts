/**
 * The 1/ds thumbnail of a JPEG-tiled level straight from its compressed tiles, for slides with no usable
 * pyramid level: libjpeg decodes at 1/8 scale (shrink-on-load, which sharp uses when it resizes a JPEG by 8
 * or more; the DCT's DC terms, ~3x cheaper than a full decode), then libvips reduces by the rest (lanczos3).
 * The thumbnail is made in groups of GROUP_PX level rows (whole tile rows): per tile column, the group's tiles
 * are stacked into one JPEG (jpeg-stack.ts) and resized in one sharp call, several calls in flight.
 * Not bit-identical to resizing level 0 (thumbnail-bands.ts' exact path): each stack is resized on its own,
 * so pixels within ~3 thumbnail pixels of a tile column's side, or of a group's top and bottom, see the
 * stack's edge instead of the neighbouring tile. The groups are fixed (never sized by memory), so the result
 * is the same whatever the band cuts.
 */
import sharp from 'sharp';
import { SlideError } from './errors.js';
import { stackRuns, stackTiles, tileParts } from './jpeg-stack.js';
import type { JpegTiles, SlideReader } from './reader.js';

/** Level rows per group (rounded down to whole tile rows, at least one): a JPEG is at most 65,535 rows. */
export const GROUP_PX = 4096;
/** sharp calls in flight while a group is decoded (libuv runs them on its threads; 1 = one core). */
export const DEFAULT_THUMBNAIL_THREADS = 2;

/** True when the fast path can make this level's 1/ds thumbnail: whole thumbnail pixels per tile. */
export function jpegThumbnailApplies(jpeg: JpegTiles | undefined, ds: number): jpeg is JpegTiles {
  return jpeg !== undefined && Number.isInteger(ds) && ds >= 2 && jpeg.tileWidth % ds === 0 && jpeg.tileHeight % ds === 0;
}

/** The thumbnail of a JPEG-tiled level, group by group (rows of `groupRows` thumbnail rows, full width). */
export class JpegThumbnail {
  /** Thumbnail rows per group (the last group may be shorter). */
  readonly groupRows: number;
  /** Largest decoded buffer one sharp call returned so far (bytes): a counted bound for tests. */
  maxDecodedBytes = 0;
  private readonly tilesPerGroup: number;

  constructor(
    private readonly slide: SlideReader,
    private readonly jpeg: JpegTiles,
    private readonly ds: number,
    /** Thumbnail size. */
    private readonly width: number,
    private readonly height: number,
    private readonly threads = DEFAULT_THUMBNAIL_THREADS,
  ) {
    this.tilesPerGroup = Math.max(1, Math.floor(GROUP_PX / jpeg.tileHeight));
    this.groupRows = (this.tilesPerGroup * jpeg.tileHeight) / ds;
  }

  /** Thumbnail rows [g*groupRows, min((g+1)*groupRows, height)) as RGB, full thumbnail width. */
  async group(g: number): Promise<Uint8Array> {
    const { tileWidth: TW, tileHeight: TH } = this.jpeg;
    const y0 = g * this.groupRows;
    const rows = Math.min(this.groupRows, this.height - y0);
    if (rows < 1) throw new RangeError(`thumbnail group ${g} is past row ${this.height}`);
    const out = new Uint8Array(this.width * rows * 3);
    const j0 = g * this.tilesPerGroup;
    const j1 = Math.min(this.jpeg.down, j0 + Math.ceil((rows * this.ds) / TH));
    const cols = Math.min(this.jpeg.across, Math.ceil((this.width * this.ds) / TW));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < cols) await this.column(next++, j0, j1, out, rows);
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(this.threads, cols)) }, worker));
    return out;
  }

  /** Tile column c, tile rows j0..j1-1, into the group's buffer (cut to the thumbnail's width and the group's rows). */
  private async column(c: number, j0: number, j1: number, out: Uint8Array, rows: number): Promise<void> {
    const { tileWidth: TW, tileHeight: TH, across, photometric, tables } = this.jpeg;
    const pw = TW / this.ds;
    const ph = TH / this.ds;
    const x0 = c * pw;
    const w = Math.min(pw, this.width - x0);
    const parts = [];
    for (let j = j0; j < j1; j++) {
      const index = j * across + c;
      try {
        parts.push(tileParts(await this.jpeg.read(index), tables, TW, TH));
      } catch (err) {
        if (err instanceof SlideError) throw err; // E_TILE_CORRUPT from the backend's check, naming the tile
        throw new SlideError('E_SLIDE_READ', this.slide.image_id, this.slide.path, `JPEG tile ${index} (column ${c}, row ${j}): ${(err as Error).message}`, { cause: err });
      }
    }
    let row = 0; // group-relative thumbnail row of the run's top
    for (const run of stackRuns(parts)) {
      let data: Buffer;
      try {
        const r = await sharp(stackTiles(run, photometric, TH), { limitInputPixels: false }).resize(pw, run.length * ph, { fit: 'fill' }).raw().toBuffer({ resolveWithObject: true });
        if (r.info.channels !== 3 || r.info.width !== pw || r.info.height !== run.length * ph) throw new Error(`decoded ${r.info.width}x${r.info.height}x${r.info.channels}`);
        data = r.data;
      } catch (err) {
        throw new SlideError('E_SLIDE_READ', this.slide.image_id, this.slide.path, `thumbnail of JPEG tile column ${c}, rows ${j0 + row / ph}-${j0 + row / ph + run.length - 1}: ${(err as Error).message}`, { cause: err });
      }
      this.maxDecodedBytes = Math.max(this.maxDecodedBytes, data.length);
      const n = Math.min(run.length * ph, rows - row);
      for (let r = 0; r < n; r++) out.set(data.subarray(r * pw * 3, (r * pw + w) * 3), ((row + r) * this.width + x0) * 3);
      row += run.length * ph;
    }
  }
}
