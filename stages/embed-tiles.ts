/** Embeds batches of tiles with EfficientNet-B0 in onnxruntime: global average and max pooled features per tile. */
import ort from 'onnxruntime-node';
import { EngineError, type Stage, type StageContext } from '../engine/types.js';
import { getSession } from './lib/onnx-session.js';
import { batchTileSize, throwIfAborted } from './lib/onnx-stage-util.js';
import type { Tile, TileEmbedding } from './types.js';

export interface EmbedOptions {
  /** The embedding .onnx file (inputs `tiles` uint8 NHWC; outputs `avg`, `max` float32 [N,dim]). */
  readonly model: string;
  /** onnxruntime intra-op threads for this process (default 1). */
  readonly threads?: number;
  /** Create the session now (in the background) rather than at the first batch. */
  readonly eager?: boolean;
  /**
   * Tiles per onnxruntime run (default: the whole input batch). A larger input batch is run in consecutive model
   * batches of this size: the stage still takes and yields whole groups of tiles (graph.ts: groupSize).
   */
  readonly modelBatch?: number;
}

/**
 * Stage: Tile[] -> TileEmbedding[] (same order), in onnxruntime runs of `modelBatch` tiles. A run's input is one
 * concatenation of its tiles' pixels (none for a run of one). Each tile's avg/max is its own copy (slice, 5 KB): a
 * subarray view would drag the whole run's buffer through v8 serialization when the record crosses a process boundary.
 */
export function embedTiles(opts: EmbedOptions): Stage<Tile[], TileEmbedding[]> {
  if (opts.eager) {
    // The session is cached per process: the first batch will find it ready. A failure is reported there.
    getSession(opts.model, 'efficientnet', opts.threads ?? 1).catch(() => undefined);
  }
  return async function* embed(source: AsyncIterable<Tile[]>, ctx: StageContext): AsyncIterable<TileEmbedding[]> {
    let session: ort.InferenceSession | undefined;
    for await (const tiles of source) {
      throwIfAborted(ctx);
      if (tiles.length === 0) continue;
      const size = batchTileSize(tiles, ctx);
      session ??= await getSession(opts.model, 'efficientnet', opts.threads ?? 1);
      const step = Math.max(1, opts.modelBatch ?? tiles.length);
      const out: TileEmbedding[] = [];
      for (let i = 0; i < tiles.length; i += step) {
        throwIfAborted(ctx);
        out.push(...(await run(session, tiles.slice(i, i + step), size, ctx)));
      }
      ctx.metrics.custom.tilesEmbedded = (ctx.metrics.custom.tilesEmbedded ?? 0) + tiles.length;
      yield out;
    }
  };

  async function run(session: ort.InferenceSession, tiles: readonly Tile[], size: number, ctx: StageContext): Promise<TileEmbedding[]> {
    const per = size * size * 3;
    let batch = tiles[0]!.pixels;
    if (tiles.length > 1) {
      batch = new Uint8Array(per * tiles.length);
      tiles.forEach((t, i) => batch.set(t.pixels, i * per));
    }
    const res = await session.run({ tiles: new ort.Tensor('uint8', batch, [tiles.length, size, size, 3]) });
    const avg = res.avg!;
    const max = res.max!;
    try {
      const dim = avg.dims[1]!;
      if (avg.dims[0] !== tiles.length || max.dims[0] !== tiles.length || max.dims[1] !== dim) {
        throw new EngineError('E_MODEL', ctx.name, tiles[0]!.image_id,
          `${opts.model}: outputs avg [${avg.dims.join(',')}] / max [${max.dims.join(',')}] for a batch of ${tiles.length}`);
      }
      const a = avg.data as Float32Array;
      const m = max.data as Float32Array;
      return tiles.map((t, i): TileEmbedding => ({
        kind: 'embedding',
        image_id: t.image_id,
        patient_id: t.patient_id,
        image_num: t.image_num,
        x: t.x,
        y: t.y,
        avg: a.slice(i * dim, (i + 1) * dim),
        max: m.slice(i * dim, (i + 1) * dim),
      }));
    } finally {
      avg.dispose();
      max.dispose();
    }
  }
}
