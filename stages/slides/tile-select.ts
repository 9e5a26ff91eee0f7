/**
 * The seed's tile-selection rule, pure (no image I/O).
 *
 * Geometry, with ds = downsample and T = tileSize (level-0 pixels):
 * - the thumbnail is floor(W/ds) x floor(H/ds) pixels;
 * - tiles sit on a grid anchored at (0,0): x = i*T, y = j*T; only full tiles (x+T <= W, y+T <= H) count;
 * - the tile at (x,y) covers thumbnail columns floor(x/ds) .. floor((x+T)/ds)-1, and rows
 *   floor(y/ds) .. floor((y+T)/ds)-1 (with ds=16, T=448: 28 x 28 = 784 pixels);
 * - a thumbnail pixel is background when R, G and B are all > backgroundThreshold;
 * - a tile is kept when background pixels <= maxBackground * covered pixels (a 1e-9 slack absorbs
 *   float error, so 78/784 is kept and 79/784 dropped at 10%);
 * - kept tiles are listed row-major and cut to maxTiles (deterministic).
 */
import type { TileParams } from '../types.js';
import type { RgbImage } from './reader.js';

export interface TileSelection {
  /** Full tiles on the grid. */
  readonly total: number;
  /** Level-0 positions of the kept tiles, row-major, after maxTiles. */
  readonly positions: Array<readonly [x: number, y: number]>;
  /** 1 where the thumbnail pixel is background, row-major (for the report picture). */
  readonly mask: Uint8Array;
}

/** Background mask of an RGB thumbnail: 1 when R, G and B are all > threshold. */
export function backgroundMask(thumb: RgbImage, threshold: number): Uint8Array {
  const n = thumb.width * thumb.height;
  const mask = new Uint8Array(n);
  const d = thumb.data;
  for (let p = 0, o = 0; p < n; p++, o += 3) mask[p] = d[o]! > threshold && d[o + 1]! > threshold && d[o + 2]! > threshold ? 1 : 0;
  return mask;
}

/** Selects tiles of a width x height (level 0) slide from its thumbnail. */
export function selectTiles(width: number, height: number, thumb: RgbImage, p: TileParams): TileSelection {
  const ds = p.downsample;
  const T = p.tileSize;
  const tw = Math.floor(width / ds);
  const th = Math.floor(height / ds);
  if (thumb.width !== tw || thumb.height !== th) throw new RangeError(`thumbnail is ${thumb.width}x${thumb.height}, expected ${tw}x${th} (floor of ${width}x${height} / ${ds})`);
  const mask = backgroundMask(thumb, p.backgroundThreshold);
  // Summed-area table: background count of any thumbnail rectangle in O(1).
  const sat = new Uint32Array((tw + 1) * (th + 1));
  for (let y = 0; y < th; y++) {
    let row = 0;
    for (let x = 0; x < tw; x++) {
      row += mask[y * tw + x]!;
      sat[(y + 1) * (tw + 1) + x + 1] = sat[y * (tw + 1) + x + 1]! + row;
    }
  }
  const cols = Math.floor(width / T);
  const rows = Math.floor(height / T);
  const positions: Array<readonly [number, number]> = [];
  const limit = p.maxTiles ?? Infinity;
  for (let j = 0; j < rows && positions.length < limit; j++) {
    const y = j * T;
    const r0 = Math.floor(y / ds);
    const r1 = Math.floor((y + T) / ds); // exclusive
    for (let i = 0; i < cols && positions.length < limit; i++) {
      const x = i * T;
      const c0 = Math.floor(x / ds);
      const c1 = Math.floor((x + T) / ds);
      const covered = (r1 - r0) * (c1 - c0);
      const bg = sat[r1 * (tw + 1) + c1]! - sat[r0 * (tw + 1) + c1]! - sat[r1 * (tw + 1) + c0]! + sat[r0 * (tw + 1) + c0]!;
      if (covered > 0 && bg <= p.maxBackground * covered + 1e-9) positions.push([x, y]);
    }
  }
  return { total: cols * rows, positions, mask };
}

/**
 * The same rule as selectTiles, fed the thumbnail in horizontal bands (top to bottom, contiguous, any
 * heights): memory is O(thumbnail width), never the whole mask. Tile row j is decided as soon as the bands
 * reach its last thumbnail row, floor((j+1)*T/ds).
 */
export class BandSelector {
  /** Full tiles on the grid. */
  readonly total: number;
  /** Level-0 positions of the kept tiles so far, row-major, at most maxTiles. */
  readonly positions: Array<readonly [x: number, y: number]> = [];
  /** Thumbnail width and height. */
  readonly width: number;
  readonly height: number;
  private readonly cols: number;
  private readonly rows: number;
  private readonly limit: number;
  /** Next thumbnail row expected, and the next tile row to decide. */
  private nextY = 0;
  private nextRow = 0;
  /** Background count per thumbnail column over the current tile row's thumbnail rows so far. */
  private readonly colBg: Uint32Array;

  constructor(slideWidth: number, slideHeight: number, private readonly p: TileParams) {
    this.width = Math.floor(slideWidth / p.downsample);
    this.height = Math.floor(slideHeight / p.downsample);
    this.cols = Math.floor(slideWidth / p.tileSize);
    this.rows = Math.floor(slideHeight / p.tileSize);
    this.total = this.cols * this.rows;
    this.limit = p.maxTiles ?? Infinity;
    this.colBg = new Uint32Array(this.width);
  }

  /** Thumbnail rows [start, end) that tile row j covers. */
  tileRowSpan(j: number): [start: number, end: number] {
    return [Math.floor((j * this.p.tileSize) / this.p.downsample), Math.floor(((j + 1) * this.p.tileSize) / this.p.downsample)];
  }

  /**
   * Band cuts (strictly increasing thumbnail rows, 0 .. height) with one band per tile row, plus one for the
   * rows below the last full tile row; empty tile rows (T < ds) share a band.
   */
  cuts(): number[] {
    const out = [0];
    for (let j = 0; j < this.rows; j++) {
      const end = this.tileRowSpan(j)[1];
      if (end > out[out.length - 1]!) out.push(end);
    }
    if (this.height > out[out.length - 1]!) out.push(this.height);
    return out;
  }

  /** True once every tile row is decided or maxTiles is reached: later bands only matter for pictures. */
  get done(): boolean {
    return this.nextRow >= this.rows || this.positions.length >= this.limit;
  }

  /** Takes thumbnail rows y .. y+band.height-1 (the next ones). */
  addBand(y: number, band: RgbImage): void {
    if (y !== this.nextY || band.width !== this.width || y + band.height > this.height) {
      throw new RangeError(`band at row ${y} (${band.width}x${band.height}) does not follow row ${this.nextY} of a ${this.width}x${this.height} thumbnail`);
    }
    const t = this.p.backgroundThreshold;
    const d = band.data;
    const w = this.width;
    for (let r = 0; r < band.height; r++) {
      const row = y + r;
      // Skip tile rows that end at or before this row (empty ones when T < ds).
      this.decideRowsEndingBy(row);
      if (this.done) break;
      const [start] = this.tileRowSpan(this.nextRow);
      if (row < start) continue;
      for (let x = 0, o = r * w * 3; x < w; x++, o += 3) if (d[o]! > t && d[o + 1]! > t && d[o + 2]! > t) this.colBg[x]!++;
    }
    this.nextY = y + band.height;
    this.decideRowsEndingBy(this.nextY);
  }

  /** Decides every tile row whose thumbnail rows all lie above `y`. */
  private decideRowsEndingBy(y: number): void {
    while (!this.done && this.tileRowSpan(this.nextRow)[1] <= y) {
      const [r0, r1] = this.tileRowSpan(this.nextRow);
      const T = this.p.tileSize;
      const ds = this.p.downsample;
      const yPos = this.nextRow * T;
      for (let i = 0; i < this.cols && this.positions.length < this.limit; i++) {
        const c0 = Math.floor((i * T) / ds);
        const c1 = Math.floor(((i + 1) * T) / ds);
        const covered = (r1 - r0) * (c1 - c0);
        let bg = 0;
        for (let x = c0; x < c1; x++) bg += this.colBg[x]!;
        if (covered > 0 && bg <= this.p.maxBackground * covered + 1e-9) this.positions.push([i * T, yPos]);
      }
      this.colBg.fill(0);
      this.nextRow++;
    }
  }
}
