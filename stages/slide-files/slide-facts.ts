/**
 * Keyed reducer: per patient, what the per-slide output files need to know of each slide besides its tiles
 * (the bag has those): the slide's size, pyramid, scale when the file states it, and its mean colour histogram.
 * Built from the workers' SlideSummary (once per slide) and SlideHistogram records (one per share of a slide).
 * Small: the thumbnail pictures and tile positions of the summary are not kept.
 */
import { EngineError, type CombineFn } from '../../engine/types.js';
import type { SlideHistogram, SlideSummary } from '../types.js';

/** One slide, as the HDF5 and GeoJSON writers describe it. */
export interface SlideFacts {
  readonly image_id: string;
  readonly width: number;
  readonly height: number;
  /** Downsample of each pyramid level, level 0 first. */
  readonly levels: readonly number[];
  /** The level the tiles are read from (0 until the reader reads other levels). */
  readonly tileLevel: number;
  /** Level-0 microns per pixel and objective power, only when the slide file states them. */
  readonly mppX?: number;
  readonly mppY?: number;
  readonly magnification?: number;
  /** Where the scale came from ('aperio', 'ome', ...), and the file's format as detected ('svs', 'ome-tiff', ...). */
  readonly scaleSource?: string;
  readonly format: string;
  /** Tiles the histogram averages, and the mean histogram (4096 bins); undefined when no histogram arrived. */
  readonly histogramTiles: number;
  readonly histogram: Float32Array | undefined;
}

/** What the reducer takes: the results of a slide that describe it. */
export type SlideFactsInput = SlideSummary | SlideHistogram;

interface SlideAcc {
  summary: Omit<SlideFacts, 'histogram' | 'histogramTiles'> | undefined;
  tiles: number;
  sum: Float64Array | undefined;
  parts: Set<number>;
}

export type SlideFactsAcc = Map<string, SlideAcc>;

const STAGE = 'slide-facts';

function slideOf(acc: SlideFactsAcc, image_id: string): SlideAcc {
  let s = acc.get(image_id);
  if (s === undefined) {
    s = { summary: undefined, tiles: 0, sum: undefined, parts: new Set() };
    acc.set(image_id, s);
  }
  return s;
}

function add(acc: SlideFactsAcc, r: SlideFactsInput, key: string): SlideFactsAcc {
  const s = slideOf(acc, r.image_id);
  if (r.kind === 'summary') {
    const scale = r;
    s.summary = {
      image_id: r.image_id,
      width: r.width,
      height: r.height,
      levels: [...r.levels],
      tileLevel: scale.tileLevel,
      ...(scale.mppX !== undefined && { mppX: scale.mppX }),
      ...(scale.mppY !== undefined && { mppY: scale.mppY }),
      ...(scale.magnification !== undefined && { magnification: scale.magnification }),
      ...(scale.scaleSource !== undefined && { scaleSource: scale.scaleSource }),
      format: scale.format,
    };
    return acc;
  }
  if (s.parts.has(r.part)) throw new EngineError('E_DUPLICATE_TILE', STAGE, key, `slide ${r.image_id}: histogram part ${r.part} arrived twice`);
  s.parts.add(r.part);
  s.tiles += r.tiles;
  s.sum ??= new Float64Array(r.sum.length);
  if (s.sum.length !== r.sum.length) throw new EngineError('E_JOIN', STAGE, key, `slide ${r.image_id}: histograms of ${s.sum.length} and ${r.sum.length} bins`);
  for (let i = 0; i < r.sum.length; i++) s.sum[i] += r.sum[i]!;
  return acc;
}

function merge(into: SlideFactsAcc, from: SlideFactsAcc, key: string): void {
  for (const [image_id, s] of from) {
    if (s.summary !== undefined) slideOf(into, image_id).summary = s.summary;
    if (s.sum === undefined) continue;
    const t = slideOf(into, image_id);
    for (const part of s.parts) {
      if (t.parts.has(part)) throw new EngineError('E_DUPLICATE_TILE', STAGE, key, `slide ${image_id}: histogram part ${part} arrived twice`);
      t.parts.add(part);
    }
    t.tiles += s.tiles;
    t.sum ??= new Float64Array(s.sum.length);
    for (let i = 0; i < s.sum.length; i++) t.sum[i] += s.sum[i]!;
  }
}

/** The patient's slides (those whose summary arrived), sorted by image_id. */
function extract(acc: SlideFactsAcc): SlideFacts[] {
  const out: SlideFacts[] = [];
  for (const s of acc.values()) {
    if (s.summary === undefined) continue;
    const histogram = s.sum === undefined || s.tiles === 0 ? undefined : Float32Array.from(s.sum, (v) => v / s.tiles);
    out.push({ ...s.summary, histogramTiles: s.tiles, histogram });
  }
  return out.sort((a, b) => (a.image_id < b.image_id ? -1 : a.image_id > b.image_id ? 1 : 0));
}

/** Per patient: SlideFacts of each of its slides. */
export function combineSlideFacts(): CombineFn<SlideFactsInput, SlideFactsAcc, SlideFacts[]> {
  const keys = new WeakMap<SlideFactsAcc, string>();
  return {
    createAccumulator: (ctx) => {
      const acc: SlideFactsAcc = new Map();
      keys.set(acc, ctx.key);
      return acc;
    },
    addInput: (acc, r) => add(acc, r, keys.get(acc) ?? r.patient_id),
    mergeAccumulators: (accs, ctx) => {
      const into: SlideFactsAcc = new Map();
      keys.set(into, ctx.key);
      for (const a of accs) merge(into, a, ctx.key);
      return into;
    },
    extractOutput: extract,
  };
}
