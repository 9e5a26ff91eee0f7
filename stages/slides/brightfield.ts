/**
 * Brightfield or not: the tile rule and StainNet assume 8-bit RGB brightfield (H&E). What an image's header says
 * (samples, bits, sample format, photometric, channels) decides, before any tile is read; an image that is not
 * is refused (E_SLIDE_NOT_BRIGHTFIELD, naming what was found) unless the user forces it (`--allow-non-rgb`), in
 * which case one stated mapping to 8-bit RGB (`ChannelMapping`) is applied to every pixel read, thumbnail and
 * tiles alike (`mapToRgb`).
 */
import { SlideError } from './errors.js';

/** What the header says of the pixels (TIFF tags, OME-XML, DICOM attributes). */
export interface PixelKind {
  /** Samples per pixel of the page read. */
  readonly samples: number;
  readonly bits: number;
  /** 'uint', 'int' or 'float'. */
  readonly sampleFormat: 'uint' | 'int' | 'float';
  /** Photometric interpretation, by name: 'RGB', 'YCbCr', 'MinIsBlack', 'MinIsWhite', 'Palette', 'MONOCHROME2'... */
  readonly photometric: string;
  /** Channels stored as separate pages/planes (OME-TIFF SizeC over the page's samples, QPTIFF pages): 1 when none. */
  readonly channels: number;
  /** Channel names when the file gives them (OME Channel Name, QPTIFF Name). */
  readonly channelNames?: readonly string[];
  /** What the file is, for the message ('OME-TIFF', 'PerkinElmer QPTIFF', 'TIFF', 'DICOM'). */
  readonly container: string;
}

/** How a non-brightfield image's samples become 8-bit RGB; applied by mapToRgb to every read. */
export interface ChannelMapping {
  /** Source sample (band) for R, G and B. */
  readonly pick: readonly [number, number, number];
  readonly bits: number;
  readonly sampleFormat: 'uint' | 'float';
  /** The mapping in words, for stderr and the report. */
  readonly text: string;
}

const RGB_PHOTOMETRIC = new Set(['RGB', 'YCbCr', 'YBR_FULL', 'YBR_FULL_422', 'YBR_ICT', 'YBR_RCT']);

/** What makes the image not brightfield, in words; undefined when it is 8-bit RGB with no other channels. */
export function notBrightfield(k: PixelKind): string | undefined {
  const why: string[] = [];
  if (k.channels > 1) why.push(`${k.channels} channels${k.channelNames?.length ? ` (${k.channelNames.slice(0, 6).join(', ')}${k.channelNames.length > 6 ? ', ...' : ''})` : ''}`);
  if (k.samples < 3) why.push(`${k.samples} sample${k.samples === 1 ? '' : 's'} per pixel`);
  if (k.samples > 4) why.push(`${k.samples} samples per pixel`);
  if (k.bits !== 8) why.push(`${k.bits}-bit samples`);
  if (k.sampleFormat !== 'uint') why.push(`${k.sampleFormat === 'float' ? 'floating-point' : 'signed'} samples`);
  if (!RGB_PHOTOMETRIC.has(k.photometric)) why.push(`photometric ${k.photometric}`);
  return why.length === 0 ? undefined : `${k.container} with ${why.join(', ')}`;
}

/** The mapping used under --allow-non-rgb, or why there is none (signed or odd-sized samples). */
export function channelMapping(k: PixelKind): ChannelMapping | string {
  if (k.sampleFormat === 'int') return 'signed samples have no stated mapping to 8-bit RGB';
  if (k.sampleFormat === 'float' ? k.bits !== 32 && k.bits !== 64 : k.bits !== 8 && k.bits !== 16 && k.bits !== 32) return `${k.bits}-bit samples have no stated mapping to 8-bit RGB`;
  const parts: string[] = [];
  if (k.sampleFormat === 'float') parts.push(`${k.bits}-bit floating-point samples clamped to 0..1 and scaled to 0..255`);
  else if (k.bits > 8) parts.push(`${k.bits}-bit samples scaled to 8 bits (value >> ${k.bits - 8})`);
  if (k.channels > 1) parts.push(`channel 1 of ${k.channels}${k.channelNames?.[0] ? ` (${k.channelNames[0]})` : ''} only`);
  let pick: [number, number, number];
  if (k.samples >= 3) {
    pick = [0, 1, 2];
    parts.push(k.samples > 3 ? `samples 1-3 of ${k.samples} as R, G, B` : 'samples 1-3 as R, G, B');
  } else {
    pick = [0, 0, 0];
    parts.push(k.samples === 2 ? 'sample 1 of 2 (grayscale) replicated to R, G and B' : 'grayscale replicated to R, G and B');
  }
  return { pick, bits: k.bits, sampleFormat: k.sampleFormat, text: parts.join('; ') };
}

/**
 * The check every backend makes when it opens a slide: undefined for brightfield; the mapping when the image
 * is not and `allow` is set; otherwise E_SLIDE_NOT_BRIGHTFIELD naming the file and what was found.
 */
export function brightfieldCheck(k: PixelKind, allow: boolean, image_id: string, path: string): ChannelMapping | undefined {
  const why = notBrightfield(k);
  if (why === undefined) return undefined;
  if (!allow) {
    throw new SlideError('E_SLIDE_NOT_BRIGHTFIELD', image_id, path, `not an 8-bit RGB brightfield image: ${why}; the tile rule and stain normalization assume H&E (--allow-non-rgb maps it to RGB and processes it anyway)`);
  }
  const m = channelMapping(k);
  if (typeof m === 'string') throw new SlideError('E_SLIDE_NOT_BRIGHTFIELD', image_id, path, `not an 8-bit RGB brightfield image: ${why}; even with --allow-non-rgb: ${m}`);
  return m;
}

/**
 * Decoded samples (`bands` per pixel, native byte order, as libvips gives them unconverted) to 8-bit RGB by the
 * mapping: the same arithmetic for every region, so the thumbnail and the tiles agree.
 */
export function mapToRgb(raw: Uint8Array, pixels: number, bands: number, m: ChannelMapping): Uint8Array {
  const bytes = raw.length / (pixels * bands);
  if (!Number.isInteger(bytes) || bytes !== m.bits / 8) throw new Error(`decoded ${raw.length} bytes for ${pixels} pixels of ${bands} bands, expected ${m.bits}-bit samples`);
  for (const p of m.pick) if (p >= bands) throw new Error(`decoded ${bands} bands, the mapping reads band ${p + 1}`);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const le = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
  const out = new Uint8Array(pixels * 3);
  const sample =
    m.sampleFormat === 'float' ? (o: number): number => {
      const v = m.bits === 32 ? view.getFloat32(o, le) : view.getFloat64(o, le);
      return Number.isNaN(v) ? 0 : Math.round(Math.min(1, Math.max(0, v)) * 255);
    }
    : m.bits === 8 ? (o: number): number => raw[o]!
    : m.bits === 16 ? (o: number): number => view.getUint16(o, le) >> 8
    : (o: number): number => view.getUint32(o, le) >>> 24;
  const stride = bands * bytes;
  for (let i = 0; i < pixels; i++) {
    const base = i * stride;
    out[i * 3] = sample(base + m.pick[0] * bytes);
    out[i * 3 + 1] = sample(base + m.pick[1] * bytes);
    out[i * 3 + 2] = sample(base + m.pick[2] * bytes);
  }
  return out;
}
