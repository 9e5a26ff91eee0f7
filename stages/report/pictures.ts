/**
 * The report's thumbnail and background-mask pictures, built from the thumbnail's bands as they stream by
 * (box average per picture pixel), so they need O(picture) memory, not the whole thumbnail.
 */
import sharp from 'sharp';
import type { RgbImage } from '../slides/reader.js';

/** Picture size for a w x h image fit inside `max` a side, never enlarged (sharp's `fit: 'inside'` size). */
export function pictureSize(w: number, h: number, max: number): { width: number; height: number } {
  if (w <= max && h <= max) return { width: w, height: h };
  return w >= h ? { width: max, height: Math.max(1, Math.round((h * max) / w)) } : { width: Math.max(1, Math.round((w * max) / h)), height: max };
}

export class ReportPictures {
  readonly width: number;
  readonly height: number;
  /** Picture column of each thumbnail column; thumbnail pixels per picture column / row. */
  private readonly colOf: Uint32Array;
  private readonly colCount: Uint32Array;
  private readonly rowCount: Uint32Array;
  private readonly rgbSum: Uint32Array;
  private readonly bgSum: Uint32Array;

  constructor(
    thumbWidth: number,
    private readonly thumbHeight: number,
    maxSide: number,
    private readonly threshold: number,
  ) {
    ({ width: this.width, height: this.height } = pictureSize(thumbWidth, thumbHeight, maxSide));
    this.colOf = new Uint32Array(thumbWidth);
    this.colCount = new Uint32Array(this.width);
    for (let x = 0; x < thumbWidth; x++) {
      const c = Math.floor((x * this.width) / thumbWidth);
      this.colOf[x] = c;
      this.colCount[c]!++;
    }
    this.rowCount = new Uint32Array(this.height);
    for (let y = 0; y < thumbHeight; y++) this.rowCount[this.rowOf(y)]!++;
    this.rgbSum = new Uint32Array(this.width * this.height * 3);
    this.bgSum = new Uint32Array(this.width * this.height);
  }

  private rowOf(y: number): number {
    return Math.floor((y * this.height) / this.thumbHeight);
  }

  /** Adds thumbnail rows y .. y+band.height-1. */
  add(y: number, band: RgbImage): void {
    const d = band.data;
    const t = this.threshold;
    for (let r = 0; r < band.height; r++) {
      const base = this.rowOf(y + r) * this.width;
      for (let x = 0, o = r * band.width * 3; x < band.width; x++, o += 3) {
        const p = base + this.colOf[x]!;
        const R = d[o]!;
        const G = d[o + 1]!;
        const B = d[o + 2]!;
        this.rgbSum[p * 3] += R;
        this.rgbSum[p * 3 + 1] += G;
        this.rgbSum[p * 3 + 2] += B;
        if (R > t && G > t && B > t) this.bgSum[p]!++;
      }
    }
  }

  /** The thumbnail picture (RGB, box average) and the mask picture (grey: 255 where most pixels are background). */
  async png(): Promise<{ thumbnailPng: Uint8Array; maskPng: Uint8Array }> {
    const rgb = new Uint8Array(this.rgbSum.length);
    const mask = new Uint8Array(this.bgSum.length);
    for (let py = 0; py < this.height; py++) {
      for (let px = 0; px < this.width; px++) {
        const p = py * this.width + px;
        const n = this.rowCount[py]! * this.colCount[px]!;
        if (n === 0) continue;
        for (let c = 0; c < 3; c++) rgb[p * 3 + c] = Math.round(this.rgbSum[p * 3 + c]! / n);
        mask[p] = this.bgSum[p]! * 2 >= n ? 255 : 0;
      }
    }
    const thumbnailPng = await sharp(rgb, { raw: { width: this.width, height: this.height, channels: 3 } }).png().toBuffer();
    const maskPng = await sharp(mask, { raw: { width: this.width, height: this.height, channels: 1 } }).png().toBuffer();
    return { thumbnailPng: new Uint8Array(thumbnailPng), maskPng: new Uint8Array(maskPng) };
  }
}
