/**
 * A sample of tiles drawn across a job's slides (the int8 embedder's calibration and held-out tiles): each slide's
 * tiles are selected as the run selects them (thumbnail, background threshold, --max-tiles), then `perSlide` of them
 * are taken evenly spaced through the slide's row-major list (calibration from the even-numbered tiles, held-out
 * from the odd-numbered ones), so calibration and held-out tiles are distinct and both cover every slide. Positions first (thumbnails only), pixels on demand.
 */
import type { SlideTask, TileParams } from '../types.js';
import { openSlide } from './open.js';
import { resolveSlidePath } from './resolve.js';
import { thumbnailBands, thumbnailPlan } from './thumbnail-bands.js';
import { BandSelector } from './tile-select.js';

/** One sampled tile: its slide and level-0 position. */
export interface SampledTile {
  readonly image_id: string;
  readonly x: number;
  readonly y: number;
}

/** The two sets, each in slide order then position order. */
export interface TileSample {
  readonly calibration: readonly SampledTile[];
  readonly heldOut: readonly SampledTile[];
}

/** The kept tiles' positions of one slide, as the run selects them. */
async function keptPositions(task: SlideTask, params: TileParams): Promise<ReadonlyArray<readonly [number, number]>> {
  const slide = await openSlide(await resolveSlidePath(task.slidesDir, task.image_id), task.image_id, {});
  try {
    if (slide.width < params.tileSize || slide.height < params.tileSize) return [];
    const plan = thumbnailPlan(slide, params.downsample, { bandRows: Math.ceil(params.tileSize / params.downsample) + 1 });
    const sel = new BandSelector(slide.width, slide.height, params);
    for await (const band of thumbnailBands(slide, params.downsample, sel.cuts(), plan)) {
      sel.addBand(band.y, band.image);
      if (sel.done) break;
    }
    return sel.positions;
  } finally {
    await slide.close();
  }
}

/** `k` indexes spread evenly over 0..n-1 (all of them when k >= n). */
export function evenlySpaced(n: number, k: number): number[] {
  if (k >= n) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: k }, (_, i) => Math.floor(((i + 0.5) * n) / k));
}

/**
 * Up to `calibration` + `heldOut` tiles over `tasks` (a slide that cannot be opened or has no tiles is skipped:
 * the run will report it). Each slide gets an equal share of both; a slide with fewer tiles gives what it has.
 */
export async function sampleTiles(tasks: readonly SlideTask[], params: TileParams, calibration: number, heldOut: number): Promise<TileSample> {
  const slides = Math.max(1, tasks.length);
  const perCal = Math.ceil(calibration / slides);
  const perHeld = Math.ceil(heldOut / slides);
  const cal: SampledTile[] = [];
  const held: SampledTile[] = [];
  for (const task of tasks) {
    let positions: ReadonlyArray<readonly [number, number]>;
    try {
      positions = await keptPositions(task, params);
    } catch (err) {
      // The run reports the slide's error with its code; the sample just has one slide fewer.
      if ((err as { code?: unknown }).code === undefined) throw err;
      continue;
    }
    // Even-numbered kept tiles calibrate, odd-numbered ones are held out, each set spread evenly over its half:
    // the two never share a tile, and one set's size does not move the other's tiles.
    const pick = (parity: number, k: number): SampledTile[] => {
      const half = positions.filter((_, i) => i % 2 === parity);
      return evenlySpaced(half.length, k).map((i) => ({ image_id: task.image_id, x: half[i]![0], y: half[i]![1] }));
    };
    cal.push(...pick(0, Math.min(perCal, calibration - cal.length)));
    held.push(...pick(1, Math.min(perHeld, heldOut - held.length)));
  }
  return { calibration: cal, heldOut: held };
}

/** The sampled tiles' RGB pixels, read slide by slide at level 0 (`size` x `size`). */
export async function readSampledTiles(tasks: readonly SlideTask[], tiles: readonly SampledTile[], size: number): Promise<Uint8Array[]> {
  const byId = new Map(tasks.map((t) => [t.image_id, t]));
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < tiles.length) {
    const task = byId.get(tiles[i]!.image_id)!;
    const slide = await openSlide(await resolveSlidePath(task.slidesDir, task.image_id), task.image_id, {});
    try {
      for (; i < tiles.length && tiles[i]!.image_id === task.image_id; i++) out.push(await slide.readRegion(0, tiles[i]!.x, tiles[i]!.y, size, size));
    } finally {
      await slide.close();
    }
  }
  return out;
}
