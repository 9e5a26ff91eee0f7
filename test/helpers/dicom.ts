/**
 * Test DICOM WSI files, written by dcmjs (a devDependency) from generated slides: each pyramid level of a
 * synthetic TIFF (stages/slides/synthetic.ts) becomes one VL Whole Slide Microscopy instance whose frames
 * are the TIFF's own JPEG tiles (same bytes, so the same pixels), or frames cut and encoded here.
 */
import { writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import sharp from 'sharp';
import { parseTiff, type TiffIfd } from '../../stages/slides/tiff-parse.js';
import type { SlideReader } from '../../stages/slides/reader.js';

// dcmjs's ESM build does not load under the test loader; its CommonJS (UMD) build does.
const dcmjs = createRequire(import.meta.url)('dcmjs') as DcmjsModule;
const { DicomDict, DicomMetaDictionary } = dcmjs.data;

/** The part of dcmjs used here (it ships no types). */
interface DcmjsModule {
  data: {
    DicomDict: new (meta: Record<string, unknown>) => { dict: Record<string, unknown>; write(opts?: Record<string, unknown>): ArrayBuffer };
    DicomMetaDictionary: { denaturalizeDataset(ds: Record<string, unknown>): Record<string, unknown> };
  };
}
export const WSI_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.77.1.6';
export const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
export const EXPLICIT_LE = '1.2.840.10008.1.2.1';
export const IMPLICIT_LE = '1.2.840.10008.1.2';

export interface InstanceSpec {
  readonly path: string;
  readonly width: number;
  readonly height: number;
  readonly frameWidth: number;
  readonly frameHeight: number;
  /** Encoded (JPEG) or raw RGB frames, row-major. */
  readonly frames: readonly Buffer[];
  readonly transferSyntax: string;
  readonly seriesUid?: string;
  readonly instanceNumber?: number;
  readonly imageType?: string;
  readonly photometric?: string;
  /** Written as TILED_FULL unless undefined is given explicitly (then the attribute is absent). */
  readonly organisation?: string | undefined;
  /** More attributes (naturalized names), e.g. a long value. */
  readonly extra?: Record<string, unknown>;
  /** One fragment per frame (default false: dcmjs splits frames into 20 KB fragments). */
  readonly oneFragment?: boolean;
}

/** Writes one instance with dcmjs. */
export function writeInstance(spec: InstanceSpec): void {
  const uid = `1.2.826.0.1.3680043.10.1${spec.instanceNumber ?? 1}.${spec.width}.${spec.height}`;
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: WSI_SOP_CLASS,
    MediaStorageSOPInstanceUID: uid,
    TransferSyntaxUID: spec.transferSyntax,
    ImplementationClassUID: '1.2.826.0.1.3680043.10.1',
  };
  const encapsulated = spec.transferSyntax === JPEG_BASELINE || !spec.transferSyntax.startsWith('1.2.840.10008.1.2') || spec.transferSyntax.startsWith('1.2.840.10008.1.2.4');
  const ds: Record<string, unknown> = {
    SOPClassUID: WSI_SOP_CLASS,
    SOPInstanceUID: uid,
    SeriesInstanceUID: spec.seriesUid ?? '1.2.826.0.1.3680043.10.1.999',
    StudyInstanceUID: '1.2.826.0.1.3680043.10.1.998',
    Modality: 'SM',
    ImageType: (spec.imageType ?? 'ORIGINAL\\PRIMARY\\VOLUME\\NONE').split('\\'),
    InstanceNumber: spec.instanceNumber ?? 1,
    Rows: spec.frameHeight,
    Columns: spec.frameWidth,
    TotalPixelMatrixColumns: spec.width,
    TotalPixelMatrixRows: spec.height,
    NumberOfFrames: String(spec.frames.length),
    SamplesPerPixel: 3,
    PhotometricInterpretation: spec.photometric ?? 'RGB',
    PlanarConfiguration: 0,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    ...('organisation' in spec ? (spec.organisation === undefined ? {} : { DimensionOrganizationType: spec.organisation }) : { DimensionOrganizationType: 'TILED_FULL' }),
    ...spec.extra,
    PixelData: encapsulated ? spec.frames.map(arrayBuffer) : [arrayBuffer(Buffer.concat(spec.frames))],
    _vrMap: { PixelData: 'OB' },
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(ds);
  const bytes = dict.write({ fragmentMultiframe: spec.oneFragment !== true });
  writeFileSync(spec.path, Buffer.from(bytes));
}

function arrayBuffer(b: Buffer): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length) as ArrayBuffer;
}

/** The JPEG tiles of every level of a (synthetic) tiled TIFF: the frames of one instance per level. */
export async function tiffLevels(tiffPath: string): Promise<Array<{ ifd: TiffIfd; frames: Buffer[] }>> {
  const fh = await open(tiffPath, 'r');
  try {
    const { ifds } = await parseTiff(fh);
    const out: Array<{ ifd: TiffIfd; frames: Buffer[] }> = [];
    for (const ifd of ifds) {
      const frames: Buffer[] = [];
      for (let i = 0; i < ifd.offsets.length; i++) {
        const b = Buffer.alloc(ifd.byteCounts[i]!);
        await fh.read(b, 0, b.length, ifd.offsets[i]!);
        frames.push(b);
      }
      out.push({ ifd, frames });
    }
    return out;
  } finally {
    await fh.close();
  }
}

/** A level of an open slide cut into fw x fh frames (edges padded white): raw RGB, or JPEG when quality is given. */
export async function cutFrames(slide: SlideReader, level: number, fw: number, fh: number, quality?: number): Promise<Buffer[]> {
  const { width, height } = slide.levels[level]!;
  const frames: Buffer[] = [];
  for (let y = 0; y < height; y += fh) {
    for (let x = 0; x < width; x += fw) {
      const w = Math.min(fw, width - x);
      const h = Math.min(fh, height - y);
      const part = await slide.readRegion(level, x, y, w, h);
      const frame = Buffer.alloc(fw * fh * 3, 255);
      for (let r = 0; r < h; r++) Buffer.from(part.buffer, part.byteOffset + r * w * 3, w * 3).copy(frame, r * fw * 3);
      frames.push(quality === undefined ? frame : await sharp(frame, { raw: { width: fw, height: fh, channels: 3 } }).jpeg({ quality, chromaSubsampling: '4:4:4' }).toBuffer());
    }
  }
  return frames;
}
