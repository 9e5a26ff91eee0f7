import t from 'tap';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { combineEmbeddings, type EmbeddingAcc } from '../../stages/combine-embeddings.js';
import type { CombineContext, CombineFn } from '../../engine/types.js';
import type { EmbeddingBag, TileEmbeddings } from '../../stages/types.js';

const DIM = 16;

/** One tile's embedding (the fixtures' unit; the reducer takes them packed in groups, see `one` and `packed`). */
interface TileEmbedding {
  readonly image_id: string;
  readonly patient_id: string;
  readonly image_num: number;
  readonly x: number;
  readonly y: number;
  readonly avg: Float32Array;
  readonly max: Float32Array;
}

/** A group of one tile. */
function one(e: TileEmbedding): TileEmbeddings {
  const dim = e.avg.length;
  return { kind: 'embeddings', image_id: e.image_id, patient_id: e.patient_id, image_num: e.image_num, x: [e.x], y: [e.y], outputs: [{ name: 'avg', dim, rows: e.avg }, { name: 'max', dim: e.max.length, rows: e.max }] };
}

/** Tiles of one image packed into one group, as a worker sends them. */
function packed(group: readonly TileEmbedding[]): TileEmbeddings {
  const dim = group[0]!.avg.length;
  const avg = new Float32Array(group.length * dim);
  const max = new Float32Array(group.length * dim);
  group.forEach((e, i) => {
    avg.set(e.avg, i * dim);
    max.set(e.max, i * dim);
  });
  return { ...one(group[0]!), x: group.map((e) => e.x), y: group.map((e) => e.y), outputs: [{ name: 'avg', dim, rows: avg }, { name: 'max', dim, rows: max }] };
}

/** Deterministic embeddings of `n` tiles over 3 images, in a scrambled arrival order. */
function tiles(n: number, patient = 'P1'): TileEmbedding[] {
  const out: TileEmbedding[] = [];
  for (let i = 0; i < n; i++) {
    const image_num = i % 3;
    const avg = new Float32Array(DIM).map((_, d) => i * 100 + d);
    const max = new Float32Array(DIM).map((_, d) => -(i * 100 + d));
    out.push({ image_id: `img-${image_num}`, patient_id: patient, image_num, x: 448 * ((i * 7) % 11), y: 448 * Math.floor(i / 3), avg, max });
  }
  // Scramble deterministically.
  return out.map((e, i) => [((i * 7919) % 104729), e] as const).sort((a, b) => a[0] - b[0]).map(([, e]) => e);
}

async function context(t: Tap.Test): Promise<CombineContext> {
  const dir = await mkdtemp(join(tmpdir(), 'spill-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return { key: 'P1', spillDir: join(dir, 'acc'), signal: new AbortController().signal };
}

async function fold(fn: CombineFn<TileEmbeddings, EmbeddingAcc, EmbeddingBag>, ctx: CombineContext, input: TileEmbedding[]): Promise<EmbeddingAcc> {
  let acc = await fn.createAccumulator(ctx);
  for (const e of input) acc = await fn.addInput(acc, one(e));
  return acc;
}

async function contents(bag: EmbeddingBag) {
  const read = async (which: string) => {
    const parts: number[] = [];
    const dim = bag.outputs.find((o) => o.name === which)?.dim ?? 1;
    for await (const chunk of bag.rows(which)) {
      if (chunk.length % dim !== 0) throw new Error(`a chunk of ${chunk.length} floats is not whole rows of ${dim}`);
      parts.push(...chunk);
    }
    return parts;
  };
  return { tiles: bag.tiles.map((r) => ({ ...r })), avg: await read('avg'), max: await read('max') };
}

const files = async (dir: string) => (await readdir(dir).catch(() => [] as string[])).length;

t.test('in-memory bag: tiles sorted by (image_num, y, x), rows follow', async (t) => {
  const ctx = await context(t);
  const fn = combineEmbeddings();
  const input = tiles(40);
  const bag = await fn.extractOutput(await fold(fn, ctx, input));
  t.same(bag.outputs, [{ name: 'avg', dim: DIM }, { name: 'max', dim: DIM }]);
  t.equal(bag.tiles.length, 40);
  const { tiles: refs, avg, max } = await contents(bag);
  const sorted = [...input].sort((a, b) => a.image_num - b.image_num || a.y - b.y || a.x - b.x);
  t.same(refs, sorted.map((e) => ({ image_id: e.image_id, image_num: e.image_num, x: e.x, y: e.y })));
  t.same(avg, sorted.flatMap((e) => Array.from(e.avg)));
  t.same(max, sorted.flatMap((e) => Array.from(e.max)));
  t.equal(await files(ctx.spillDir), 0, 'nothing spilled');
  await bag.dispose();
});

t.test('spilled bag gives exactly the rows of the in-memory bag; files removed by bag.dispose', async (t) => {
  const input = tiles(700); // > BAG_CHUNK_ROWS, so chunks and coalesced reads span several batches
  const memCtx = await context(t);
  const memory = await combineEmbeddings().extractOutput(await fold(combineEmbeddings(), memCtx, input));
  const ctx = await context(t);
  // Tiny threshold: spills every 3 tiles, so the files hold many appends.
  const fn = combineEmbeddings({ spillThresholdBytes: 3 * DIM * 8 });
  const acc = await fold(fn, ctx, input);
  t.ok(acc.spill !== undefined, 'the accumulator spilled');
  t.ok(acc.memBytes <= 3 * DIM * 8, 'memory held stays under the threshold');
  t.equal(await files(ctx.spillDir), 2, 'avg and max spill files');
  const spilled = await fn.extractOutput(acc);
  t.same(await contents(spilled), await contents(memory));
  await fn.dispose!(acc); // the bag owns the files now: disposing the accumulator must not break it
  t.same((await contents(spilled)).avg.length, 700 * DIM, 'bag still readable after dispose(acc)');
  await spilled.dispose();
  await spilled.dispose();
  t.equal(await files(ctx.spillDir), 0, 'spill files removed');
  await t.rejects(contents(spilled), { code: 'E_DISPOSED' });
  await memory.dispose();
});

t.test('a spilled bag stays readable after the engine removes spillDir', async (t) => {
  const ctx = await context(t);
  const fn = combineEmbeddings({ spillThresholdBytes: 1 });
  const bag = await fn.extractOutput(await fold(fn, ctx, tiles(20)));
  await rm(ctx.spillDir, { recursive: true, force: true });
  t.equal((await contents(bag)).max.length, 20 * DIM);
  await bag.dispose();
});

t.test('merging accumulators, spilled and not, equals one accumulator over all inputs', async (t) => {
  const input = tiles(300);
  const ctx = await context(t);
  const whole = await combineEmbeddings().extractOutput(await fold(combineEmbeddings(), ctx, input));
  const expected = await contents(whole);
  await whole.dispose();
  for (const threshold of [1, 10 * DIM * 8, 1 << 30]) {
    const fn = combineEmbeddings({ spillThresholdBytes: threshold });
    const parts = [input.slice(0, 100), input.slice(100, 101), input.slice(101)];
    const accs = [];
    for (const part of parts) accs.push(await fold(fn, ctx, part));
    const merged = await fn.mergeAccumulators(accs, ctx);
    for (const acc of accs) await fn.dispose!(acc); // idempotent: merge consumed them already
    const bag = await fn.extractOutput(merged);
    t.same(await contents(bag), expected, `threshold ${threshold}`);
    await bag.dispose();
    t.equal(await files(ctx.spillDir), 0, `threshold ${threshold}: no files left`);
  }
});

t.test('an in-memory bag yields its rows as they are, and stops with E_DISPOSED when disposed mid-read', async (t) => {
  const fn = combineEmbeddings();
  const input = tiles(5).filter((e) => e.image_id === 'img-0');
  const bag = await fn.extractOutput(await fold(fn, await context(t), input));
  const rows = bag.rows('max')[Symbol.asyncIterator]();
  const first = await rows.next();
  const firstTile = [...input].sort((a, b) => a.y - b.y || a.x - b.x)[0]!;
  t.same(first.value, firstTile.max, 'the first tile\'s max row');
  t.equal((first.value as Float32Array).length, DIM, 'one row at a time');
  await bag.dispose();
  await t.rejects(rows.next(), { code: 'E_DISPOSED', message: /P1 read after dispose/ });
});

t.test('spill files removed by dispose(acc), also when extractOutput fails', async (t) => {
  const ctx = await context(t);
  const fn = combineEmbeddings({ spillThresholdBytes: 1 });
  const acc = await fold(fn, ctx, tiles(10));
  t.equal(await files(ctx.spillDir), 2);
  await fn.dispose!(acc);
  t.equal(await files(ctx.spillDir), 0);
  await t.rejects(Promise.resolve(fn.addInput(acc, one(tiles(1)[0]!))), { code: 'E_ACCUMULATOR_STATE' });

  const dup = tiles(10);
  const acc2 = await fold(fn, ctx, [...dup, dup[4]!]);
  await t.rejects(Promise.resolve(fn.extractOutput(acc2)), { code: 'E_DUPLICATE_TILE', message: /P1.*received twice/ });
  await fn.dispose!(acc2);
  t.equal(await files(ctx.spillDir), 0, 'failure path leaves no spill file');
});

t.test('inconsistent embedding widths are an error', async (t) => {
  const ctx = await context(t);
  const fn = combineEmbeddings();
  const acc = await fold(fn, ctx, tiles(2));
  const bad = { ...tiles(1)[0]!, avg: new Float32Array(DIM + 1), max: new Float32Array(DIM + 1) };
  await t.rejects(Promise.resolve(fn.addInput(acc, one(bad))), { code: 'E_EMBEDDING_DIM', message: /img-0/ });
  // Outputs may differ in width from each other (not from one tile to the next).
  const acc2 = await fn.addInput(await fn.createAccumulator(ctx), one({ ...bad, max: new Float32Array(DIM) }));
  await t.rejects(Promise.resolve(fn.addInput(acc2, one(tiles(1)[0]!))), { code: 'E_EMBEDDING_DIM', message: /expected avg\[17\], max\[16\]/ });
  await fn.dispose!(acc2);
  await fn.dispose!(acc);
});

t.test('packed groups give the same bag as their tiles one at a time', async (t) => {
  const input = tiles(40);
  const fn = combineEmbeddings();
  const single = await contents(await fn.extractOutput(await fold(fn, await context(t), input)));
  // Groups of up to 8 tiles of one image, in arrival order (a slide's tiles reach the reducer in groups).
  let acc = await fn.createAccumulator(await context(t));
  for (const image of ['img-0', 'img-1', 'img-2']) {
    const mine = input.filter((e) => e.image_id === image);
    for (let i = 0; i < mine.length; i += 8) acc = await fn.addInput(acc, packed(mine.slice(i, i + 8)));
  }
  const grouped = await contents(await fn.extractOutput(acc));
  t.equal(grouped.tiles.length, 40);
  t.same(grouped, single);
});

t.test('a malformed group is E_EMBEDDING_DIM naming its image', async (t) => {
  const fn = combineEmbeddings();
  const acc = await fn.createAccumulator(await context(t));
  const g = packed(tiles(6).filter((e) => e.image_id === 'img-1'));
  await t.rejects(Promise.resolve(fn.addInput(acc, { ...g, y: g.y.slice(1) })), { code: 'E_EMBEDDING_DIM', message: /2 tile\(s\) of image img-1 has 1 y positions/ });
  const [avg, max] = g.outputs;
  await t.rejects(Promise.resolve(fn.addInput(acc, { ...g, outputs: [{ ...avg!, rows: avg!.rows.subarray(1) }, max!] })), { code: 'E_EMBEDDING_DIM', message: /img-1/ });
  await t.rejects(Promise.resolve(fn.addInput(acc, { ...g, outputs: [{ ...avg!, dim: 0 }, max!] })), { code: 'E_EMBEDDING_DIM' });
  await t.rejects(Promise.resolve(fn.addInput(acc, { ...g, outputs: [] })), { code: 'E_EMBEDDING_DIM', message: /no outputs/ });
  await t.rejects(Promise.resolve(fn.addInput(acc, { ...g, outputs: [avg!, { ...max!, name: 'avg' }] })), { code: 'E_EMBEDDING_DIM', message: /distinct names/ });
  t.equal(acc.entries.length, 0, 'nothing of a malformed group is added');
  await fn.dispose!(acc);
});

t.test('an aborted run stops spilling', async (t) => {
  const ctx = await context(t);
  const ac = new AbortController();
  const fn = combineEmbeddings({ spillThresholdBytes: 1 });
  const acc = await fn.createAccumulator({ ...ctx, signal: ac.signal });
  ac.abort();
  await t.rejects(Promise.resolve(fn.addInput(acc, one(tiles(1)[0]!))));
  await fn.dispose!(acc);
  t.equal(await files(ctx.spillDir), 0);
});

t.test('an empty accumulator gives an empty bag', async (t) => {
  const ctx = await context(t);
  const fn = combineEmbeddings();
  const bag = await fn.extractOutput(await fn.createAccumulator(ctx));
  t.equal(bag.tiles.length, 0);
  t.same((await contents(bag)).avg, []);
});

t.test('a memory budget shared by all patients: past it, the patient holding the most rows spills', async (t) => {
  const row = DIM * 4 * 2; // avg + max bytes of one tile
  // Per-patient threshold out of the way; 100 tiles in memory at most across patients.
  const fn = combineEmbeddings({ spillThresholdBytes: 1e9, memoryBudgetBytes: 100 * row });
  const big = { ...(await context(t)), key: 'big' };
  const small = { ...(await context(t)), key: 'small' };
  const accBig = await fold(fn, big, tiles(90, 'big'));
  t.equal(accBig.spill, undefined, '90 tiles: under the budget, in memory');
  const accSmall = await fold(fn, small, tiles(20, 'small'));
  t.ok(accBig.spill !== undefined && accBig.memBytes === 0, 'the budget was passed: the largest bag (big) spilled');
  t.equal(accSmall.spill, undefined, 'the small one stays in memory');
  t.equal(accSmall.memBytes, 20 * row);
  // Same rows as without any budget.
  const plain = combineEmbeddings();
  const memBig = await plain.extractOutput(await fold(plain, await context(t), tiles(90, 'big')));
  const bagBig = await fn.extractOutput(accBig);
  t.same(await contents(bagBig), await contents(memBig));
  await bagBig.dispose();
  await memBig.dispose();
  await fn.dispose!(accSmall);
  t.equal(await files(small.spillDir), 0);
});

t.test('named outputs of different widths (a ViT-like cls/mean plus a third): kept apart through spills and merges, in order', async (t) => {
  const widths = { cls: 6, mean: 6, extra: 3 } as const;
  const group = (i: number, image_num: number): TileEmbeddings => ({
    kind: 'embeddings', image_id: `img-${image_num}`, patient_id: 'P1', image_num, x: [448 * i], y: [0],
    outputs: Object.entries(widths).map(([name, dim], k) => ({ name, dim, rows: new Float32Array(dim).map((_, d) => 1000 * k + 10 * i + d + image_num / 10) })),
  });
  const expect = (name: keyof typeof widths, order: Array<[number, number]>) => {
    const k = Object.keys(widths).indexOf(name);
    return order.flatMap(([i, image_num]) => Array.from({ length: widths[name] }, (_, d) => Math.fround(1000 * k + 10 * i + d + image_num / 10)));
  };
  for (const threshold of [1e9, 1]) {
    const fn = combineEmbeddings({ spillThresholdBytes: threshold });
    const ctx = await context(t);
    let a = await fn.createAccumulator(ctx);
    let b = await fn.createAccumulator(ctx);
    for (const i of [3, 1, 2]) a = await fn.addInput(a, group(i, 1));
    for (const i of [5, 0]) b = await fn.addInput(b, group(i, 0));
    const bag = await fn.extractOutput(await fn.mergeAccumulators!([a, b], ctx));
    t.same(bag.outputs, [{ name: 'cls', dim: 6 }, { name: 'mean', dim: 6 }, { name: 'extra', dim: 3 }], `threshold ${threshold}: names and widths in model order`);
    const order: Array<[number, number]> = [[0, 0], [5, 0], [1, 1], [2, 1], [3, 1]];
    t.same(bag.tiles.map((r) => [r.x / 448, r.image_num]), order);
    for (const name of ['cls', 'mean', 'extra'] as const) {
      const rows: number[] = [];
      for await (const chunk of bag.rows(name)) rows.push(...chunk);
      t.same(rows, expect(name, order), `threshold ${threshold}: ${name} rows`);
    }
    if (threshold === 1) t.equal(await files(ctx.spillDir), 3, 'one spill file per output');
    await t.rejects(collectRows(bag.rows('avg')), { code: 'E_EMBEDDING_OUTPUT', message: /has no output 'avg' \(it has cls\[6\], mean\[6\], extra\[3\]\)/ });
    await bag.dispose();
    t.equal(await files(ctx.spillDir), 0, 'no file left');
  }
});

t.test('a tile whose outputs differ from the first tile\'s (names, order, widths) is E_EMBEDDING_DIM', async (t) => {
  const fn = combineEmbeddings();
  const acc = await fn.createAccumulator(await context(t));
  const g = (x: number, outputs: Array<[string, number]>): TileEmbeddings => ({
    kind: 'embeddings', image_id: 'img-0', patient_id: 'P1', image_num: 0, x: [x], y: [0],
    outputs: outputs.map(([name, dim]) => ({ name, dim, rows: new Float32Array(dim) })),
  });
  await fn.addInput(acc, g(0, [['cls', 4], ['mean', 4]]));
  for (const bad of [[['mean', 4], ['cls', 4]], [['cls', 4]], [['cls', 4], ['mean', 5]], [['cls', 4], ['avg', 4]]] as Array<Array<[string, number]>>) {
    await t.rejects(Promise.resolve(fn.addInput(acc, g(448, bad))), { code: 'E_EMBEDDING_DIM', message: /expected cls\[4\], mean\[4\]/ }, JSON.stringify(bad));
  }
  t.equal(acc.entries.length, 1);
  await fn.dispose!(acc);
});

async function collectRows(rows: AsyncIterable<Float32Array>): Promise<number> {
  let n = 0;
  for await (const r of rows) n += r.length;
  return n;
}
