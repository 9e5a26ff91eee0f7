/**
 * The DICOM WSI backend (VL Whole Slide Microscopy Image Storage): a slide given as one `.dcm` file or as
 * a folder of `.dcm` files of one series, one instance per pyramid level. Levels are the VOLUME instances
 * ordered by their TotalPixelMatrix size (label, overview and thumbnail instances are skipped by
 * ImageType). Attributes and the frame index come from dicom-parse.ts (dicom-parser); JPEG-baseline
 * frames are decoded by sharp, uncompressed 8-bit RGB frames are copied. Memory: the frame index, plus
 * at most FRAME_CACHE_BYTES of decoded frames and the frames of the region being read.
 */
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { LRUCache } from 'lru-cache';
import sharp from 'sharp';
import { SlideError } from './errors.js';
import { brightfieldCheck, type ChannelMapping } from './brightfield.js';
import { chooseLevel, findLevels, thumbnailSource, type RgbImage, type SlideFacts, type SlideLevel, type SlideReader } from './reader.js';
import { DicomFormatError, readDicomInstance, readFrameBytes, type DicomInstance } from './dicom-parse.js';
import { jpegTileFault } from './jpeg-check.js';
import type { JpegCheckSetting } from './tile-check.js';

/** Decoded frames kept for the next regions (neighbouring tiles share frames). */
export const FRAME_CACHE_BYTES = 16 * 1024 * 1024;
/** Above this many source pixels, thumbnail() resizes in bands of BAND_ROWS thumbnail rows (bounded memory). */
export const THUMBNAIL_WHOLE_PIXELS = 32 * 1024 * 1024;
const BAND_ROWS = 64;
const BAND_HALO = 8;

interface OpenInstance {
  readonly inst: DicomInstance;
  readonly fh: FileHandle;
}

/** Opens a `.dcm` file or a series folder of `.dcm` files. Errors are SlideErrors naming the file. */
export async function openDicomSlide(path: string, image_id: string, limits: { thumbnailWholePixels?: number; allowNonRgb?: boolean; jpegCheck?: JpegCheckSetting } = {}): Promise<SlideReader> {
  const files = await dicomFiles(path, image_id);
  const opened: OpenInstance[] = [];
  try {
    for (const file of files) opened.push(await openInstance(file, image_id, limits.allowNonRgb === true));
    const volumes = opened.filter((o) => isVolume(o.inst));
    if (volumes.length === 0) {
      const found = opened.map((o) => o.inst.imageType.join('\\')).join('; ');
      throw new SlideError('E_SLIDE_FORMAT', image_id, path, `no VOLUME image (pyramid level) among ${files.length} DICOM instance(s): ${found}`);
    }
    const series = new Set(volumes.map((o) => o.inst.seriesUid));
    if (series.size > 1) throw new SlideError('E_SLIDE_FORMAT', image_id, path, `the folder holds ${series.size} series (${[...series].join(', ')}); a slide is one series`);
    volumes.sort((a, b) => b.inst.width - a.inst.width || b.inst.height - a.inst.height);
    const idx = findLevels(volumes.map((o) => ({ width: o.inst.width, height: o.inst.height, tiled: true })));
    const used = idx.map((i) => volumes[i]!);
    const mapping = dicomBrightfield(used[0]!.inst, limits.allowNonRgb === true, image_id);
    for (const o of opened) if (!used.includes(o)) await o.fh.close();
    opened.length = 0;
    return new DicomSlide(image_id, path, used, limits.thumbnailWholePixels ?? THUMBNAIL_WHOLE_PIXELS, dicomFacts(used[0]!.inst, mapping), limits.jpegCheck ?? 'quick');
  } finally {
    for (const o of opened) await o.fh.close();
  }
}

/** The instance files: the file itself, or the folder's `*.dcm` files (sorted by name). */
async function dicomFiles(path: string, image_id: string): Promise<string[]> {
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new SlideError(err.code === 'ENOENT' ? 'E_SLIDE_MISSING' : 'E_SLIDE_READ', image_id, path, err.message, { cause: err });
  });
  if (!st.isDirectory()) return [path];
  const names = (await readdir(path)).filter((n) => n.toLowerCase().endsWith('.dcm')).sort();
  if (names.length === 0) throw new SlideError('E_SLIDE_FORMAT', image_id, path, 'the slide folder holds no .dcm files');
  return names.map((n) => join(path, n));
}

async function openInstance(file: string, image_id: string, allowNonRgb: boolean): Promise<OpenInstance> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw new SlideError('E_SLIDE_READ', image_id, file, (err as Error).message, { cause: err });
  }
  try {
    return { inst: await readDicomInstance(fh, file), fh };
  } catch (err) {
    await fh.close();
    if (err instanceof DicomFormatError && err.kind === 'not-brightfield') {
      const why = `DICOM ${(err as Error).message}; the tile rule and stain normalization assume H&E`;
      throw new SlideError('E_SLIDE_NOT_BRIGHTFIELD', image_id, file, allowNonRgb ? `${why} (--allow-non-rgb maps only JPEG-baseline DICOM)` : `${why}`, { cause: err });
    }
    throw new SlideError(err instanceof DicomFormatError ? 'E_SLIDE_FORMAT' : 'E_SLIDE_READ', image_id, file, `DICOM: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Level 0's pixel kind through the brightfield check (JPEG baseline is 8-bit; a MONOCHROME frame decodes to grey,
 * which decodeJpeg replicates to R, G, B: the one mapping --allow-non-rgb can state here). Several optical paths
 * are channels (only the first is read).
 */
function dicomBrightfield(inst: DicomInstance, allow: boolean, image_id: string): ChannelMapping | undefined {
  const kind = { samples: inst.samplesPerPixel, bits: inst.bits, sampleFormat: inst.signed ? 'int' : 'uint', photometric: inst.photometric, channels: inst.opticalPaths, container: 'DICOM' } as const;
  return brightfieldCheck(kind, allow, image_id, inst.path);
}

/** Format and stated scale of level 0 (mm to µm). */
function dicomFacts(inst: DicomInstance, mapping: ChannelMapping | undefined): SlideFacts {
  const s = inst.spacingMm;
  const known = s !== undefined || inst.objectivePower !== undefined;
  return {
    format: 'dicom',
    ...(s !== undefined && { mppX: s.x * 1000, mppY: s.y * 1000 }),
    ...(inst.objectivePower !== undefined && { magnification: inst.objectivePower }),
    ...(known && { scaleSource: 'dicom' }),
    ...(mapping !== undefined && { channelMapping: mapping.text }),
  };
}

/** A pyramid level: ImageType value 3 is VOLUME (or ImageType is missing: a plain multi-frame image). */
function isVolume(inst: DicomInstance): boolean {
  const kind = inst.imageType[2];
  return kind === undefined || kind === '' || kind === 'VOLUME';
}

class DicomSlide implements SlideReader {
  readonly backend = 'dicom' as const;
  readonly width: number;
  readonly height: number;
  readonly levels: readonly SlideLevel[];
  private closed = false;
  private readonly cache = new LRUCache<string, Buffer>({ maxSize: FRAME_CACHE_BYTES, sizeCalculation: (b) => b.length });

  constructor(
    readonly image_id: string,
    readonly path: string,
    private readonly instances: readonly OpenInstance[],
    private readonly thumbnailWholePixels: number,
    readonly facts: SlideFacts,
    /** The corrupt-JPEG check of each frame before it is decoded (sharp's failOn misses libjpeg's late warnings). */
    private readonly jpegCheck: JpegCheckSetting,
  ) {
    const l0 = instances[0]!.inst;
    this.width = l0.width;
    this.height = l0.height;
    this.levels = instances.map(({ inst }) => ({ width: inst.width, height: inst.height, downsample: (l0.width / inst.width + l0.height / inst.height) / 2 }));
  }

  async readRegion(level: number, x: number, y: number, width: number, height: number): Promise<Uint8Array> {
    const lv = this.instances[level];
    if (lv === undefined) throw new RangeError(`slide ${this.image_id}: no level ${level}`);
    const { inst } = lv;
    if (x < 0 || y < 0 || width < 1 || height < 1 || x + width > inst.width || y + height > inst.height) {
      throw new RangeError(`slide ${this.image_id}: region ${x},${y} ${width}x${height} outside level ${level} (${inst.width}x${inst.height})`);
    }
    const out = Buffer.alloc(width * height * 3, 255); // TILED_SPARSE gaps stay white
    const fw = inst.frameWidth;
    const fh = inst.frameHeight;
    const across = Math.ceil(inst.width / fw);
    for (let r = Math.floor(y / fh); r <= Math.floor((y + height - 1) / fh); r++) {
      for (let c = Math.floor(x / fw); c <= Math.floor((x + width - 1) / fw); c++) {
        const f = inst.grid[r * across + c]!;
        if (f < 0) continue;
        const frame = await this.frame(level, f, c, r);
        // The part of frame (c, r) inside the region, copied row by row.
        const x0 = Math.max(x, c * fw);
        const x1 = Math.min(x + width, (c + 1) * fw);
        for (let yy = Math.max(y, r * fh); yy < Math.min(y + height, (r + 1) * fh); yy++) {
          const src = ((yy - r * fh) * fw + (x0 - c * fw)) * 3;
          frame.copy(out, ((yy - y) * width + (x0 - x)) * 3, src, src + (x1 - x0) * 3);
        }
      }
    }
    return out;
  }

  /** Frame f (at column c, row r of the level's frame grid) as frameWidth x frameHeight RGB. */
  private async frame(level: number, f: number, c: number, r: number): Promise<Buffer> {
    const key = `${level}:${f}`;
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    const { inst, fh } = this.instances[level]!;
    let pixels: Buffer;
    try {
      const bytes = await readFrameBytes(fh, inst, f);
      const fault = inst.encapsulated && this.jpegCheck !== 'off' ? jpegTileFault(bytes, undefined, this.jpegCheck) : undefined;
      if (fault !== undefined) throw this.corrupt(level, f, c, r, fault);
      pixels = inst.encapsulated ? await decodeJpeg(bytes, inst) : inst.planar === 1 ? interleave(bytes, inst.frameWidth * inst.frameHeight) : bytes;
    } catch (err) {
      if (err instanceof SlideError) throw err;
      const code = err instanceof DicomFormatError ? 'E_SLIDE_FORMAT' : 'E_SLIDE_READ';
      throw new SlideError(code, this.image_id, inst.path, `level ${level} frame ${f + 1}: ${(err as Error).message}`, { cause: err });
    }
    this.cache.set(key, pixels);
    return pixels;
  }

  /** E_TILE_CORRUPT for frame f of a level, placed in level-0 pixels (cut to the slide). */
  private corrupt(level: number, f: number, c: number, r: number, fault: string): SlideError {
    const { inst } = this.instances[level]!;
    const ds = this.levels[level]!.downsample;
    const x = Math.round(c * inst.frameWidth * ds);
    const y = Math.round(r * inst.frameHeight * ds);
    const tile = { level, x, y, width: Math.min(Math.round(inst.frameWidth * ds), this.width - x), height: Math.min(Math.round(inst.frameHeight * ds), this.height - y) };
    const where = `tile at level-0 x ${x}, y ${y} (${tile.width}x${tile.height} px${level > 0 ? `, level ${level}` : ''}; frame ${f + 1} of ${basename(inst.path)})`;
    return new SlideError('E_TILE_CORRUPT', this.image_id, inst.path, `${where} is corrupt: ${fault}`, { tile });
  }

  async thumbnail(downsample: number): Promise<{ image: RgbImage; level: number }> {
    const width = Math.floor(this.width / downsample);
    const height = Math.floor(this.height / downsample);
    if (width < 1 || height < 1) throw new SlideError('E_SLIDE_TOO_SMALL', this.image_id, this.path, `smaller than one thumbnail pixel at 1/${downsample}`);
    const level = chooseLevel(this.levels, downsample);
    const src = thumbnailSource(this.width, this.height, this.levels[level]!, width, height, downsample);
    try {
      if (src.width * src.height <= this.thumbnailWholePixels) return { image: { width, height, data: await this.resized(level, 0, src.width, src.height, width, height) }, level };
      // A big source (a slide without a suitable coarser level): bands of thumbnail rows, each resized from its
      // source rows plus a halo (cut off afterwards), so memory is O(thumbnail width x band), not O(source).
      const data = Buffer.alloc(width * height * 3);
      const f = src.height / height;
      for (let a = 0; a < height; a += BAND_ROWS) {
        const b = Math.min(height, a + BAND_ROWS);
        const k0 = Math.max(0, a - BAND_HALO);
        const k1 = Math.min(height, b + BAND_HALO);
        const s0 = Math.round(k0 * f);
        const s1 = Math.min(src.height, Math.round(k1 * f));
        const band = await this.resized(level, s0, src.width, s1 - s0, width, k1 - k0);
        band.copy(data, a * width * 3, (a - k0) * width * 3, (b - k0) * width * 3);
      }
      return { image: { width, height, data }, level };
    } catch (err) {
      if (err instanceof SlideError) throw err;
      throw new SlideError('E_SLIDE_READ', this.image_id, this.path, `thumbnail from level ${level}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Level rows y .. y+h-1 (columns 0 .. w-1) resized to tw x th. */
  private async resized(level: number, y: number, w: number, h: number, tw: number, th: number): Promise<Buffer> {
    const pixels = await this.readRegion(level, 0, y, w, h);
    if (w === tw && h === th) return Buffer.from(pixels.buffer, pixels.byteOffset, pixels.length);
    return sharp(pixels, { raw: { width: w, height: h, channels: 3 }, limitInputPixels: false }).resize(tw, th, { fit: 'fill' }).raw().toBuffer();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cache.clear();
    for (const { fh } of this.instances) await fh.close();
  }
}

/** A JPEG frame as RGB of the frame's size (grey JPEGs are expanded; libjpeg applies the stream's colour transform). */
async function decodeJpeg(bytes: Buffer, inst: DicomInstance): Promise<Buffer> {
  const { data, info } = await sharp(bytes).removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.width !== inst.frameWidth || info.height !== inst.frameHeight || info.channels !== 3) {
    throw new Error(`JPEG frame is ${info.width}x${info.height}x${info.channels}, the instance says ${inst.frameWidth}x${inst.frameHeight}x3`);
  }
  return data;
}

/** Planar configuration 1 (RRR..GGG..BBB..) to interleaved RGB. */
function interleave(planes: Buffer, n: number): Buffer {
  const out = Buffer.alloc(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = planes[i]!;
    out[i * 3 + 1] = planes[n + i]!;
    out[i * 3 + 2] = planes[2 * n + i]!;
  }
  return out;
}
