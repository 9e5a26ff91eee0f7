/** Embeds batches of tiles with EfficientNet-B0 in onnxruntime: global average and max pooled features per tile. */
import ort from 'onnxruntime-node';
import { EngineError, type Stage, type StageContext } from '../engine/types.js';
import { getSession } from '../models/runtime/session.js';
import { batchTileSize, throwIfAborted } from '../models/runtime/batch-checks.js';
import type { Tile, TileEmbeddings } from './types.js';

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
 * Stage: Tile[] (a group of one slide's tiles) -> TileEmbeddings (the same tiles, in order, packed), in onnxruntime
 * runs of `modelBatch` tiles. A run's input is one concatenation of its tiles' pixels (none for a run of one); its
 * output rows are copied into the group's packed rows.
 */
export function embedTiles(opts: EmbedOptions): Stage<Tile[], TileEmbeddings> {
  if (opts.eager) {
    // The session is cached per process: the first batch will find it ready. A failure is reported there.
    getSession(opts.model, 'efficientnet', opts.threads ?? 1).catch(() => undefined);
  }
  return async function* embed(source: AsyncIterable<Tile[]>, ctx: StageContext): AsyncIterable<TileEmbeddings> {
    let session: ort.InferenceSession | undefined;
    for await (const tiles of source) {
      throwIfAborted(ctx);
      if (tiles.length === 0) continue;
      const first = tiles[0]!;
      const other = tiles.find((t) => t.image_id !== first.image_id);
      if (other !== undefined) {
        throw new EngineError('E_GROUP_SLIDES', ctx.name, first.image_id, `a group of tiles mixes slides ${first.image_id} and ${other.image_id}: embeddings are packed per slide`);
      }
      const size = batchTileSize(tiles, ctx);
      session ??= await getSession(opts.model, 'efficientnet', opts.threads ?? 1);
      const step = Math.max(1, opts.modelBatch ?? tiles.length);
      let packed: { dim: number; avg: Float32Array; max: Float32Array } | undefined;
      for (let i = 0; i < tiles.length; i += step) {
        throwIfAborted(ctx);
        const out = await run(session, tiles.slice(i, i + step), size, ctx); // same tile size, so the same dim every run
        packed ??= { dim: out.dim, avg: new Float32Array(tiles.length * out.dim), max: new Float32Array(tiles.length * out.dim) };
        packed.avg.set(out.avg, i * out.dim);
        packed.max.set(out.max, i * out.dim);
      }
      ctx.metrics.custom.tilesEmbedded = (ctx.metrics.custom.tilesEmbedded ?? 0) + tiles.length;
      yield {
        kind: 'embeddings',
        image_id: first.image_id,
        patient_id: first.patient_id,
        image_num: first.image_num,
        x: tiles.map((t) => t.x),
        y: tiles.map((t) => t.y),
        ...packed!,
      };
    }
  };

  /** One onnxruntime run: the tiles' avg and max rows, copied out of the run's output tensors. */
  async function run(session: ort.InferenceSession, tiles: readonly Tile[], size: number, ctx: StageContext): Promise<{ dim: number; avg: Float32Array; max: Float32Array }> {
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
      if (avg.dims[0] !== tiles.length || max.dims[0] !== tiles.length || max.dims[1] !== dim || !(dim > 0)) {
        throw new EngineError('E_MODEL', ctx.name, tiles[0]!.image_id,
          `${opts.model}: outputs avg [${avg.dims.join(',')}] / max [${max.dims.join(',')}] for a batch of ${tiles.length}`);
      }
      return { dim, avg: (avg.data as Float32Array).slice(), max: (max.data as Float32Array).slice() };
    } finally {
      avg.dispose();
      max.dispose();
    }
  }
}
