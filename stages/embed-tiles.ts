/** Embeds batches of tiles in onnxruntime: every output of the embedder (EfficientNet-B0: avg, max; a ViT: cls, mean) per tile. */
import ort from 'onnxruntime-node';
import { EngineError, type Stage, type StageContext } from '../engine/types.js';
import { getSession } from '../models/runtime/session.js';
import { batchTileSize, throwIfAborted } from '../models/runtime/batch-checks.js';
import type { EmbeddingOutput, Tile, TileEmbeddings } from './types.js';

export interface EmbedOptions {
  /** The embedding .onnx file (input `tiles` uint8 NHWC; outputs float32 [N,dim] each, e.g. `avg`, `max`). */
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
      let packed: Array<{ name: string; dim: number; rows: Float32Array }> | undefined;
      for (let i = 0; i < tiles.length; i += step) {
        throwIfAborted(ctx);
        const out = await run(session, tiles.slice(i, i + step), size, ctx); // same tile size, so the same widths every run
        packed ??= out.map((o) => ({ name: o.name, dim: o.dim, rows: new Float32Array(tiles.length * o.dim) }));
        out.forEach((o, k) => packed![k]!.rows.set(o.rows, i * o.dim));
      }
      ctx.metrics.custom.tilesEmbedded = (ctx.metrics.custom.tilesEmbedded ?? 0) + tiles.length;
      yield {
        kind: 'embeddings',
        image_id: first.image_id,
        patient_id: first.patient_id,
        image_num: first.image_num,
        x: tiles.map((t) => t.x),
        y: tiles.map((t) => t.y),
        outputs: packed!,
      };
    }
  };

  /** One onnxruntime run: each output's rows for the tiles (in the model's output order), copied out of the run's tensors. */
  async function run(session: ort.InferenceSession, tiles: readonly Tile[], size: number, ctx: StageContext): Promise<EmbeddingOutput[]> {
    const per = size * size * 3;
    let batch = tiles[0]!.pixels;
    if (tiles.length > 1) {
      batch = new Uint8Array(per * tiles.length);
      tiles.forEach((t, i) => batch.set(t.pixels, i * per));
    }
    const res = await session.run({ tiles: new ort.Tensor('uint8', batch, [tiles.length, size, size, 3]) });
    try {
      return session.outputNames.map((name) => {
        const t = res[name]!;
        const dim = t.dims[1]!;
        if (t.dims.length !== 2 || t.dims[0] !== tiles.length || !(dim > 0) || t.type !== 'float32') {
          throw new EngineError('E_MODEL', ctx.name, tiles[0]!.image_id, `${opts.model}: output ${name} is ${t.type} [${t.dims.join(',')}] for a batch of ${tiles.length}`);
        }
        return { name, dim, rows: (t.data as Float32Array).slice() };
      });
    } finally {
      for (const t of Object.values(res)) t.dispose();
    }
  }
}
