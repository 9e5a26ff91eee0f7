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
import type { RgbImage } from './slide-reader.js';

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
