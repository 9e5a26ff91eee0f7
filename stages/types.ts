/**
 * The records that flow through the pipeline's edges. Stages in this folder are written against
 * these; keep them small and plain (they cross process boundaries with v8 serialization).
 */
import type { SlideBackend, SlideFacts } from './slides/reader.js';

/** One CSV row, validated. `line` is the 1-based line number in the file (header is line 1). */
export interface CsvRow {
  readonly file: string;
  readonly line: number;
  readonly image_id: string;
  /** An int64, exactly: its canonical decimal string (no leading zeros; a Number would lose digits past 2^53). */
  readonly center_id: string;
  readonly patient_id: string;
  readonly image_num: number;
  /** Absent when the CSV has no label column (inference). */
  readonly label?: string;
  /** The row's raw fields in header order, as read (the split command writes them back unchanged). */
  readonly raw: readonly string[];
}

/** What a worker needs to tile one slide. */
export interface SlideTask {
  readonly image_id: string;
  readonly patient_id: string;
  readonly image_num: number;
  /** The slides folder; the reader resolves `<slidesDir>/<image_id>.<ext>` safely. */
  readonly slidesDir: string;
  /** The slide file's size and mtime when the task was made: a changed file invalidates its checkpoint. */
  readonly fileStamp?: string;
  /** Why the slide's file could not be found when the task was made (E_SLIDE_MISSING, ...): it fails without a worker. */
  readonly unresolved?: Error;
}

/** Tile selection parameters; defaults are the seed's constants (see stages/slides/tile-params.ts). */
export interface TileParams {
  /** Tile side at level 0, in pixels (448). */
  readonly tileSize: number;
  /** Thumbnail downsample factor (16). */
  readonly downsample: number;
  /** A thumbnail pixel is background when R, G and B are all > this (190). */
  readonly backgroundThreshold: number;
  /** A tile is kept when at most this fraction of its thumbnail pixels is background (0.1). */
  readonly maxBackground: number;
  /** Keep at most this many tiles per slide, in row-major order (undefined: all). */
  readonly maxTiles?: number;
}

/** One tile of RGB uint8 pixels, `size*size*3` bytes, row-major, no alpha. */
export interface Tile {
  readonly image_id: string;
  readonly patient_id: string;
  readonly image_num: number;
  /** Level-0 position of the tile's top-left corner. */
  readonly x: number;
  readonly y: number;
  readonly size: number;
  readonly pixels: Uint8Array;
}

/**
 * One output of the embedder for a group of tiles, packed: tile i's row is rows[i*dim, (i+1)*dim). `name` is the
 * ONNX output's name (EfficientNet-B0 / ResNet50-trunc: 'avg' and 'max', global average and max pooling; a ViT:
 * 'cls', the class token after the final norm, and 'mean', the mean of the patch tokens).
 */
export interface EmbeddingOutput {
  readonly name: string;
  readonly dim: number;
  readonly rows: Float32Array;
}

/**
 * Embeddings of a group of tiles of one slide: tile i is (x[i], y[i]); `outputs` holds one packed block per
 * embedder output, in the model's output order (the same names and widths for every group of a run). A worker sends
 * one of these per group of tiles, not one record per tile: per record, the parent's receive, staging and combine
 * cost more than the 10 KB of floats (bench/RESULTS.md, decision 27).
 */
export interface TileEmbeddings {
  readonly kind: 'embeddings';
  readonly image_id: string;
  readonly patient_id: string;
  readonly image_num: number;
  readonly x: readonly number[];
  readonly y: readonly number[];
  readonly outputs: readonly EmbeddingOutput[];
}

/** Colour histogram of one normalized tile: 4096 bins (r>>4)*256 + (g>>4)*16 + (b>>4), summing to 1. */
export interface TileHistogram {
  readonly kind: 'histogram';
  readonly image_id: string;
  readonly patient_id: string;
  readonly x: number;
  readonly y: number;
  readonly histogram: Float32Array;
}

/**
 * One slide's colour histograms added up (float64, in the slide's tile order): the per-patient mean is the
 * sum of these over the patient's slides divided by their tiles. Summing in the worker (a partial combine)
 * sends 32 KB per slide to the parent instead of 16 KB per tile.
 */
export interface SlideHistogram {
  readonly kind: 'slide-histogram';
  readonly image_id: string;
  readonly patient_id: string;
  /** Which share of the slide: 0, or 1, 2... for the workers that joined a shared slide (each sends its own sum). */
  readonly part: number;
  readonly tiles: number;
  readonly sum: Float64Array;
}

/** Inside a worker only: one more tile's histogram was added (ReleaseTiles counts it and drops it). */
export interface HistogramTick {
  readonly kind: 'histogram-tick';
}

/**
 * What the tile selection found for one slide: for the run report (and its thumbnail picture); with the reader's
 * SlideFacts: the format, and the scale (MPP, magnification) when the file states it.
 */
export interface SlideSummary extends SlideFacts {
  readonly kind: 'summary';
  readonly image_id: string;
  readonly patient_id: string;
  readonly path: string;
  readonly backend: SlideBackend;
  readonly width: number;
  readonly height: number;
  /** Downsample factor of each pyramid level, level 0 first. */
  readonly levels: readonly number[];
  /** Which pyramid level the thumbnail was read from. */
  readonly thumbnailLevel: number;
  /** Which pyramid level the tiles are read from (0: full resolution). */
  readonly tileLevel: number;
  /** Tiles on the grid (full tiles only) and tiles kept by the background rule (after max tiles). */
  readonly tiles_total: number;
  readonly tiles_kept: number;
  /** Level-0 positions of the kept tiles, row-major. */
  readonly positions: ReadonlyArray<readonly [x: number, y: number]>;
  /** The thumbnail as PNG, with its background mask as PNG (white = background); for the report. */
  readonly thumbnailPng: Uint8Array;
  readonly maskPng: Uint8Array;
}

/** Everything a worker streams back for one slide. */
export type SlideResult = TileEmbeddings | SlideHistogram | SlideSummary;

/** A patient's tabular data, combined over its CSV rows. */
export interface PatientData {
  readonly patient_id: string;
  /** An int64 as its canonical decimal string (see CsvRow). */
  readonly center_id: string;
  readonly label?: string;
  /** The patient's image_ids in image_num order. */
  readonly image_ids: readonly string[];
  readonly lines: readonly number[];
}

/** Where one tile of a bag came from. */
export interface TileRef {
  readonly image_id: string;
  readonly image_num: number;
  readonly x: number;
  readonly y: number;
}

/**
 * A patient's ragged bag of tile embeddings. Tiles are sorted by (image_num, y, x). The rows may live
 * in memory or in a spill file, so they are read as a stream; `dispose` frees the spill file.
 */
export interface EmbeddingBag {
  readonly patient_id: string;
  /** The embedder's outputs, in model order, with their widths (EfficientNet-B0: avg 1280, max 1280). */
  readonly outputs: readonly EmbeddingOutputSpec[];
  readonly tiles: readonly TileRef[];
  /** One output's rows in `tiles` order, in chunks of whole rows (row-major float32; a chunk may be one row). */
  rows(output: string): AsyncIterable<Float32Array>;
  dispose(): Promise<void>;
}

/** An embedder output's name and width (floats per tile). */
export interface EmbeddingOutputSpec {
  readonly name: string;
  readonly dim: number;
}

/** A patient's mean colour histogram (4096 bins summing to 1) and the number of tiles it averages. */
export interface MeanHistogram {
  readonly patient_id: string;
  readonly tiles: number;
  readonly histogram: Float32Array;
}
