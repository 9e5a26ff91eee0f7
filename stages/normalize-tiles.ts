/** Stain-normalizes batches of tiles with StainNet: a 2^24-colour lookup table when per-pixel, else onnxruntime. */
import { readFile } from 'node:fs/promises';
import ort from 'onnxruntime-node';
import type { Stage, StageContext } from '../engine/types.js';
import { isPixelwiseModel } from '../models/check.js';
import { applyLut, loadOrBuildLut, outputToBytes } from '../models/runtime/lut.js';
import { getSession } from '../models/runtime/session.js';
import { batchTileSize, throwIfAborted } from '../models/runtime/batch-checks.js';
import type { Tile } from './types.js';

export interface NormalizeOptions {
  /** The normalizer .onnx file, or 'none' to pass tiles through unchanged. */
  readonly model: string | 'none';
  /** Where lookup tables are cached (keyed by the model's sha256); without it the table lives in memory only. */
  readonly lutCacheDir?: string;
  /** onnxruntime intra-op threads for this process (default 1). */
  readonly threads?: number;
  /** 'auto' (default): the table when the model is per-pixel, else onnxruntime. */
  readonly mode?: 'lut' | 'onnx' | 'auto';
  /** Load the table or session now (in the background) rather than at the first batch: a worker warms up while its first slide opens. */
  readonly eager?: boolean;
  /**
   * The table path writes the normalized pixels over the tile's own buffer instead of a new one (the caller gives
   * the stage its tiles and keeps no use for the raw pixels). Default false. Saves a fresh 600 KB buffer per tile:
   * allocating, faulting in and later freeing it cost more than the lookups themselves when both cores work
   * (bench/RESULTS.md, decision 14).
   */
  readonly inPlace?: boolean;
}

type Normalizer = (tiles: readonly Tile[], size: number) => Promise<Uint8Array[]>;

async function lutNormalizer(opts: NormalizeOptions, model: string): Promise<Normalizer> {
  const lut = await loadOrBuildLut(model, () => getSession(model, 'stainnet', opts.threads ?? 1), opts.lutCacheDir);
  return async (tiles) =>
    tiles.map((t) => {
      const out = opts.inPlace ? t.pixels : new Uint8Array(t.pixels.length);
      applyLut(lut, t.pixels, out);
      return out;
    });
}

async function onnxNormalizer(opts: NormalizeOptions, model: string): Promise<Normalizer> {
  const session = await getSession(model, 'stainnet', opts.threads ?? 1);
  return async (tiles, size) => {
    const per = size * size * 3;
    const batch = tiles.length === 1 ? tiles[0]!.pixels : new Uint8Array(per * tiles.length);
    if (tiles.length > 1) tiles.forEach((t, i) => batch.set(t.pixels, i * per));
    const res = await session.run({ tiles: new ort.Tensor('uint8', batch, [tiles.length, size, size, 3]) });
    const out = res.normalized!;
    try {
      const data = out.data as Float32Array | Uint8Array;
      return tiles.map((_, i) => {
        const px = new Uint8Array(per);
        outputToBytes(data.subarray(i * per, (i + 1) * per), px);
        return px;
      });
    } finally {
      out.dispose();
    }
  };
}

/** Chooses the path once per stage instance ('auto': the table when the model is recognised as per-pixel). */
async function makeNormalizer(opts: NormalizeOptions, model: string): Promise<Normalizer> {
  const mode = opts.mode ?? 'auto';
  const useLut = mode === 'lut' || (mode === 'auto' && isPixelwiseModel(await readFile(model)));
  return useLut ? lutNormalizer(opts, model) : onnxNormalizer(opts, model);
}

/**
 * Stage: Tile[] -> Tile[] with normalized uint8 pixels: new tile objects with new pixel arrays, or, with `inPlace`
 * and the table, the input tiles' own arrays overwritten.
 */
export function normalizeTiles(opts: NormalizeOptions): Stage<Tile[], Tile[]> {
  // Made once per stage instance and kept across runs of the stage (a worker runs it once per slide):
  // loading the 48 MB table or the session again for every slide would dominate small slides.
  let normalizer: Promise<Normalizer> | undefined;
  if (opts.eager && opts.model !== 'none') {
    normalizer = makeNormalizer(opts, opts.model);
    // Not awaited yet: keep a failure for the first batch to report instead of an unhandled rejection.
    normalizer.catch(() => undefined);
  }
  return async function* normalize(source: AsyncIterable<Tile[]>, ctx: StageContext): AsyncIterable<Tile[]> {
    for await (const tiles of source) {
      throwIfAborted(ctx);
      if (tiles.length === 0) continue;
      if (opts.model === 'none') {
        yield tiles;
        continue;
      }
      const size = batchTileSize(tiles, ctx);
      normalizer ??= makeNormalizer(opts, opts.model);
      const pixels = await (await normalizer)(tiles, size);
      ctx.metrics.custom.tilesNormalized = (ctx.metrics.custom.tilesNormalized ?? 0) + tiles.length;
      yield tiles.map((t, i) => ({ ...t, pixels: pixels[i]! }));
    }
  };
}
