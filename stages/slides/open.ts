/**
 * Opens a slide file with the backend that reads it. A new backend (a vendor format) is a new
 * backend-*.ts implementing SlideReader (reader.ts) and one branch here; nothing else changes.
 */
import { extname } from 'node:path';
import { open, stat } from 'node:fs/promises';
import { brightfieldCheck } from './brightfield.js';
import { SlideError } from './errors.js';
import type { SlideBackend, SlideReader } from './reader.js';
import { tiffPixelKind } from './tiff-facts.js';
import { parseTiff, TiffFormatError } from './tiff-parse.js';
import type { JpegCheckSetting } from './tile-check.js';

/** Extensions only OpenSlide reads. */
export const OPENSLIDE_ONLY = new Set(['.ndpi', '.mrxs', '.scn', '.vms', '.vmu', '.bif']);

/** OpenSlide-only formats that are TIFF containers: their first page's tags say whether they are brightfield. */
const TIFF_BASED = new Set(['.ndpi', '.scn', '.bif']);

/**
 * The brightfield check for an OpenSlide-only TIFF container (OpenSlide itself states no samples or bits), where
 * our parser reads its first directory; a file it cannot parse (NDPI's offsets past 4 GB...) is left to OpenSlide,
 * unchecked. Forced through, OpenSlide renders it as RGBA (libtiff's RGBA conversion), not our mapping.
 */
async function tiffBrightfield(path: string, image_id: string, allow: boolean): Promise<void> {
  const fh = await open(path, 'r').catch((err: Error) => {
    throw new SlideError('E_SLIDE_READ', image_id, path, err.message, { cause: err });
  });
  try {
    const tiff = await parseTiff(fh).catch((err: unknown) => {
      if (err instanceof TiffFormatError) return undefined; // not knowable here: OpenSlide decides
      throw err;
    });
    if (tiff !== undefined && !allow) brightfieldCheck(tiffPixelKind(tiff), false, image_id, path);
  } finally {
    await fh.close();
  }
}

export interface OpenSlideOptions {
  /** Path or name of libopenslide for the OpenSlide backend (default 'libopenslide.so.0'). */
  readonly openslideLibrary?: string;
  /** Force a backend (tests, benchmarks); default: sharp, then OpenSlide when sharp cannot decode. */
  readonly backend?: SlideBackend;
  /** Process images that are not 8-bit RGB brightfield, mapped to RGB as brightfield.ts states (--allow-non-rgb); default: refuse them. */
  readonly allowNonRgb?: boolean;
  /** The corrupt-JPEG-tile check of TIFF-family slides read by sharp (--jpeg-check, tile-check.ts); default 'quick'. */
  readonly jpegCheck?: JpegCheckSetting;
}

/**
 * Opens a slide with the right backend: DICOM for a `.dcm` file or a folder (a DICOM series), OpenSlide
 * for OpenSlide-only extensions, otherwise sharp, falling back to OpenSlide when sharp cannot decode the
 * file (e.g. JPEG 2000 SVS). Errors are SlideErrors.
 */
export async function openSlide(path: string, image_id: string, opts: OpenSlideOptions = {}): Promise<SlideReader> {
  const st = await stat(path).catch(() => undefined);
  if (st === undefined || !(st.isFile() || st.isDirectory())) throw new SlideError('E_SLIDE_MISSING', image_id, path, 'file not found');
  const ext = extname(path).toLowerCase();
  if (opts.backend === 'dicom' || ext === '.dcm' || st.isDirectory()) {
    const { openDicomSlide } = await import('./backend-dicom.js');
    return openDicomSlide(path, image_id, { allowNonRgb: opts.allowNonRgb === true, jpegCheck: opts.jpegCheck ?? 'quick' });
  }
  const { openSharpSlide } = await import('./backend-sharp.js');
  const { openOpenSlide } = await import('./backend-openslide.js');
  if (opts.backend === 'openslide' || OPENSLIDE_ONLY.has(ext)) {
    if (TIFF_BASED.has(ext)) await tiffBrightfield(path, image_id, opts.allowNonRgb === true);
    return openOpenSlide(path, image_id, opts.openslideLibrary);
  }
  const sharpOpts = { allowNonRgb: opts.allowNonRgb === true, jpegCheck: opts.jpegCheck ?? 'quick' };
  if (opts.backend === 'sharp') return openSharpSlide(path, image_id, sharpOpts);
  try {
    return await openSharpSlide(path, image_id, sharpOpts);
  } catch (err) {
    // Only a format/codec problem is worth a second backend; missing, truncated or damaged files are not.
    if (!(err instanceof SlideError) || err.code !== 'E_SLIDE_FORMAT' || (err.cause instanceof TiffFormatError && err.cause.kind === 'damaged')) throw err;
    try {
      return await openOpenSlide(path, image_id, opts.openslideLibrary);
    } catch (err2) {
      if (err2 instanceof SlideError && err2.code === 'E_OPENSLIDE_MISSING') {
        throw new SlideError('E_SLIDE_FORMAT', image_id, path, `${err.message}; OpenSlide might read it but is not installed (apt install libopenslide0)`, { cause: err2 });
      }
      throw err;
    }
  }
}
