/**
 * A per-pixel normalizer evaluated once for all 2^24 colours: a 48 MB RGB lookup table indexed by
 * (r<<16 | g<<8 | b)*3. Cached on disk keyed by the model file's sha256, written atomically (temp + rename),
 * so later processes just read it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { isPixelwiseModel } from '../check.js';
import { ModelError } from '../errors.js';
import { getSession } from './session.js';
import { mapOrReadFile } from './map-file.js';

export const LUT_BYTES = 3 << 24;
/** Colours per ONNX run when building: 2^18 (a [1,256,1024,3] tensor; ~32 MB per float intermediate, so the build stays small). */
const CHUNK = 1 << 18;

/** Rounds a float on 0..255 to uint8, half up, clamped (the one rounding both LUT and ONNX paths use). */
export function toByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.floor(v + 0.5);
}

/** Copies a normalizer output (float32 on 0..255, or uint8) into `out` as uint8. */
export function outputToBytes(data: Float32Array | Uint8Array, out: Uint8Array): void {
  if (data instanceof Uint8Array) out.set(data);
  else for (let i = 0; i < data.length; i++) out[i] = toByte(data[i]!);
}

/** Runs the normalizer session on every colour. */
export async function buildLut(session: ort.InferenceSession): Promise<Uint8Array> {
  const lut = new Uint8Array(LUT_BYTES);
  const input = new Uint8Array(CHUNK * 3);
  for (let start = 0; start < 1 << 24; start += CHUNK) {
    for (let i = 0; i < CHUNK; i++) {
      const c = start + i;
      input[i * 3] = c >>> 16;
      input[i * 3 + 1] = (c >>> 8) & 255;
      input[i * 3 + 2] = c & 255;
    }
    const feeds = { tiles: new ort.Tensor('uint8', input, [1, 256, CHUNK / 256, 3]) };
    const res = await session.run(feeds);
    const out = res.normalized;
    if (!out) throw new ModelError('E_MODEL', 'normalizer gave no `normalized` output');
    outputToBytes(out.data as Float32Array | Uint8Array, lut.subarray(start * 3, (start + CHUNK) * 3));
    out.dispose();
  }
  return lut;
}

/** sha256 of a file, hex. */
export async function fileSha256(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/** Where the table for a model with this sha256 lives in `cacheDir`. */
export function lutPath(cacheDir: string, sha256: string): string {
  return path.join(cacheDir, `stain-lut-${sha256}.rgb`);
}

/**
 * The table for `modelPath`: mapped from `cacheDir` when present (and the right size; read-only memory), else built
 * with `session()` and, when `cacheDir` is given, written there atomically.
 */
export async function loadOrBuildLut(
  modelPath: string,
  session: () => Promise<ort.InferenceSession>,
  cacheDir?: string,
): Promise<Uint8Array> {
  if (cacheDir !== undefined) {
    const cached = await cachedLut(modelPath, cacheDir);
    // Mapped, not read: the pages are the page cache's, shared by the workers (models/runtime/map-file.ts).
    if (cached !== undefined) return (await mapOrReadFile(cached)).bytes;
  }
  const lut = await buildLut(await session());
  if (cacheDir !== undefined) {
    const file = lutPath(cacheDir, await fileSha256(modelPath));
    await mkdir(cacheDir, { recursive: true });
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(lut);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
    } finally {
      await rm(tmp, { force: true });
    }
  }
  return lut;
}

/** Normalizes RGB pixels through the table into `out` (may be the same array as `pixels`). */
export function applyLut(lut: Uint8Array, pixels: Uint8Array, out: Uint8Array): void {
  for (let i = 0; i < pixels.length; i += 3) {
    const j = ((pixels[i]! << 16) | (pixels[i + 1]! << 8) | pixels[i + 2]!) * 3;
    out[i] = lut[j]!;
    out[i + 1] = lut[j + 1]!;
    out[i + 2] = lut[j + 2]!;
  }
}

/**
 * Builds the table for `modelPath` into `cacheDir` unless already there with the right size (call once in the
 * main process before starting workers so they all just read it). Only the file's size is checked: the
 * parent never loads the 48 MB table. Returns the table's path.
 */
export async function ensureLut(modelPath: string, cacheDir: string, threads = 1): Promise<string> {
  const file = await cachedLut(modelPath, cacheDir);
  if (file !== undefined) return file;
  // Absent or the wrong size (e.g. cut short): build it (loadOrBuildLut sees the wrong size and rebuilds).
  await loadOrBuildLut(modelPath, () => getSession(modelPath, 'stainnet', threads), cacheDir);
  return lutPath(cacheDir, await fileSha256(modelPath));
}

/**
 * The cached table's path for `modelPath` when it is there with the right size, else undefined. Only per-pixel
 * models get a table, so a hit also says the model is per-pixel (without parsing it).
 */
export async function cachedLut(modelPath: string, cacheDir: string): Promise<string | undefined> {
  const file = lutPath(cacheDir, await fileSha256(modelPath));
  const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  return st?.size === LUT_BYTES ? file : undefined;
}

/**
 * How workers should apply the normalizer `model`, decided once by the parent so that they do not parse the model
 * again: a per-pixel model becomes a lookup table, built now into `cacheDir` (before the workers start) rather than
 * once per worker. A table already cached for these model bytes settles it without parsing the model at all.
 */
export async function normalizerMode(model: string, cacheDir: string, threads = 1): Promise<'lut' | 'onnx'> {
  if ((await cachedLut(model, cacheDir)) !== undefined) return 'lut';
  if (!isPixelwiseModel(await readFile(model))) return 'onnx';
  await ensureLut(model, cacheDir, threads);
  return 'lut';
}
