/** The seed's tile-selection constants, as defaults for TileParams. */
import type { TileParams } from '../types.js';

export const DEFAULT_TILE_PARAMS: TileParams = {
  tileSize: 448,
  downsample: 16,
  backgroundThreshold: 190,
  maxBackground: 0.1,
  maxTiles: undefined,
};

/** Throws a RangeError (code E_TILE_PARAMS) for parameters the selection cannot honour. */
export function checkTileParams(p: TileParams): void {
  const bad = (msg: string): never => {
    throw Object.assign(new RangeError(`tile parameters: ${msg}`), { code: 'E_TILE_PARAMS' });
  };
  if (!Number.isInteger(p.tileSize) || p.tileSize < 1) bad(`tileSize must be a positive integer (got ${p.tileSize})`);
  if (!(p.downsample >= 1)) bad(`downsample must be >= 1 (got ${p.downsample})`);
  if (p.tileSize / p.downsample < 1) bad('a tile must cover at least one thumbnail pixel (tileSize >= downsample)');
  if (!(p.backgroundThreshold >= 0 && p.backgroundThreshold <= 255)) bad(`backgroundThreshold must be in 0..255 (got ${p.backgroundThreshold})`);
  if (!(p.maxBackground >= 0 && p.maxBackground <= 1)) bad(`maxBackground must be in 0..1 (got ${p.maxBackground})`);
  if (p.maxTiles !== undefined && !(Number.isInteger(p.maxTiles) && p.maxTiles >= 0)) bad(`maxTiles must be a non-negative integer (got ${p.maxTiles})`);
}
