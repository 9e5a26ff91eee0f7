/**
 * The slide-reader interface every backend implements (backend-sharp.ts: libvips for TIFF-family files;
 * backend-openslide.ts: the formats only OpenSlide reads; backend-dicom.ts: DICOM WSI), and the pure pyramid helpers they share.
 * Choosing a backend for a file is open.ts's job; this file imports no backend.
 */

export interface SlideLevel {
  readonly width: number;
  readonly height: number;
  /** Level-0 size divided by this level's size (mean of x and y). */
  readonly downsample: number;
}

/** An RGB uint8 image, row-major, `width*height*3` bytes. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/** Which backend reads a slide (one backend-*.ts each). */
export type SlideBackend = 'sharp' | 'openslide' | 'dicom';

/**
 * What a backend knows of the file beyond its pixels: its format, and its scale when the file states it
 * (never guessed). Goes into the slide's summary and report.json (stages/types.ts SlideSummary).
 */
export interface SlideFacts {
  /** e.g. 'svs', 'ome-tiff', 'qptiff', 'tiff', 'bigtiff', 'dicom', 'ndpi' (README.md, Formats). */
  readonly format: string;
  /** Level-0 microns per pixel across / down. */
  readonly mppX?: number;
  readonly mppY?: number;
  /** Objective magnification (20, 40...). */
  readonly magnification?: number;
  /** Where the scale came from: 'aperio', 'ome', 'tiff-resolution', 'dicom', 'openslide'. */
  readonly scaleSource?: string;
  /** Only for a non-brightfield image let through (--allow-non-rgb): how its samples are mapped to 8-bit RGB (brightfield.ts). */
  readonly channelMapping?: string;
}

export interface SlideReader {
  readonly image_id: string;
  readonly path: string;
  readonly backend: SlideBackend;
  /** The file's format and scale (absent in test doubles: the summary then names the backend). */
  readonly facts?: SlideFacts;
  /** Level-0 size. */
  readonly width: number;
  readonly height: number;
  /** Pyramid levels, level 0 first, downsample strictly increasing. */
  readonly levels: readonly SlideLevel[];
  /** RGB pixels of a region given in the level's own pixel coordinates (must lie inside the level). */
  readRegion(level: number, x: number, y: number, width: number, height: number): Promise<Uint8Array>;
  /**
   * The slide at 1/downsample: floor(width/ds) x floor(height/ds), resized from the pyramid level closest
   * at or above that resolution (never level 0 when a suitable level exists). Returns the level used.
   */
  thumbnail(downsample: number): Promise<{ image: RgbImage; level: number }>;
  /**
   * How a level is stored, where the backend knows (sharp: our TIFF parse): the compressed JPEG tiles, which
   * the thumbnail of a slide with no usable pyramid level decodes at reduced scale, and the decoder's unit.
   */
  storage?(level: number): LevelStorage | undefined;
  close(): Promise<void>;
}

/** A level's storage (see SlideReader.storage). */
export interface LevelStorage {
  /** RGB bytes a decoder holds to read any pixel of the level: one tile, or one strip (full width x rows per strip). */
  readonly unitBytes: number;
  /** The level's JPEG tiles, when it is JPEG-tiled (8-bit, 3-channel, RGB or YCbCr). */
  readonly jpeg?: JpegTiles;
}

/** A JPEG-tiled level: its tile grid and each tile's compressed stream. */
export interface JpegTiles {
  readonly tileWidth: number;
  readonly tileHeight: number;
  /** Tiles across the level (row-major index = row * across + column). */
  readonly across: number;
  readonly down: number;
  /** TIFF photometric: 2 RGB (Aperio's RGB-in-JPEG), 6 YCbCr. */
  readonly photometric: number;
  /** The level's shared JPEGTables (quantization and Huffman tables), if any. */
  readonly tables?: Uint8Array;
  /** The tile's stream as stored (abbreviated when `tables` is set). */
  read(index: number): Promise<Buffer>;
}

/** A level may be up to this fraction coarser than asked (levels are floor-rounded sizes). */
export const LEVEL_TOLERANCE = 0.01;

/** Index of the coarsest level whose downsample is <= ds (within LEVEL_TOLERANCE); 0 when none is. */
export function chooseLevel(levels: readonly SlideLevel[], ds: number): number {
  let best = 0;
  levels.forEach((l, i) => {
    if (l.downsample <= ds * (1 + LEVEL_TOLERANCE) && l.downsample >= levels[best]!.downsample) best = i;
  });
  return best;
}

/**
 * The part of a level that the thumbnail covers: level-0 [0, tw*ds) x [0, th*ds) in the level's pixels
 * (per-axis scale, rounded, at most the level). Thumbnail pixel i then averages level-0 columns
 * i*ds .. (i+1)*ds-1, which is what the tile-coverage rule in tile-select.ts assumes.
 */
export function thumbnailSource(slideW: number, slideH: number, level: SlideLevel, tw: number, th: number, ds: number): { width: number; height: number } {
  return {
    width: Math.max(1, Math.min(level.width, Math.round((tw * ds * level.width) / slideW))),
    height: Math.max(1, Math.min(level.height, Math.round((th * ds * level.height) / slideH))),
  };
}

/** What the level finder needs of a TIFF page. */
export interface PageInfo {
  readonly width: number;
  readonly height: number;
  readonly tiled: boolean;
}

/**
 * Which pages (by index) are pyramid levels. Page 0 is level 0. Another page is a level when it is tiled
 * if page 0 is, its height matches height0 / (width0 / width) within 1 pixel or 1%, and it is smaller
 * than the previous level. This leaves out an SVS's thumbnail (strip), label and macro (wrong aspect).
 */
export function findLevels(pages: readonly PageInfo[]): number[] {
  const p0 = pages[0];
  if (p0 === undefined) return [];
  const out = [0];
  let prevDs = 1;
  for (let i = 1; i < pages.length; i++) {
    const p = pages[i]!;
    if (p.width < 1 || p.height < 1) continue;
    if (p0.tiled && !p.tiled) continue;
    const ds = p0.width / p.width;
    const predictedH = p0.height / ds;
    if (Math.abs(predictedH - p.height) > Math.max(1, 0.01 * p.height)) continue;
    if (ds <= prevDs * 1.001) continue;
    out.push(i);
    prevDs = ds;
  }
  return out;
}
