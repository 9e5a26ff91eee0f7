/**
 * What a parsed TIFF says about itself beyond its levels: its format (SVS, OME-TIFF, QPTIFF, plain TIFF or
 * BigTIFF), its scale when stated (Aperio ImageDescription MPP/AppMag, OME-XML PhysicalSizeX/Y and Objective
 * NominalMagnification, else XResolution/YResolution with ResolutionUnit), and its pixel kind for the
 * brightfield check (brightfield.ts). Pure functions of the parse; no I/O.
 */
import type { PixelKind } from './brightfield.js';
import type { SlideFacts } from './reader.js';
import type { TiffFile, TiffIfd } from './tiff-parse.js';

/** A stated resolution gives an MPP only inside this range (µm/px): writers' defaults (72 dpi = 353 µm) are not a scale. */
export const PLAUSIBLE_MPP = { min: 0.01, max: 100 } as const;

type Container = 'svs' | 'ome-tiff' | 'qptiff' | 'tiff' | 'bigtiff';

function container(tiff: TiffFile): Container {
  const d = tiff.ifds[0]!.description ?? '';
  if (d.startsWith('Aperio')) return 'svs';
  if (/<OME[\s>]/.test(d)) return 'ome-tiff';
  if (d.includes('PerkinElmer-QPI-ImageDescription')) return 'qptiff';
  return tiff.bigTiff ? 'bigtiff' : 'tiff';
}

const MICRONS: Record<string, number> = { 'µm': 1, 'um': 1, 'μm': 1, 'nm': 1e-3, 'mm': 1e3, 'cm': 1e4, 'm': 1e6 };

/** The first attribute `name` of the first element `tag` in an XML text. */
function attr(xml: string, tag: string, name: string): string | undefined {
  const el = new RegExp(`<(?:\\w+:)?${tag}\\b[^>]*>`).exec(xml)?.[0];
  return el === undefined ? undefined : new RegExp(`\\b${name}="([^"]*)"`).exec(el)?.[1];
}

function positive(v: string | undefined): number | undefined {
  const n = v === undefined ? NaN : Number.parseFloat(v);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

type Scale = Pick<SlideFacts, 'mppX' | 'mppY' | 'magnification' | 'scaleSource'>;

function aperioScale(d: string): Scale {
  const mpp = positive(/\|\s*MPP\s*=\s*([\d.eE+-]+)/.exec(d)?.[1]);
  const mag = positive(/\|\s*AppMag\s*=\s*([\d.eE+-]+)/.exec(d)?.[1]);
  return { ...(mpp !== undefined && { mppX: mpp, mppY: mpp }), ...(mag !== undefined && { magnification: mag }), scaleSource: 'aperio' };
}

function omeScale(d: string): Scale {
  const size = (axis: 'X' | 'Y'): number | undefined => {
    const v = positive(attr(d, 'Pixels', `PhysicalSize${axis}`));
    const unit = MICRONS[attr(d, 'Pixels', `PhysicalSize${axis}Unit`) ?? 'µm'];
    return v === undefined || unit === undefined ? undefined : v * unit;
  };
  const x = size('X');
  const y = size('Y') ?? x;
  const mag = positive(attr(d, 'Objective', 'NominalMagnification'));
  return { ...(x !== undefined && { mppX: x, mppY: y! }), ...(mag !== undefined && { magnification: mag }), scaleSource: 'ome' };
}

function resolutionScale(ifd: TiffIfd): Scale {
  const per = ifd.resolutionUnit === 3 ? 1e4 : ifd.resolutionUnit === 2 ? 25400 : undefined;
  const mpp = (r: number | undefined): number | undefined => (per === undefined || r === undefined || !(r > 0) ? undefined : per / r);
  const x = mpp(ifd.xResolution);
  const y = mpp(ifd.yResolution) ?? x;
  const plausible = (v: number | undefined): boolean => v !== undefined && v >= PLAUSIBLE_MPP.min && v <= PLAUSIBLE_MPP.max;
  return plausible(x) && plausible(y) ? { mppX: x!, mppY: y!, scaleSource: 'tiff-resolution' } : {};
}

/** Format and stated scale (Aperio, then OME, then the TIFF resolution tags; a source's missing part falls to the next). */
export function tiffFacts(tiff: TiffFile): SlideFacts {
  const ifd0 = tiff.ifds[0]!;
  const format = container(tiff);
  const d = ifd0.description ?? '';
  const stated = format === 'svs' ? aperioScale(d) : format === 'ome-tiff' ? omeScale(d) : {};
  const res = stated.mppX === undefined ? resolutionScale(ifd0) : {};
  const mppX = stated.mppX ?? res.mppX;
  const mppY = stated.mppY ?? res.mppY;
  const magnification = stated.magnification;
  const scaleSource = stated.mppX !== undefined || magnification !== undefined ? stated.scaleSource : res.scaleSource;
  return {
    format,
    ...(mppX !== undefined && { mppX, mppY: mppY ?? mppX }),
    ...(magnification !== undefined && { magnification }),
    ...(scaleSource !== undefined && (mppX !== undefined || magnification !== undefined) && { scaleSource }),
  };
}

const PHOTOMETRIC: Record<number, string> = { 0: 'MinIsWhite', 1: 'MinIsBlack', 2: 'RGB', 3: 'Palette', 4: 'Mask', 5: 'Separated (CMYK)', 6: 'YCbCr', 8: 'CIELab', 32844: 'LogL', 32845: 'LogLuv' };

/** Channels stored as separate pages: OME SizeC over the page's samples; QPTIFF: the full-size pages. */
function pageChannels(tiff: TiffFile, format: Container): { channels: number; names: string[] } {
  const ifd0 = tiff.ifds[0]!;
  const d = ifd0.description ?? '';
  if (format === 'ome-tiff') {
    const sizeC = positive(attr(d, 'Pixels', 'SizeC')) ?? 1;
    const names = [...d.matchAll(/<(?:\w+:)?Channel\b[^>]*>/g)].map((m) => /\bName="([^"]*)"/.exec(m[0])?.[1] ?? '').filter((n) => n !== '');
    return { channels: Math.max(1, Math.round(sizeC / Math.max(1, ifd0.samplesPerPixel))), names };
  }
  if (format === 'qptiff') {
    const full = tiff.ifds.filter((p) => p.width === ifd0.width && p.height === ifd0.height).length;
    const names = tiff.ifds.slice(0, full).map((p) => /<Name>([^<]*)<\/Name>/.exec(p.description ?? '')?.[1] ?? '').filter((n) => n !== '');
    return { channels: full, names };
  }
  return { channels: 1, names: [] };
}

/** The pixel kind of page 0, for the brightfield check. */
export function tiffPixelKind(tiff: TiffFile): PixelKind {
  const ifd0 = tiff.ifds[0]!;
  const format = container(tiff);
  const { channels, names } = pageChannels(tiff, format);
  const label: Record<Container, string> = { svs: 'Aperio SVS', 'ome-tiff': 'OME-TIFF', qptiff: 'PerkinElmer QPTIFF', tiff: 'TIFF', bigtiff: 'BigTIFF' };
  return {
    samples: ifd0.samplesPerPixel,
    bits: ifd0.bitsPerSample,
    sampleFormat: ifd0.sampleFormat === 3 ? 'float' : ifd0.sampleFormat === 2 ? 'int' : 'uint',
    photometric: PHOTOMETRIC[ifd0.photometric] ?? `${ifd0.photometric}`,
    channels,
    ...(names.length > 0 && { channelNames: names }),
    container: label[format],
  };
}
