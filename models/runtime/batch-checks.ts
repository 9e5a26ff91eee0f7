/** Small helpers the model stages share: abort checks and tile keys for error messages. */
import { EngineError, type StageContext } from '../../engine/types.js';
import type { Tile } from '../../stages/types.js';

/** `image_id@x,y`: how errors name a tile. */
export function tileKey(t: Tile): string {
  return `${t.image_id}@${t.x},${t.y}`;
}

/** Throws E_ABORTED when the run's signal is aborted. */
export function throwIfAborted(ctx: StageContext): void {
  if (ctx.signal.aborted) throw new EngineError('E_ABORTED', ctx.name, undefined, 'aborted', { cause: ctx.signal.reason });
}

/** Checks a batch's tiles all have `size*size*3` bytes and the same size; returns that size. */
export function batchTileSize(tiles: readonly Tile[], ctx: StageContext): number {
  const size = tiles[0]!.size;
  for (const t of tiles) {
    if (t.size !== size || t.pixels.length !== t.size * t.size * 3) {
      throw new EngineError(
        'E_TILE',
        ctx.name,
        tileKey(t),
        `tile of size ${t.size} with ${t.pixels.length} bytes in a batch of ${size}x${size} RGB tiles`,
      );
    }
  }
  return size;
}
