/** Safe resolution of an image_id to a slide file inside the slides folder. */
import { open, readdir, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { SlideError } from './errors.js';

/** Extensions tried, in order, for `<slidesDir>/<image_id>.<ext>`. */
export const SLIDE_EXTENSIONS = ['svs', 'tif', 'tiff', 'ome.tif', 'ome.tiff', 'qptiff', 'ndpi', 'mrxs', 'scn', 'vms', 'vmu', 'bif', 'dcm'] as const;

/** Throws E_BAD_IMAGE_ID unless image_id is a plain file-name stem (no separators, `..`, NUL, absolute path). */
export function checkImageId(image_id: string, slidesDir: string): void {
  const bad =
    image_id.length === 0 ||
    image_id.includes('\0') ||
    image_id.includes('/') ||
    image_id.includes('\\') ||
    image_id === '.' ||
    image_id === '..' ||
    image_id.startsWith('..') ||
    resolve(slidesDir, image_id) !== join(resolve(slidesDir), image_id);
  if (bad) throw new SlideError('E_BAD_IMAGE_ID', image_id, slidesDir, 'image_id must be a plain file name inside the slides folder');
}

/**
 * Finds `<slidesDir>/<image_id>.<ext>` over SLIDE_EXTENSIONS, or `<slidesDir>/<image_id>` when the id is
 * already a file name; a DICOM series is a folder `<image_id>` or `<image_id>.dcm` (of `.dcm` files).
 * Never looks outside slidesDir. Throws E_BAD_IMAGE_ID, E_SLIDE_UNSUPPORTED (a file of that name in a
 * format we do not read) or E_SLIDE_MISSING.
 */
export async function resolveSlidePath(slidesDir: string, image_id: string): Promise<string> {
  checkImageId(image_id, slidesDir);
  const root = resolve(slidesDir);
  const candidates = [...SLIDE_EXTENSIONS.map((ext) => `${image_id}.${ext}`), image_id];
  for (const name of candidates) {
    const p = join(root, name);
    if (!p.startsWith(root + sep)) continue;
    const st = await stat(p).catch(() => undefined);
    if (st?.isFile()) return p;
    if (st?.isDirectory() && (name === image_id || name === `${image_id}.dcm`)) return p;
  }
  await refuseUnsupported(root, image_id);
  throw new SlideError('E_SLIDE_MISSING', image_id, join(root, image_id), `no slide file (tried .${SLIDE_EXTENSIONS.join(', .')}, the exact name and a DICOM folder)`);
}

/**
 * What a slide's results depend on in its file(s), for checkpoint keys: `size:mtime` of a file; for a DICOM
 * series folder, its `.dcm` files' total size, latest mtime and count (a level replaced changes it).
 */
export async function slideFileStamp(path: string): Promise<string> {
  const st = await stat(path);
  if (!st.isDirectory()) return `${st.size}:${st.mtimeMs}`;
  let size = 0;
  let mtime = 0;
  const names = (await readdir(path)).filter((n) => n.toLowerCase().endsWith('.dcm'));
  for (const n of names) {
    const f = await stat(join(path, n));
    size += f.size;
    mtime = Math.max(mtime, f.mtimeMs);
  }
  return `${size}:${mtime}:${names.length} dcm`; // size first: largest-first.ts orders by it
}

/** Formats users have that no backend reads, by extension. */
const UNSUPPORTED_FORMATS: Record<string, string> = {
  czi: 'Zeiss CZI',
  isyntax: 'Philips iSyntax',
  vsi: 'Olympus VSI',
  lif: 'Leica LIF',
  svslide: 'Sakura SVSlide',
  kfb: 'KFBio KFB',
  sdpc: 'SQRAY SDPC',
  tmap: '3DHistech TMAP',
  zvi: 'Zeiss ZVI',
  nd2: 'Nikon ND2',
  jpg: 'a plain JPEG image (not a whole-slide image)',
  jpeg: 'a plain JPEG image (not a whole-slide image)',
  png: 'a plain PNG image (not a whole-slide image)',
};

/**
 * Only on the error path: a file named `<image_id>.<something>` that we do not read is E_SLIDE_UNSUPPORTED,
 * naming the file and its format (by extension, else by its first bytes).
 */
async function refuseUnsupported(root: string, image_id: string): Promise<void> {
  const names = await readdir(root).catch(() => [] as string[]);
  // `<image_id>.<ext>` with one extension (`a.b.svs` is slide `a.b`'s file, not slide `a`'s), or a known one.
  const ours = (n: string): boolean => n.startsWith(`${image_id}.`) && (!n.slice(image_id.length + 1).includes('.') || UNSUPPORTED_FORMATS[n.split('.').pop()!.toLowerCase()] !== undefined);
  const name = names.filter(ours).sort()[0];
  if (name === undefined) return;
  const path = join(root, name);
  const ext = name.slice(image_id.length + 1);
  const format = UNSUPPORTED_FORMATS[name.split('.').pop()!.toLowerCase()] ?? (await sniffFormat(path)) ?? `'.${ext}' files`;
  throw new SlideError('E_SLIDE_UNSUPPORTED', image_id, path, `found ${name}, ${format}: this format is not supported (supported: .${SLIDE_EXTENSIONS.join(', .')} and DICOM folders)`);
}

/** A name for what the file's first bytes say it is (TIFF, BigTIFF, DICOM), or undefined. */
async function sniffFormat(path: string): Promise<string | undefined> {
  const head = Buffer.alloc(132);
  let n = 0;
  try {
    const fh = await open(path, 'r');
    try {
      n = (await fh.read(head, 0, 132, 0)).bytesRead;
    } finally {
      await fh.close();
    }
  } catch (err) {
    return `unreadable (${(err as Error).message})`;
  }
  if (n >= 132 && head.toString('latin1', 128, 132) === 'DICM') return 'a DICOM file (name it .dcm)';
  const magic = head.subarray(0, 4).toString('hex');
  if (magic === '49492a00' || magic === '4d4d002a') return 'a TIFF with an extension we do not read (rename it .tif if it is a brightfield slide)';
  if (magic === '49492b00' || magic === '4d4d002b') return 'a BigTIFF with an extension we do not read (rename it .tif if it is a brightfield slide)';
  return undefined;
}
