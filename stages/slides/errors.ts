/** Per-slide errors: each carries a `code` and names the slide (image_id) and its path. */

export type SlideErrorCode =
  | 'E_BAD_IMAGE_ID' // the image_id would resolve outside the slides folder
  | 'E_SLIDE_MISSING' // no file for the image_id
  | 'E_SLIDE_UNSUPPORTED' // a file with the image_id's name is there, in a format no backend reads (e.g. .czi, .isyntax)
  | 'E_SLIDE_NOT_BRIGHTFIELD' // not 8-bit RGB brightfield (fluorescence, multiplex, 16-bit, single-channel): refused unless --allow-non-rgb
  | 'E_SLIDE_READ' // unreadable file (I/O error), or pixels the decoder rejects
  | 'E_TILE_CORRUPT' // a JPEG tile whose entropy-coded data is damaged (--jpeg-check): the error names the tile's level-0 x, y
  | 'E_SLIDE_FORMAT' // not a format or codec any backend reads, or a damaged TIFF (an offset, count or size outside the file or past a limit, e.g. truncated)
  | 'E_SLIDE_TOO_SMALL' // smaller than one tile
  | 'E_SLIDE_TOO_LARGE' // its thumbnail (or a decoder's unit: a strip, a tile) would not fit the stated memory limits
  | 'E_OPENSLIDE_MISSING'; // the file needs OpenSlide and libopenslide is not installed

/** A stored tile of a slide (E_TILE_CORRUPT): its pyramid level and its box in level-0 pixels. */
export interface SlideTileRef {
  readonly level: number;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

export class SlideError extends Error {
  readonly code: SlideErrorCode;
  readonly image_id: string;
  readonly path: string;
  /** The tile the error is about (E_TILE_CORRUPT). */
  readonly tile?: SlideTileRef;

  constructor(code: SlideErrorCode, image_id: string, path: string, message: string, options?: { cause?: unknown; tile?: SlideTileRef }) {
    super(`${code}: slide ${JSON.stringify(image_id)} (${path}): ${message}`, options);
    this.name = 'SlideError';
    this.code = code;
    this.image_id = image_id;
    this.path = path;
    if (options?.tile !== undefined) this.tile = options.tile;
  }
}
