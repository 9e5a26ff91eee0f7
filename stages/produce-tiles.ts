/** Stage: opens each slide, selects tiles on its thumbnail, and streams the kept tiles at level 0 as RGB. */
import type { ItemShare, Stage, StageContext } from '../engine/types.js';
import type { SlideSummary, SlideTask, Tile, TileParams } from './types.js';
import { SlideError } from './slides/errors.js';
import { openSlide, type OpenSlideOptions } from './slides/open.js';
import type { SlideReader } from './slides/reader.js';
import { resolveSlidePath } from './slides/resolve.js';
import { checkTileParams } from './slides/tile-params.js';
import { ReportPictures } from './report/pictures.js';
import { thumbnailBands, thumbnailPlan, type ThumbnailOptions, type ThumbnailStats } from './slides/thumbnail-bands.js';
import { BandSelector } from './slides/tile-select.js';

export interface ProduceTilesOptions {
  /** Called once per slide, after selection and before its first tile. */
  onSummary?(summary: SlideSummary): void;
  /** Backend choice and OpenSlide library path. */
  slide?: OpenSlideOptions;
  /** Most vertically adjacent kept tiles decoded in one read (one run); default 8 (~4.8 MB of RGB at 448 px). */
  bandTiles?: number;
  /**
   * The slide is shared with other workers (fan-out `share`): this worker reads only the runs of tiles it claims.
   * Every participant selects the same tiles; the summary and the selection counters are the first one's.
   */
  share?: ItemShare;
  /** The thumbnail path (exact or reduced-scale JPEG for single-level slides, band limit, threads). */
  thumbnail?: ThumbnailOptions;
  /** Filled with the thumbnail's counted sizes (largest read, largest band), over all slides. */
  thumbnailStats?: ThumbnailStats;
  /** Replaces openSlide (tests use it to watch close()). */
  open?(path: string, image_id: string, opts: OpenSlideOptions): Promise<SlideReader>;
}

export function produceTiles(params: TileParams, opts: ProduceTilesOptions = {}): Stage<SlideTask, Tile> {
  checkTileParams(params);
  const bandTiles = Math.max(1, opts.bandTiles ?? 8);
  const open = opts.open ?? openSlide;
  const joiner = (opts.share?.participant ?? 0) > 0;
  const onSummary = joiner ? undefined : opts.onSummary;
  return async function* produceTilesStage(source: AsyncIterable<SlideTask>, ctx: StageContext): AsyncIterable<Tile> {
    const custom = ctx.metrics.custom;
    for await (const task of source) {
      ctx.signal.throwIfAborted();
      const path = await resolveSlidePath(task.slidesDir, task.image_id);
      const slide = await open(path, task.image_id, opts.slide ?? {});
      // Budget tokens taken for tiles not yet handed downstream; given back if we stop early.
      let held = 0;
      try {
        const T = params.tileSize;
        if (slide.width < T || slide.height < T) {
          throw new SlideError('E_SLIDE_TOO_SMALL', task.image_id, path, `${slide.width}x${slide.height} is smaller than one ${T}x${T} tile`);
        }
        // Selection (and the report's pictures) band by band: one tile row of thumbnail at a time.
        const plan = thumbnailPlan(slide, params.downsample, { bandRows: Math.ceil(T / params.downsample) + 1, ...opts.thumbnail });
        const sel = new BandSelector(slide.width, slide.height, params);
        const pictures = onSummary === undefined ? undefined : new ReportPictures(plan.width, plan.height, REPORT_PICTURE_PX, params.backgroundThreshold);
        for await (const band of thumbnailBands(slide, params.downsample, sel.cuts(), plan, opts.thumbnailStats)) {
          if (!sel.done) sel.addBand(band.y, band.image);
          pictures?.add(band.y, band.image);
          if (sel.done && pictures === undefined) break;
        }
        if (!joiner) {
          custom.slides = (custom.slides ?? 0) + 1;
          custom.tiles_total = (custom.tiles_total ?? 0) + sel.total;
          custom.tiles_kept = (custom.tiles_kept ?? 0) + sel.positions.length;
        }
        if (onSummary !== undefined && pictures !== undefined) onSummary(await summarize(task, slide, plan.level, sel, pictures));
        const band = Math.max(1, Math.min(bandTiles, ctx.tiles.limit));
        for await (const run of claimedRuns(columnRuns(sel.positions, T, band), opts.share)) {
          for (let k = 0; k < run.length; k++) {
            await ctx.tiles.acquire(1, ctx.signal);
            held++;
          }
          const [x0, y0] = run[0]!;
          // One read of a column of tiles: each tile is a contiguous slice of the region, handed on without a copy
          // (a run's buffer lives until its last tile is dropped: at most `band` tiles' worth per run in flight).
          const pixels = await slide.readRegion(0, x0, y0, T, run.length * T);
          for (let k = 0; k < run.length; k++) {
            held--; // from here the consumer owns the token and releases it
            const tile = pixels.subarray(k * T * T * 3, (k + 1) * T * T * 3);
            yield { image_id: task.image_id, patient_id: task.patient_id, image_num: task.image_num, x: run[k]![0], y: run[k]![1], size: T, pixels: tile };
          }
        }
      } finally {
        if (held > 0) ctx.tiles.release(held);
        await slide.close();
      }
    }
  };
}

/** The runs this worker reads: all of them in order, or, when the slide is shared, the ones it claims. */
async function* claimedRuns<T>(runs: readonly T[], share: ItemShare | undefined): AsyncGenerator<T> {
  if (share === undefined) {
    yield* runs;
    return;
  }
  // One claim ahead: the next run's index arrives while this run's tiles are read.
  let next = share.claim(runs.length);
  for (;;) {
    const i = await next;
    if (i >= runs.length) return;
    next = share.claim(runs.length);
    yield runs[i]!;
  }
}

/**
 * Groups row-major positions into runs of vertically adjacent tiles, at most `max` long, read in stripes of `max`
 * tile rows: stripe by stripe, column by column within a stripe. Column runs, because a column of tiles is one
 * contiguous buffer (each tile a slice of it), where a row of tiles would have to be copied apart row by row.
 */
export function columnRuns(positions: ReadonlyArray<readonly [number, number]>, T: number, max: number): Array<Array<readonly [number, number]>> {
  const stripe = (p: readonly [number, number]): number => Math.floor(p[1] / T / max);
  const sorted = [...positions].sort((a, b) => stripe(a) - stripe(b) || a[0] - b[0] || a[1] - b[1]);
  const out: Array<Array<readonly [number, number]>> = [];
  let cur: Array<readonly [number, number]> = [];
  for (const p of sorted) {
    const last = cur[cur.length - 1];
    if (last !== undefined && (last[0] !== p[0] || last[1] + T !== p[1] || stripe(last) !== stripe(p))) {
      out.push(cur);
      cur = [];
    }
    cur.push(p);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/**
 * Longest side of the thumbnail and mask pictures a summary carries. The report shows them 360 px wide;
 * the parent keeps every slide's pictures until it writes the report, so they stay small (hundreds of
 * slides at 1024 px of textured PNG would hold hundreds of MB).
 */
export const REPORT_PICTURE_PX = 480;

async function summarize(task: SlideTask, slide: SlideReader, level: number, sel: BandSelector, pictures: ReportPictures): Promise<SlideSummary> {
  // Pictures for the report only: at most REPORT_PICTURE_PX a side (the 1/16 thumbnail of a 100k slide is 6k a side).
  const { thumbnailPng, maskPng } = await pictures.png();
  return {
    kind: 'summary',
    image_id: task.image_id,
    patient_id: task.patient_id,
    path: slide.path,
    backend: slide.backend,
    width: slide.width,
    height: slide.height,
    levels: slide.levels.map((l) => l.downsample),
    thumbnailLevel: level,
    tileLevel: 0,
    format: slide.facts?.format ?? slide.backend,
    ...scaleOf(slide),
    tiles_total: sel.total,
    tiles_kept: sel.positions.length,
    positions: sel.positions,
    thumbnailPng,
    maskPng,
  };
}

/** The slide's stated scale (and channel mapping), only the fields it has (undefined fields would still cross v8 serialization as keys). */
function scaleOf(slide: SlideReader): Pick<SlideSummary, 'mppX' | 'mppY' | 'magnification' | 'scaleSource' | 'channelMapping'> {
  const f = slide.facts;
  if (f === undefined) return {};
  const out: { mppX?: number; mppY?: number; magnification?: number; scaleSource?: string; channelMapping?: string } = {};
  if (f.mppX !== undefined) out.mppX = f.mppX;
  if (f.mppY !== undefined) out.mppY = f.mppY;
  if (f.magnification !== undefined) out.magnification = f.magnification;
  if (f.scaleSource !== undefined && (f.mppX !== undefined || f.magnification !== undefined)) out.scaleSource = f.scaleSource;
  if (f.channelMapping !== undefined) out.channelMapping = f.channelMapping;
  return out;
}
