/**
 * The 1/ds thumbnail of a level-0 source with no JPEG tiles to shrink on load (strip TIFFs, LZW/deflate tiles),
 * when an exact resize would have to re-read the slide once per column chunk: full-width rows are read once, a few
 * thumbnail rows at a time (at most `budget` bytes), and each ds x ds block is averaged (a box filter, rounded).
 * Not bit-identical to libvips' resize (box shrink then lanczos3): `exact: true` keeps the chunked exact path.
 */
import type { SlideReader } from './reader.js';

/** Thumbnail rows of a level-0 box downscale, in groups of `groupRows` rows (full thumbnail width). */
export class BoxThumbnail {
  readonly groupRows: number;

  constructor(
    private readonly slide: SlideReader,
    private readonly ds: number,
    private readonly width: number,
    private readonly height: number,
    budget: number,
  ) {
    this.groupRows = Math.max(1, Math.floor(budget / (width * ds * ds * 3)));
  }

  /** Thumbnail rows [g*groupRows, min((g+1)*groupRows, height)). */
  async group(g: number): Promise<Uint8Array> {
    const ds = this.ds;
    const tw = this.width;
    const y0 = g * this.groupRows;
    const rows = Math.min(this.groupRows, this.height - y0);
    if (rows < 1) throw new RangeError(`thumbnail group ${g} is past row ${this.height}`);
    const W = tw * ds;
    const src = await this.slide.readRegion(0, 0, y0 * ds, W, rows * ds);
    const out = new Uint8Array(tw * rows * 3);
    const sums = new Uint32Array(tw * 3);
    const n = ds * ds;
    for (let r = 0; r < rows; r++) {
      sums.fill(0);
      for (let k = 0; k < ds; k++) {
        const row = (r * ds + k) * W * 3;
        for (let x = 0, o = row; x < tw; x++) {
          let a = 0;
          let b = 0;
          let c = 0;
          for (let i = 0; i < ds; i++, o += 3) {
            a += src[o]!;
            b += src[o + 1]!;
            c += src[o + 2]!;
          }
          sums[x * 3] += a;
          sums[x * 3 + 1] += b;
          sums[x * 3 + 2] += c;
        }
      }
      const base = r * tw * 3;
      for (let i = 0; i < tw * 3; i++) out[base + i] = Math.floor((sums[i]! + n / 2) / n);
    }
    return out;
  }
}
