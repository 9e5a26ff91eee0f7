import t from 'tap';
import { closeSessions } from '../../models/runtime/session.js';
import { embedTiles } from '../../stages/embed-tiles.js';
import type { TileEmbeddings } from '../../stages/types.js';
import { builtModels, collect, countedSource, makeCtx, makeTile } from '../helpers/models-ctx.js';

const models = builtModels();
t.teardown(async () => {
  await closeSessions();
  models.cleanup();
});

/** Row i of a packed group's avg or max. */
const row = (rows: Float32Array, dim: number, i: number): Float32Array => rows.subarray(i * dim, (i + 1) * dim);
/** A packed group's rows of one output. */
const out = (g: TileEmbeddings, name: string): Float32Array => g.outputs.find((o) => o.name === name)!.rows;

t.test('embeds a group: one packed record, tiles in order, [n x 1280] avg/max, same as one at a time', async (t) => {
  const tiles = [makeTile(64, 1), makeTile(64, 2), makeTile(64, 3)];
  const ctx = makeCtx('embed');
  const groups = await collect(embedTiles({ model: models.efficientnet, threads: 1 })(countedSource([tiles]).source, ctx));
  t.equal(groups.length, 1, 'one group in, one record out');
  const g = groups[0]!;
  t.same([g.kind, g.image_id, g.patient_id, g.image_num, g.x, g.y, g.outputs.map((o) => [o.name, o.dim])], ['embeddings', 'img1', 'p1', 0, [64, 128, 192], [0, 0, 0], [['avg', 1280], ['max', 1280]]]);
  t.equal(out(g, 'avg').length, 3 * 1280);
  t.equal(out(g, 'max').length, 3 * 1280);
  t.equal(out(g, 'avg').buffer.byteLength, 3 * 1280 * 4, 'own buffer, just the rows (cheap to serialize)');
  t.ok(out(g, 'avg').every(Number.isFinite) && out(g, 'max').every(Number.isFinite));
  t.ok(out(g, 'avg').every((v, i) => v <= out(g, 'max')[i]! + 1e-5), 'avg <= max everywhere (the rows are not swapped)');
  t.notSame(row(out(g, 'avg'), 1280, 0), row(out(g, 'avg'), 1280, 1), 'different tiles, different embeddings');
  const singles = await collect(embedTiles({ model: models.efficientnet })(countedSource(tiles.map((x) => [x])).source, makeCtx()));
  t.same(singles.map((s) => s.x), [[64], [128], [192]]);
  let maxErr = 0;
  singles.forEach((s, i) => out(s, 'avg').forEach((v, j) => (maxErr = Math.max(maxErr, Math.abs(v - row(out(g, 'avg'), 1280, i)[j]!)))));
  t.ok(maxErr < 1e-4, `batched == single within 1e-4 (got ${maxErr})`);
  t.equal(ctx.metrics.custom.tilesEmbedded, 3);
});

t.test('modelBatch: a group runs in model batches of that size and equals those batches run alone, bit for bit', async (t) => {
  const tiles = [1, 2, 3, 4, 5].map((i) => makeTile(64, i));
  const ctx = makeCtx('embed');
  const [group] = await collect(embedTiles({ model: models.efficientnet, modelBatch: 2 })(countedSource([tiles]).source, ctx));
  t.same(group!.x, tiles.map((x) => x.x), 'one group in, one group out, in order');
  // The same model batches, each its own input batch: [1,2], [3,4], [5].
  const alone = await collect(embedTiles({ model: models.efficientnet })(countedSource([tiles.slice(0, 2), tiles.slice(2, 4), tiles.slice(4)]).source, makeCtx()));
  t.same(alone.map((g) => g.x.length), [2, 2, 1]);
  const concat = (parts: Float32Array[]): Float32Array => Float32Array.from(parts.flatMap((p) => [...p]));
  t.same(out(group!, 'avg'), concat(alone.map((g) => out(g, 'avg'))), 'avg rows identical');
  t.same(out(group!, 'max'), concat(alone.map((g) => out(g, 'max'))), 'max rows identical');
  t.equal(ctx.metrics.custom.tilesEmbedded, 5);
});

t.test('a group that mixes slides is refused with E_GROUP_SLIDES naming both', async (t) => {
  await t.rejects(collect(embedTiles({ model: models.efficientnet })(countedSource([[makeTile(8, 1, 'a'), makeTile(8, 2, 'b')]]).source, makeCtx())), {
    code: 'E_GROUP_SLIDES',
    message: /mixes slides a and b/,
  });
});

t.test('a swapped-in model with the wrong outputs is refused with E_MODEL', async (t) => {
  await t.rejects(collect(embedTiles({ model: models.stainnet })(countedSource([[makeTile(8, 1)]]).source, makeCtx())), {
    code: 'E_MODEL',
    message: /not a usable embedder: output 'normalized' has rank 4\. Expected outputs float32 \[N, width\]/,
  });
});

t.test('a missing model file is E_MODEL naming the file', async (t) => {
  await t.rejects(collect(embedTiles({ model: `${models.dir}/nope.onnx` })(countedSource([[makeTile(8, 1)]]).source, makeCtx())), {
    code: 'E_MODEL',
    message: /nope\.onnx/,
  });
});

t.test('mixed tile sizes in a batch: E_TILE', async (t) => {
  await t.rejects(collect(embedTiles({ model: models.efficientnet })(countedSource([[makeTile(16, 1), makeTile(8, 2)]]).source, makeCtx())), {
    code: 'E_TILE',
  });
});

t.test('backpressure: a slow consumer bounds what the stage pulls', async (t) => {
  const src = countedSource(Array.from({ length: 10 }, (_, i) => [makeTile(32, i)]));
  const it = embedTiles({ model: models.efficientnet })(src.source, makeCtx())[Symbol.asyncIterator]();
  await it.next();
  t.equal(src.pulled(), 1);
  await it.next();
  await it.next();
  t.equal(src.pulled(), 3, 'one batch pulled per batch consumed');
  await it.return?.();
  t.ok(src.closed(), 'upstream closed');
});

t.test('cleanup: break closes the upstream; abort gives E_ABORTED', async (t) => {
  const src = countedSource(Array.from({ length: 4 }, (_, i) => [makeTile(32, i)]));
  for await (const b of embedTiles({ model: models.efficientnet })(src.source, makeCtx())) {
    t.equal(b.x.length, 1);
    break;
  }
  t.ok(src.closed());
  const ac = new AbortController();
  const src2 = countedSource(Array.from({ length: 4 }, (_, i) => [makeTile(32, i)]));
  const it = embedTiles({ model: models.efficientnet })(src2.source, makeCtx('e', ac))[Symbol.asyncIterator]();
  await it.next();
  ac.abort();
  await t.rejects(it.next(), { code: 'E_ABORTED' });
  t.ok(src2.closed());
});

t.test('eager: a model that fails to load is reported at the first batch, not as an unhandled rejection', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));
  const stage = embedTiles({ model: `${models.dir}/eager-missing.onnx`, eager: true });
  await new Promise((r) => setTimeout(r, 50)); // let the background load fail first
  await t.rejects(collect(stage(countedSource([[makeTile(8, 1)]]).source, makeCtx())), { code: 'E_MODEL', message: /eager-missing\.onnx/ });
  t.same(unhandled, [], 'no unhandled rejection');
});
