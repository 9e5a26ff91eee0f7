/**
 * The optional OpenSlide backend, through koffi FFI to Debian's libopenslide.so.0 (apt package
 * libopenslide0): JPEG 2000 SVS, NDPI, MRXS, SCN, VMS, BIF. Reads run on koffi's worker threads.
 */
import koffi from 'koffi';
import sharp from 'sharp';
import { SlideError } from './errors.js';
import { extname } from 'node:path';
import { chooseLevel, thumbnailSource, type RgbImage, type SlideFacts, type SlideLevel, type SlideReader } from './reader.js';

export const DEFAULT_OPENSLIDE_LIBRARY = 'libopenslide.so.0';

type AsyncFn = { async: (...args: unknown[]) => void };
interface OpenSlideLib {
  open(path: string): unknown;
  getError(osr: unknown): string | null;
  levelCount(osr: unknown): number;
  levelDimensions(osr: unknown, level: number, w: number[], h: number[]): void;
  levelDownsample(osr: unknown, level: number): number;
  property(osr: unknown, name: string): string | null;
  readRegion: AsyncFn;
  close(osr: unknown): void;
}

const loaded = new Map<string, OpenSlideLib>();

/** Loads (once per path) the library; throws E_OPENSLIDE_MISSING naming the apt package when absent. */
export function loadOpenSlide(library: string, image_id = '', path = ''): OpenSlideLib {
  const have = loaded.get(library);
  if (have !== undefined) return have;
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(library);
  } catch (err) {
    throw new SlideError('E_OPENSLIDE_MISSING', image_id, path, `this slide needs OpenSlide, but ${library} cannot be loaded (${(err as Error).message}); install it with: apt install libopenslide0`, { cause: err });
  }
  const osr = koffi.pointer(koffi.opaque('openslide_t_' + loaded.size));
  const api: OpenSlideLib = {
    open: lib.func('openslide_open', osr, ['str']),
    getError: lib.func('openslide_get_error', 'str', [osr]),
    levelCount: lib.func('openslide_get_level_count', 'int32', [osr]),
    levelDimensions: lib.func('openslide_get_level_dimensions', 'void', [osr, 'int32', koffi.out(koffi.pointer('int64')), koffi.out(koffi.pointer('int64'))]),
    levelDownsample: lib.func('openslide_get_level_downsample', 'double', [osr, 'int32']),
    property: lib.func('openslide_get_property_value', 'str', [osr, 'str']),
    readRegion: lib.func('openslide_read_region', 'void', [osr, koffi.pointer('uint32'), 'int64', 'int64', 'int32', 'int64', 'int64']) as unknown as AsyncFn,
    close: lib.func('openslide_close', 'void', [osr]),
  };
  loaded.set(library, api);
  return api;
}

export async function openOpenSlide(path: string, image_id: string, library = DEFAULT_OPENSLIDE_LIBRARY): Promise<SlideReader> {
  const lib = loadOpenSlide(library, image_id, path);
  const osr = lib.open(path);
  if (osr === null) throw new SlideError('E_SLIDE_FORMAT', image_id, path, 'OpenSlide does not recognise this file');
  const err = lib.getError(osr);
  if (err !== null) {
    lib.close(osr);
    throw new SlideError('E_SLIDE_READ', image_id, path, `OpenSlide: ${err}`);
  }
  const levels: SlideLevel[] = [];
  const n = lib.levelCount(osr);
  for (let i = 0; i < n; i++) {
    const w = [0];
    const h = [0];
    lib.levelDimensions(osr, i, w, h);
    levels.push({ width: Number(w[0]), height: Number(h[0]), downsample: lib.levelDownsample(osr, i) });
  }
  if (levels.length === 0) {
    lib.close(osr);
    throw new SlideError('E_SLIDE_READ', image_id, path, 'OpenSlide reports no levels');
  }
  return new OpenSlideReader(image_id, path, lib, osr, levels, openSlideFacts(lib, osr, path));
}

/**
 * Format (the file's extension; OpenSlide's vendor when there is none) and the scale OpenSlide states:
 * openslide.mpp-x / mpp-y (µm per pixel) and openslide.objective-power. OpenSlide always returns 8-bit
 * RGBA, and exposes no channel or bit-depth facts for its vendor formats: no brightfield check here.
 */
function openSlideFacts(lib: OpenSlideLib, osr: unknown, path: string): SlideFacts {
  const num = (name: string): number | undefined => {
    const v = Number.parseFloat(lib.property(osr, name) ?? '');
    return Number.isFinite(v) && v > 0 ? v : undefined;
  };
  const mppX = num('openslide.mpp-x');
  const mppY = num('openslide.mpp-y') ?? mppX;
  const magnification = num('openslide.objective-power');
  const format = extname(path).slice(1).toLowerCase() || (lib.property(osr, 'openslide.vendor') ?? 'openslide');
  return {
    format,
    ...(mppX !== undefined && { mppX, mppY: mppY! }),
    ...(magnification !== undefined && { magnification }),
    ...((mppX !== undefined || magnification !== undefined) && { scaleSource: 'openslide' }),
  };
}

/** Rows read per OpenSlide call when reading a whole level (bounds the ARGB scratch buffer). */
const STRIP_ROWS = 256;

class OpenSlideReader implements SlideReader {
  readonly backend = 'openslide' as const;
  readonly width: number;
  readonly height: number;
  private closed = false;

  constructor(
    readonly image_id: string,
    readonly path: string,
    private readonly lib: OpenSlideLib,
    private readonly osr: unknown,
    readonly levels: readonly SlideLevel[],
    readonly facts: SlideFacts,
  ) {
    this.width = levels[0]!.width;
    this.height = levels[0]!.height;
  }

  async readRegion(level: number, x: number, y: number, width: number, height: number): Promise<Uint8Array> {
    const l = this.levels[level];
    if (l === undefined) throw new RangeError(`slide ${this.image_id}: no level ${level}`);
    if (this.closed) throw new SlideError('E_SLIDE_READ', this.image_id, this.path, 'slide is closed');
    const argb = new Uint32Array(width * height);
    // OpenSlide takes the region's top-left in level-0 coordinates.
    const x0 = Math.round(x * l.downsample);
    const y0 = Math.round(y * l.downsample);
    await new Promise<void>((resolve, reject) => {
      this.lib.readRegion.async(this.osr, argb, x0, y0, level, width, height, (err: unknown) => (err ? reject(err) : resolve()));
    });
    const err = this.lib.getError(this.osr);
    if (err !== null) throw new SlideError('E_SLIDE_READ', this.image_id, this.path, `OpenSlide: ${err}`);
    return argbToRgb(argb);
  }

  async thumbnail(downsample: number): Promise<{ image: RgbImage; level: number }> {
    const width = Math.floor(this.width / downsample);
    const height = Math.floor(this.height / downsample);
    if (width < 1 || height < 1) throw new SlideError('E_SLIDE_TOO_SMALL', this.image_id, this.path, `smaller than one thumbnail pixel at 1/${downsample}`);
    const level = chooseLevel(this.levels, downsample);
    const l = thumbnailSource(this.width, this.height, this.levels[level]!, width, height, downsample);
    const full = new Uint8Array(l.width * l.height * 3);
    for (let y = 0; y < l.height; y += STRIP_ROWS) {
      const rows = Math.min(STRIP_ROWS, l.height - y);
      full.set(await this.readRegion(level, 0, y, l.width, rows), y * l.width * 3);
    }
    if (l.width === width && l.height === height) return { image: { width, height, data: full }, level };
    const data = await sharp(full, { raw: { width: l.width, height: l.height, channels: 3 }, limitInputPixels: false }).resize(width, height, { fit: 'fill' }).raw().toBuffer();
    return { image: { width, height, data }, level };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.lib.close(this.osr);
  }
}

/**
 * OpenSlide's premultiplied ARGB (native-endian uint32) to RGB: un-premultiply; fully transparent pixels
 * (outside the scanned area) become white, as OpenSlide's Python helpers do for background.
 */
export function argbToRgb(argb: Uint32Array): Uint8Array {
  const out = new Uint8Array(argb.length * 3);
  for (let i = 0, o = 0; i < argb.length; i++, o += 3) {
    const p = argb[i]!;
    const a = p >>> 24;
    if (a === 255) {
      out[o] = (p >>> 16) & 255;
      out[o + 1] = (p >>> 8) & 255;
      out[o + 2] = p & 255;
    } else if (a === 0) {
      out[o] = 255;
      out[o + 1] = 255;
      out[o + 2] = 255;
    } else {
      out[o] = Math.min(255, Math.round((((p >>> 16) & 255) * 255) / a));
      out[o + 1] = Math.min(255, Math.round((((p >>> 8) & 255) * 255) / a));
      out[o + 2] = Math.min(255, Math.round(((p & 255) * 255) / a));
    }
  }
  return out;
}
