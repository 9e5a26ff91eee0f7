import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import ort from 'onnxruntime-node';
import { DT, GraphBuilder } from '../../models/onnx-builder.js';
import { applyLut, cachedLut, ensureLut, normalizerMode, loadOrBuildLut, LUT_BYTES, lutPath, fileSha256, outputToBytes } from '../../models/runtime/lut.js';
import { closeSessions, getSession } from '../../models/runtime/session.js';
import { normalizeTiles } from '../../stages/normalize-tiles.js';
import type { Tile } from '../../stages/types.js';
import { builtModels, collect, countedSource, makeCtx, makeTile, randomBytesSeeded } from '../helpers/models-ctx.js';

const models = builtModels();
const cacheDir = path.join(models.dir, 'lut-cache');
t.teardown(async () => {
  await closeSessions();
  models.cleanup();
});

t.test('LUT equals the ONNX path exactly on 100k random pixels (uint8 output)', async (t) => {
  const session = await getSession(models.stainnet, 'stainnet', 2);
  const lut = await loadOrBuildLut(models.stainnet, async () => session, cacheDir);
  t.equal(lut.length, LUT_BYTES);
  const n = 100_000;
  const px = randomBytesSeeded(n * 3, 99);
  const r = await session.run({ tiles: new ort.Tensor('uint8', px, [1, 1, n, 3]) });
  const viaOnnx = new Uint8Array(n * 3);
  outputToBytes(r.normalized!.data as Float32Array, viaOnnx);
  const viaLut = new Uint8Array(n * 3);
  applyLut(lut, px, viaLut);
  let diff = 0;
  for (let i = 0; i < viaLut.length; i++) if (viaLut[i] !== viaOnnx[i]) diff++;
  t.equal(diff, 0, 'no byte differs');
  const file = lutPath(cacheDir, await fileSha256(models.stainnet));
  t.equal(statSync(file).size, LUT_BYTES, 'cached on disk under the model sha256');
  t.same(readdirSync(cacheDir).filter((f) => f.endsWith('.tmp')), [], 'no temp file left behind');
});

t.test('a cached table is read back without running the model', async (t) => {
  const lut = await loadOrBuildLut(models.stainnet, async () => {
    throw new Error('should not build');
  }, cacheDir);
  t.equal(lut.length, LUT_BYTES);
  t.equal(await ensureLut(models.stainnet, cacheDir), lutPath(cacheDir, await fileSha256(models.stainnet)));
});

t.test('cachedLut: the path only when a table of the right size is cached for these model bytes', async (t) => {
  const dir = path.join(models.dir, 'lut-cached');
  const fsp = await import('node:fs/promises');
  await fsp.mkdir(dir, { recursive: true });
  const file = lutPath(dir, await fileSha256(models.stainnet));
  t.equal(await cachedLut(models.stainnet, dir), undefined, 'absent');
  await fsp.writeFile(file, '');
  await fsp.truncate(file, LUT_BYTES - 3);
  t.equal(await cachedLut(models.stainnet, dir), undefined, 'cut short');
  await fsp.truncate(file, LUT_BYTES);
  t.equal(await cachedLut(models.stainnet, dir), file, 'right size');
  const other = path.join(dir, 'other.onnx');
  await fsp.writeFile(other, Buffer.concat([await fsp.readFile(models.stainnet), Buffer.from([0])]));
  t.equal(await cachedLut(other, dir), undefined, 'other model bytes: another table');
});

t.test('normalizerMode: onnx for a model that is not per-pixel; a table built for one that is; a cached table needs no parse', async (t) => {
  const dir = path.join(models.dir, 'lut-mode');
  t.equal(await normalizerMode(models.efficientnet, dir), 'onnx', 'EfficientNet (3x3 convs, pooling): onnxruntime');
  t.notOk(existsSync(dir) && readdirSync(dir).length > 0, 'no table built for it');
  t.equal(await normalizerMode(models.stainnet, dir), 'lut', 'StainNet (1x1 convs): the table');
  t.equal(await cachedLut(models.stainnet, dir), lutPath(dir, await fileSha256(models.stainnet)), 'built and cached');
  const noParse = await t.mockImport<typeof import('../../models/runtime/lut.js')>('../../models/runtime/lut.js', {
    '../../models/check.js': {
      isPixelwiseModel: () => {
        throw new Error('parsed the model');
      },
    },
  });
  t.equal(await noParse.normalizerMode(models.stainnet, dir), 'lut', 'cache hit: decided without parsing');
  await t.rejects(noParse.normalizerMode(models.efficientnet, dir), /parsed the model/, '(no table for that one: it is parsed)');
});

t.test('ensureLut checks only the cached file size: never reads the table; rebuilds a wrong-size file', async (t) => {
  const fsp = await import('node:fs/promises');
  const reads: string[] = [];
  const mocked = await t.mockImport<typeof import('../../models/runtime/lut.js')>('../../models/runtime/lut.js', {
    'node:fs/promises': {
      ...fsp,
      readFile: async (f: Parameters<typeof fsp.readFile>[0], ...rest: unknown[]) => {
        if (String(f).endsWith('.rgb')) reads.push(String(f));
        return (fsp.readFile as (...a: unknown[]) => Promise<Buffer>)(f, ...rest);
      },
    },
  });
  const dir = path.join(models.dir, 'lut-ensure');
  const file = lutPath(dir, await fileSha256(models.stainnet));
  // A sparse file of the right size and all zeros: accepted as is (a load + check would not notice either, but it would read 48 MB).
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(file, '');
  await fsp.truncate(file, LUT_BYTES);
  t.equal(await mocked.ensureLut(models.stainnet, dir), file);
  t.same(reads, [], 'the table was not read');
  const fh = await fsp.open(file, 'r');
  const head = Buffer.alloc(16);
  await fh.read(head, 0, 16, 3 * 0x808080);
  await fh.close();
  t.same([...head], new Array(16).fill(0), 'the right-size file was kept, not rebuilt');
  // Wrong size (a cut-short file): rebuilt to the full table.
  await fsp.truncate(file, 1000);
  t.equal(await mocked.ensureLut(models.stainnet, dir), file);
  t.equal(statSync(file).size, LUT_BYTES, 'rebuilt at full size');
  // Absent: built.
  await fsp.rm(file);
  t.equal(await mocked.ensureLut(models.stainnet, dir), file);
  t.equal(statSync(file).size, LUT_BYTES, 'built when absent');
  t.same(reads, [], 'building does not read the table back either');
});

t.test('stage: lut, onnx and auto modes give the same tiles; input tiles are untouched', async (t) => {
  const batches: Tile[][] = [[makeTile(32, 1), makeTile(32, 2)], [makeTile(32, 3)]];
  const before = batches.map((b) => b.map((x) => Uint8Array.from(x.pixels)));
  const results: Tile[][][] = [];
  for (const mode of ['lut', 'onnx', 'auto'] as const) {
    const ctx = makeCtx(`normalize-${mode}`);
    results.push(await collect(normalizeTiles({ model: models.stainnet, lutCacheDir: cacheDir, mode })(countedSource(batches).source, ctx)));
    t.equal(ctx.metrics.custom.tilesNormalized, 3);
  }
  t.same(results[0]!.map((b) => b.length), [2, 1]);
  t.same(results[1], results[0], 'onnx == lut');
  t.same(results[2], results[0], 'auto == lut');
  t.notSame(results[0]![0]![0]!.pixels, batches[0]![0]!.pixels, 'pixels changed');
  t.same(results[0]![0]![0]!.x, batches[0]![0]!.x, 'tile fields kept');
  t.same(batches.map((b) => b.map((x) => x.pixels)), before, 'inputs unchanged');
});

t.test('stage: inPlace writes the table lookups over the input tiles\' own pixels (same result as a copy)', async (t) => {
  const copied = await collect(normalizeTiles({ model: models.stainnet, lutCacheDir: cacheDir, mode: 'lut' })(countedSource([[makeTile(32, 4), makeTile(32, 5)]]).source, makeCtx('normalize-copy')));
  const batch = [makeTile(32, 4), makeTile(32, 5)];
  const buffers = batch.map((x) => x.pixels);
  const raw = buffers.map((b) => Uint8Array.from(b));
  const inPlace = await collect(normalizeTiles({ model: models.stainnet, lutCacheDir: cacheDir, mode: 'lut', inPlace: true })(countedSource([batch]).source, makeCtx('normalize-in-place')));
  t.same(inPlace, copied, 'same normalized tiles as the copying path');
  t.ok(inPlace[0]!.every((x, i) => x.pixels === buffers[i]), 'each output tile holds its input buffer');
  t.notSame(buffers[0], raw[0], 'the input buffer was overwritten');
});

t.test("model 'none' passes tiles through", async (t) => {
  const batch = [makeTile(8, 1)];
  const out = await collect(normalizeTiles({ model: 'none' })(countedSource([batch]).source, makeCtx()));
  t.equal(out[0], batch);
});

t.test('auto mode uses onnxruntime for a model that is not per-pixel (3x3 conv)', async (t) => {
  // A 3x3 box blur: not per-pixel, so a LUT would be wrong; auto must run the model.
  const g = new GraphBuilder();
  const x = g.op('Transpose', [g.op('Cast', [g.input('tiles', DT.UINT8, ['N', 'H', 'W', 3])], { to: { i: DT.FLOAT } })], { perm: { ints: [0, 3, 1, 2] } });
  const w = new Float32Array(3 * 9);
  for (let c = 0; c < 3; c++) for (let k = 0; k < 9; k++) w[c * 9 + k] = 1 / 9;
  const y = g.op('Conv', [x, g.float('w', [3, 1, 3, 3], w)], { group: { i: 3 }, pads: { ints: [1, 1, 1, 1] } });
  g.op('Transpose', [y], { perm: { ints: [0, 2, 3, 1] } }, 'normalized');
  g.output('normalized', DT.FLOAT, ['N', 'H', 'W', 3]);
  const file = path.join(models.dir, 'blur.onnx');
  writeFileSync(file, g.toBytes('blur', {}));
  const tile = makeTile(4, 5);
  const [out] = await collect(normalizeTiles({ model: file, lutCacheDir: cacheDir })(countedSource([[tile]]).source, makeCtx()));
  // Centre pixel (1,1) channel 0 is the mean of its 3x3 neighbourhood.
  let sum = 0;
  for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) sum += tile.pixels[(dy * 4 + dx) * 3]!;
  t.equal(out![0]!.pixels[(1 * 4 + 1) * 3], Math.floor(sum / 9 + 0.5));
  t.notOk(existsSync(lutPath(cacheDir, await fileSha256(file))), 'no table built for it');
});

t.test('tiles of different sizes in one batch: E_TILE naming the tile', async (t) => {
  const bad = { ...makeTile(8, 2), pixels: new Uint8Array(10) };
  await t.rejects(collect(normalizeTiles({ model: models.stainnet, lutCacheDir: cacheDir })(countedSource([[makeTile(8, 1), bad]]).source, makeCtx())), {
    code: 'E_TILE',
    message: /img1@16,0/,
  });
});

t.test('a swapped-in model with the wrong outputs is refused with E_MODEL', async (t) => {
  await t.rejects(
    collect(normalizeTiles({ model: models.efficientnet, mode: 'onnx' })(countedSource([[makeTile(8, 1)]]).source, makeCtx())),
    { code: 'E_MODEL', message: /output 'normalized' is missing/ },
  );
});

t.test('backpressure: a slow consumer bounds what the stage pulls', async (t) => {
  const batches = Array.from({ length: 20 }, (_, i) => [makeTile(8, i)]);
  const src = countedSource(batches);
  const it = normalizeTiles({ model: models.stainnet, lutCacheDir: cacheDir })(src.source, makeCtx())[Symbol.asyncIterator]();
  await it.next();
  await it.next();
  t.equal(src.pulled(), 2, 'pulled exactly as many batches as consumed');
  await it.return?.();
  t.ok(src.closed(), 'upstream closed on early return');
});

t.test('cleanup: breaking out closes the upstream; abort stops with E_ABORTED', async (t) => {
  const src = countedSource(Array.from({ length: 5 }, (_, i) => [makeTile(8, i)]));
  for await (const out of normalizeTiles({ model: models.stainnet, lutCacheDir: cacheDir })(src.source, makeCtx())) {
    t.equal(out.length, 1);
    break;
  }
  t.ok(src.closed(), 'upstream finally ran');
  t.equal(src.pulled(), 1);

  const ac = new AbortController();
  const src2 = countedSource(Array.from({ length: 5 }, (_, i) => [makeTile(8, i)]));
  const it = normalizeTiles({ model: models.stainnet, lutCacheDir: cacheDir })(src2.source, makeCtx('n', ac))[Symbol.asyncIterator]();
  await it.next();
  ac.abort();
  await t.rejects(it.next(), { code: 'E_ABORTED' });
  t.ok(src2.closed(), 'upstream finally ran after abort');
});


t.test('eager: the table is loaded once per stage instance and reused across runs (slides); a load failure waits for the first batch', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => void process.off('unhandledRejection', onUnhandled));
  const bad = normalizeTiles({ model: path.join(models.dir, 'eager-missing.onnx'), eager: true });
  await new Promise((r) => setTimeout(r, 50)); // let the background load fail first
  await t.rejects(collect(bad(countedSource([[makeTile(8, 1)]]).source, makeCtx())), { message: /eager-missing\.onnx/ });
  t.same(unhandled, [], 'no unhandled rejection');
  // One instance, two runs: both normalize identically (the second reuses the first's table).
  const stage = normalizeTiles({ model: models.stainnet, lutCacheDir: path.join(models.dir, 'lut-eager'), eager: true });
  const [a] = await collect(stage(countedSource([[makeTile(8, 5)]]).source, makeCtx()));
  const [b] = await collect(stage(countedSource([[makeTile(8, 5)]]).source, makeCtx()));
  t.same(a![0]!.pixels, b![0]!.pixels);
});
