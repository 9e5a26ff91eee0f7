/**
 * report.html's tile-selection figures: per slide a small thumbnail (JPEG) and its background mask (blue PNG,
 * transparent over tissue) under the kept-tile grid drawn in SVG. The pictures are files in `report-files/`
 * beside report.html (listed in the dataset's manifest like the other files), referenced by relative path: the
 * HTML stays small however many figures it draws.
 */
import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import type { SlideSummary } from '../types.js';
import { naming, syncDir, writeDurable } from '../dataset/io.js';
import { escapeXml } from './svg.js';

/** The folder of the report's pictures, beside report.html. */
export const REPORT_FILES = 'report-files';

/** Width of a figure's pictures, pixels. */
export const PICTURE_WIDTH = 360;

/** What a slide's figure is drawn from: its summary's PNGs and kept-tile positions. */
export type SlidePictureInput = Pick<SlideSummary, 'width' | 'height' | 'positions' | 'thumbnailPng' | 'maskPng'> & { tileSize: number };

/** A slide's figure, ready to draw: its small pictures' bytes (about 360 px wide) and the kept-tile positions. */
export interface SlidePicture {
  readonly width: number;
  readonly height: number;
  readonly positions: SlideSummary['positions'];
  readonly tileSize: number;
  /** The thumbnail, JPEG (a photograph: a fifth of a PNG's bytes). */
  readonly thumbJpeg: Uint8Array;
  /** The background mask, PNG (two colours and an alpha channel: small and exact). */
  readonly maskPng: Uint8Array;
}

/**
 * Pictures for report.html, keyed by image_id. Each is prepared (slidePicture) as its slide's summary arrives,
 * during the run, so that the report does not encode hundreds of pictures one after another at the end.
 */
export type SlidePictures = Map<string, Promise<SlidePicture>>;

/**
 * The background mask (grey PNG, 255 = background) as a blue picture, transparent where there is tissue.
 * (Drawn as the grey mask itself, background was white over an off-white thumbnail: invisible.)
 */
async function blueMaskPng(maskPng: Uint8Array, width: number): Promise<Uint8Array> {
  const { data, info } = await sharp(maskPng).resize({ width, withoutEnlargement: true }).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  const rgba = Buffer.alloc(info.width * info.height * 4);
  for (let p = 0; p < info.width * info.height; p++) {
    rgba[p * 4 + 1] = 90;
    rgba[p * 4 + 2] = 255;
    rgba[p * 4 + 3] = data[p]! > 127 ? 255 : 0;
  }
  return new Uint8Array(await sharp(rgba, { raw: { width: info.width, height: info.height, channels: 4 } }).png({ palette: true }).toBuffer());
}

/** Shrinks a slide's thumbnail and mask for its figure (the full-size PNGs are not kept). */
export async function slidePicture(p: SlidePictureInput): Promise<SlidePicture> {
  const [thumb, maskPng] = await Promise.all([
    sharp(p.thumbnailPng).resize({ width: PICTURE_WIDTH, withoutEnlargement: true }).jpeg({ quality: 82 }).toBuffer(),
    blueMaskPng(p.maskPng, PICTURE_WIDTH),
  ]);
  return { width: p.width, height: p.height, positions: p.positions, tileSize: p.tileSize, thumbJpeg: new Uint8Array(thumb), maskPng };
}

/**
 * A slide's picture files, relative to report.html: a readable part of the image_id and a hash of it (two
 * image_ids that read the same once cleaned still get two names; any character is allowed in an image_id).
 */
export function pictureFiles(imageId: string): { thumb: string; mask: string } {
  const readable = imageId.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[.]+/, '_').slice(0, 60);
  const hash = createHash('sha256').update(imageId).digest('hex').slice(0, 10);
  const base = `${REPORT_FILES}/${readable}-${hash}`;
  return { thumb: `${base}.jpg`, mask: `${base}-mask.png` };
}

/** One slide's figure: thumbnail, mask drawn in translucent blue, kept tiles outlined in green. */
export function slideFigure(imageId: string, caption: string, picture: SlidePicture): string {
  const files = pictureFiles(imageId);
  const rects = picture.positions.map(([x, y]) => `<rect x="${x}" y="${y}" width="${picture.tileSize}" height="${picture.tileSize}"/>`).join('');
  const box = `x="0" y="0" width="${picture.width}" height="${picture.height}" preserveAspectRatio="none"`;
  return `<svg class="slide" viewBox="0 0 ${picture.width} ${picture.height}" width="${PICTURE_WIDTH}" preserveAspectRatio="xMinYMin meet">
  <image href="${escapeXml(files.thumb)}" ${box}/>
  <image href="${escapeXml(files.mask)}" ${box} opacity="0.3"/>
  <g fill="none" stroke="#0a0" stroke-width="${Math.max(2, picture.width / 400)}">${rects}</g>
</svg>
<figcaption>${caption}</figcaption>`;
}

/**
 * Writes the drawn figures' pictures into `<dir>/report-files/` (emptied first: a report written again into the
 * same folder keeps no stale picture). Each file is written durably (stages/dataset/io.ts); errors are E_OUTPUT_IO.
 */
export async function writePictureFiles(dir: string, drawn: ReadonlyArray<{ readonly imageId: string; readonly picture: SlidePicture }>): Promise<string[]> {
  const folder = join(dir, REPORT_FILES);
  await naming('remove', folder, () => rm(folder, { recursive: true, force: true }));
  if (drawn.length === 0) return [];
  await naming('create', folder, () => mkdir(folder, { recursive: true }));
  const written: string[] = [];
  for (const { imageId, picture } of drawn) {
    const files = pictureFiles(imageId);
    await writeDurable(join(dir, files.thumb), picture.thumbJpeg);
    await writeDurable(join(dir, files.mask), picture.maskPng);
    written.push(files.thumb, files.mask);
  }
  await syncDir(folder);
  return written;
}
