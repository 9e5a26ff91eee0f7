/**
 * Opens a slide file with the backend that reads it. A new backend (a vendor format) is a new
 * backend-*.ts implementing SlideReader (reader.ts) and one branch here; nothing else changes.
 */
import { extname } from 'node:path';
import { stat } from 'node:fs/promises';
import { SlideError } from './errors.js';
import type { SlideBackend, SlideReader } from './reader.js';
import { TiffFormatError } from './tiff-parse.js';

/** Extensions only OpenSlide reads. */
export const OPENSLIDE_ONLY = new Set(['.ndpi', '.mrxs', '.scn', '.vms', '.vmu', '.bif']);

export interface OpenSlideOptions {
  /** Path or name of libopenslide for the OpenSlide backend (default 'libopenslide.so.0'). */
  readonly openslideLibrary?: string;
  /** Force a backend (tests, benchmarks); default: sharp, then OpenSlide when sharp cannot decode. */
  readonly backend?: SlideBackend;
  /** Process images that are not 8-bit RGB brightfield, mapped to RGB as brightfield.ts states (--allow-non-rgb); default: refuse them. */
  readonly allowNonRgb?: boolean;
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
    return openDicomSlide(path, image_id, { allowNonRgb: opts.allowNonRgb === true });
  }
  const { openSharpSlide } = await import('./backend-sharp.js');
  const { openOpenSlide } = await import('./backend-openslide.js');
  if (opts.backend === 'openslide' || OPENSLIDE_ONLY.has(ext)) return openOpenSlide(path, image_id, opts.openslideLibrary);
  const sharpOpts = { allowNonRgb: opts.allowNonRgb === true };
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
