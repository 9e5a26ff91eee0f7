/**
 * The per-slide writers on in-memory bags: WriteH5 (values, shapes, dtypes, attributes read back with h5wasm; the
 * same bytes whatever the bag's chunking; blocks across BLOCK_ROWS; a ViT's outputs), WriteGeoJSON (structure),
 * the element passed on unchanged, and the error paths (a slide without facts, an unwritable folder: no file left).
 */
import t from 'tap';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import h5wasm from 'h5wasm/node';
import { writeH5, BLOCK_ROWS } from '../../stages/slide-files/write-h5.js';
import { writeGeoJson } from '../../stages/slide-files/write-geojson.js';
import { signedArea } from '../../stages/slide-files/check.js';
import type { SlideFacts } from '../../stages/slide-files/slide-facts.js';
import type { SlideFilesElement } from '../../stages/slide-files/slide-tiles.js';
import type { EmbeddingBag, TileRef } from '../../stages/types.js';
import { stageContext } from '../helpers/examples.js';

await h5wasm.ready;
const TILE = { tileSize: 448, downsample: 16, backgroundThreshold: 190, maxBackground: 0.1 };
const OUTPUTS = [
  { name: 'cls', dim: 3 },
  { name: 'mean', dim: 2 },
];
const value = (output: string, tile: number, j: number): number => (output === 'cls' ? 1 : -1) * (tile * 10 + j) + 0.25;

/** A bag over two slides (`n0` and `n1` tiles) yielding rows in chunks of `chunk` rows. */
function bag(n0: number, n1: number, chunk: number): EmbeddingBag {
  const tiles: TileRef[] = [
    ...Array.from({ length: n0 }, (_, i) => ({ image_id: 's0', image_num: 0, x: 448 * (i % 40), y: 448 * Math.floor(i / 40) })),
    ...Array.from({ length: n1 }, (_, i) => ({ image_id: 's1', image_num: 1, x: 448 * i, y: 896 })),
  ];
  return {
    patient_id: 'p',
    outputs: OUTPUTS,
    tiles,
    async *rows(name) {
      const dim = OUTPUTS.find((o) => o.name === name)!.dim;
      for (let start = 0; start < tiles.length; start += chunk) {
        const end = Math.min(tiles.length, start + chunk);
        const rows = new Float32Array((end - start) * dim);
        for (let i = start; i < end; i++) for (let j = 0; j < dim; j++) rows[(i - start) * dim + j] = value(name, i, j);
        yield rows;
      }
    },
    async dispose() {},
  };
}

const facts = (image_id: string, tiles: number): SlideFacts => ({
  image_id,
  width: 40 * 448,
  height: 20 * 448,
  levels: [1, 4, 16],
  tileLevel: 0,
  mppX: 0.25,
  mppY: 0.2501,
  magnification: 40,
  format: 'svs',
  histogramTiles: tiles,
  histogram: new Float32Array(4096).fill(1 / 4096),
});

function element(b: EmbeddingBag | undefined, slides: SlideFacts[]): SlideFilesElement {
  return ['p', { patient: [{ patient_id: 'p', center_id: '1', image_ids: ['s0', 's1'], lines: [2, 3] }], embeddings: b === undefined ? [] : [b], histograms: [], slides: [slides] }];
}

async function run<T>(stage: (s: AsyncIterable<SlideFilesElement>, ctx: ReturnType<typeof stageContext>) => AsyncIterable<T>, items: SlideFilesElement[]): Promise<T[]> {
  const out: T[] = [];
  async function* src() {
    yield* items;
  }
  for await (const x of stage(src(), stageContext('WriteTest'))) out.push(x);
  return out;
}

const tmp = async (t: { teardown(fn: () => unknown): void }): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), 'slide-files-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
};

const N0 = BLOCK_ROWS + 44; // crosses a block
const N1 = 5;
const encoder = { name: 'vit-tiny', sha256: 'ab'.repeat(32) };

t.test('WriteH5: one file per slide; values, shapes, dtypes, attributes; the element passed on', async (t) => {
  const dir = await tmp(t);
  const files: string[] = [];
  const el = element(bag(N0, N1, 7), [facts('s0', N0), facts('s1', N1)]);
  const out = await run(writeH5({ outDir: dir, tile: TILE, encoder, precision: 'fp32', onFile: (f) => files.push(f) }), [el]);
  t.equal(out[0], el, 'the same element');
  t.same(files, ['s0.h5', 's1.h5']);
  t.same((await readdir(dir)).sort(), ['s0.h5', 's1.h5'], 'no temporary file left');
  const f = new h5wasm.File(join(dir, 's1.h5'), 'r');
  try {
    t.same(f.keys().sort(), ['color_histogram', 'coords', 'features', 'features_cls', 'features_mean']);
    const cls = f.get('features_cls') as InstanceType<typeof h5wasm.Dataset>;
    t.equal(cls.dtype, '<f');
    t.same(cls.shape, [N1, 3]);
    t.same(Array.from(cls.value as Float32Array), Array.from({ length: N1 * 3 }, (_, k) => value('cls', N0 + Math.floor(k / 3), k % 3)));
    t.same(Array.from((f.get('features') as InstanceType<typeof h5wasm.Dataset>).value as Float32Array), Array.from(cls.value as Float32Array), 'features = the first output (no avg)');
    t.same((f.get('features_mean') as InstanceType<typeof h5wasm.Dataset>).shape, [N1, 2]);
    const coords = f.get('coords') as InstanceType<typeof h5wasm.Dataset>;
    t.equal(coords.dtype, '<q');
    t.same(Array.from(coords.value as BigInt64Array, Number), Array.from({ length: N1 }, (_, i) => [448 * i, 896]).flat());
    t.same(coords.attrs['downsample']!.value, new BigInt64Array([1n, 1n]));
    t.equal(f.attrs['mpp_x']!.value, 0.25);
    t.equal(f.attrs['magnification']!.value, 40n);
    t.equal(f.attrs['encoder']!.value, 'vit-tiny');
    t.equal(f.attrs['embedding_outputs']!.value, 'cls,mean');
    t.equal(f.attrs['precision']!.value, 'fp32');
    t.equal(f.attrs['max_tiles'], undefined, 'absent parameters are not written');
  } finally {
    f.close();
  }
  const big = new h5wasm.File(join(dir, 's0.h5'), 'r');
  try {
    const mean = big.get('features_mean') as InstanceType<typeof h5wasm.Dataset>;
    t.same(mean.shape, [N0, 2]);
    const v = mean.value as Float32Array;
    t.equal(v[2 * (N0 - 1) + 1], Math.fround(value('mean', N0 - 1, 1)), 'the last row, after a block boundary');
    t.equal(v[2 * BLOCK_ROWS], Math.fround(value('mean', BLOCK_ROWS, 0)), 'the first row of the second block');
  } finally {
    big.close();
  }
});

t.test('WriteH5: the same bytes whatever the chunking of the bag rows, and at another time', async (t) => {
  const a = await tmp(t);
  const b = await tmp(t);
  await run(writeH5({ outDir: a, tile: TILE, encoder, precision: 'fp32' }), [element(bag(N0, N1, 1), [facts('s0', N0), facts('s1', N1)])]);
  await new Promise((r) => setImmediate(r));
  await run(writeH5({ outDir: b, tile: TILE, encoder, precision: 'fp32' }), [element(bag(N0, N1, 256), [facts('s0', N0), facts('s1', N1)])]);
  for (const f of ['s0.h5', 's1.h5']) t.ok((await readFile(join(a, f))).equals(await readFile(join(b, f))), `${f} byte-identical`);
  t.ok(!(await readFile(join(a, 's0.h5'))).includes(Buffer.from(new Uint32Array([Math.floor(Date.now() / 1000)]).buffer)), 'no current timestamp in the file');
});

t.test('WriteH5: a patient without tiles passes without a file', async (t) => {
  const dir = await tmp(t);
  const el = element(undefined, []);
  t.same(await run(writeH5({ outDir: dir, tile: TILE, encoder, precision: 'fp32' }), [el]), [el]);
  t.same(await readdir(dir), []);
});

t.test('WriteH5: a slide with tiles but no facts is E_JOIN; an unwritable folder fails naming the file; nothing left', async (t) => {
  const dir = await tmp(t);
  await t.rejects(run(writeH5({ outDir: dir, tile: TILE, encoder, precision: 'fp32' }), [element(bag(3, 2, 4), [facts('s0', 3)])]), { code: 'E_JOIN', message: /slide s1 has 2 tile\(s\) but its summary never arrived/ });
  t.same(await readdir(dir), []);
  const missing = join(dir, 'no-such-folder');
  await t.rejects(run(writeH5({ outDir: missing, tile: TILE, encoder, precision: 'fp32' }), [element(bag(3, 2, 4), [facts('s0', 3), facts('s1', 2)])]), { code: 'E_OUTPUT_IO', message: new RegExp(`cannot write ${missing}/s0.h5: ENOENT`) });
  t.same(await readdir(dir), []);
});

t.test('WriteGeoJSON: a FeatureCollection per slide, one closed counter-clockwise annotation polygon per tile', async (t) => {
  const dir = await tmp(t);
  const el = element(bag(N0, N1, 9), [facts('s0', N0), facts('s1', N1)]);
  const out = await run(writeGeoJson({ outDir: dir, tileSize: 448 }), [el]);
  t.equal(out[0], el);
  t.same((await readdir(dir)).sort(), ['s0.geojson', 's1.geojson']);
  const doc = JSON.parse(await readFile(join(dir, 's0.geojson'), 'utf8')) as { type: string; slide: { width: number }; features: Array<{ type: string; geometry: { type: string; coordinates: number[][][] }; properties: Record<string, unknown> }> };
  t.equal(doc.type, 'FeatureCollection');
  t.equal(doc.slide.width, 40 * 448);
  t.equal(doc.features.length, N0);
  const f = doc.features[41]!;
  t.same(f.geometry, { type: 'Polygon', coordinates: [[[448, 448], [896, 448], [896, 896], [448, 896], [448, 448]]] });
  t.ok(signedArea(f.geometry.coordinates[0]!) > 0, 'counter-clockwise');
  t.match(f.properties, { objectType: 'annotation', classification: { name: 'Tile', color: [0, 160, 80] }, tile_index: 41, x: 448, y: 448 });
  await t.rejects(run(writeGeoJson({ outDir: join(dir, 'missing'), tileSize: 448 }), [el]), { code: 'E_OUTPUT_IO', message: /missing\/s0\.geojson/ });
});
