/**
 * The 'stretch' band method of thumbnail-bands.ts: a level whose size is not a power-of-two multiple of the
 * thumbnail (a /16 level one row short, stretched; a /5.33 level shrunk 3x; a rounded level too wide to chunk for
 * libvips) is resampled by area averaging, separably: thumbnail pixel (i, j) is the mean of the source area
 * [i*fx, (i+1)*fx) x [j*fy, (j+1)*fy), partial source pixels weighted by their overlap. Each output pixel depends
 * only on its own source area, summed in a fixed order, so bands and column chunks of any size give the same bytes
 * as the whole image (`stretchWhole`): no halo, no whole read. Memory: one chunk of source rows, within bandBytes.
 */
import { SlideError } from './errors.js';
import type { SlideReader } from './reader.js';

/** For each of `m` outputs over `n` inputs: its first input and the weights of its inputs (summing to 1). */
export interface AreaWeights {
  readonly first: Int32Array;
  readonly weights: readonly Float64Array[];
}

/** Area-average weights from n source samples to m outputs (either way: shrink or stretch). */
export function areaWeights(n: number, m: number): AreaWeights {
  const f = n / m;
  const first = new Int32Array(m);
  const weights: Float64Array[] = [];
  for (let i = 0; i < m; i++) {
    const lo = i * f;
    const hi = Math.min(n, (i + 1) * f);
    const s0 = Math.floor(lo);
    const s1 = Math.max(s0 + 1, Math.ceil(hi));
    const w = new Float64Array(s1 - s0);
    for (let s = s0; s < s1; s++) w[s - s0] = (Math.min(hi, s + 1) - Math.max(lo, s)) / (hi - lo);
    first[i] = s0;
    weights.push(w);
  }
  return { first, weights };
}

/** Source span [from, to) the outputs [a, b) read. */
function span(w: AreaWeights, a: number, b: number): { from: number; to: number } {
  return { from: w.first[a]!, to: w.first[b - 1]! + w.weights[b - 1]!.length };
}

/**
 * Output rows [a, b) x columns [c0, c1) from RGB source pixels `src` (columns [sx0, ...), rows [sy0, ...), `sw`
 * wide), written into `out` (row stride `ow` pixels, at column c0 - oc0).
 */
function resample(src: Uint8Array, sw: number, sx0: number, sy0: number, xw: AreaWeights, yw: AreaWeights, a: number, b: number, c0: number, c1: number, out: Uint8Array, ow: number, oc0: number): void {
  const rows = span(yw, a, b);
  const cols = c1 - c0;
  // Horizontal pass: each source row of the span to `cols` outputs (float, 3 channels).
  const h = new Float64Array((rows.to - rows.from) * cols * 3);
  for (let r = rows.from; r < rows.to; r++) {
    const row = (r - sy0) * sw;
    const ho = (r - rows.from) * cols * 3;
    for (let i = c0; i < c1; i++) {
      const w = xw.weights[i]!;
      let o = (row + xw.first[i]! - sx0) * 3;
      let R = 0;
      let G = 0;
      let B = 0;
      for (let k = 0; k < w.length; k++, o += 3) {
        R += w[k]! * src[o]!;
        G += w[k]! * src[o + 1]!;
        B += w[k]! * src[o + 2]!;
      }
      const q = ho + (i - c0) * 3;
      h[q] = R;
      h[q + 1] = G;
      h[q + 2] = B;
    }
  }
  // Vertical pass, rounded to bytes.
  for (let j = a; j < b; j++) {
    const w = yw.weights[j]!;
    const base = (yw.first[j]! - rows.from) * cols * 3;
    const oo = ((j - a) * ow + (c0 - oc0)) * 3;
    for (let q = 0; q < cols * 3; q++) {
      let v = 0;
      for (let k = 0; k < w.length; k++) v += w[k]! * h[base + k * cols * 3 + q]!;
      out[oo + q] = Math.min(255, Math.max(0, Math.round(v)));
    }
  }
}

/** The whole resampled image from a whole RGB source (the reference the bands equal; tests). */
export function stretchWhole(src: Uint8Array, sw: number, sh: number, tw: number, th: number): Uint8Array {
  const out = new Uint8Array(tw * th * 3);
  resample(src, sw, 0, 0, areaWeights(sw, tw), areaWeights(sh, th), 0, th, 0, tw, out, tw, 0);
  return out;
}

/** Bands of a level's area-resampled thumbnail, read in column chunks of at most `bandBytes` of source pixels. */
export class StretchThumbnail {
  private readonly xw: AreaWeights;
  private readonly yw: AreaWeights;
  /** Largest source chunk read so far (bytes). */
  maxReadBytes = 0;

  constructor(
    private readonly slide: SlideReader,
    private readonly level: number,
    source: { readonly width: number; readonly height: number },
    private readonly tw: number,
    th: number,
    private readonly bandBytes: number,
  ) {
    this.xw = areaWeights(source.width, tw);
    this.yw = areaWeights(source.height, th);
  }

  /** Thumbnail columns per chunk for a band of rows [a, b), so its source fits bandBytes; E_SLIDE_TOO_LARGE if not one. */
  private chunkColumns(a: number, b: number): number {
    const rows = span(this.yw, a, b);
    const perColumn = (rows.to - rows.from) * 3 * (this.xw.weights[0]!.length + 1);
    const cols = Math.floor(this.bandBytes / perColumn);
    if (cols < 1) {
      throw new SlideError('E_SLIDE_TOO_LARGE', this.slide.image_id, this.slide.path, `thumbnail band ${a}-${b} of level ${this.level} needs ${perColumn} bytes of source per thumbnail column, over the ${this.bandBytes}-byte band limit`);
    }
    return Math.min(this.tw, cols);
  }

  /** Thumbnail rows [a, b), full width. */
  async band(a: number, b: number): Promise<Uint8Array> {
    const out = new Uint8Array(this.tw * (b - a) * 3);
    const rows = span(this.yw, a, b);
    const step = this.chunkColumns(a, b);
    for (let c0 = 0; c0 < this.tw; c0 += step) {
      const c1 = Math.min(this.tw, c0 + step);
      const cols = span(this.xw, c0, c1);
      const src = await this.slide.readRegion(this.level, cols.from, rows.from, cols.to - cols.from, rows.to - rows.from);
      this.maxReadBytes = Math.max(this.maxReadBytes, src.length);
      resample(src, cols.to - cols.from, cols.from, rows.from, this.xw, this.yw, a, b, c0, c1, out, this.tw, 0);
    }
    return out;
  }
}
