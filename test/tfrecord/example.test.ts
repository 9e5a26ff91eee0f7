import t from 'tap';
import protobuf from 'protobufjs';
import { encodeExample, type PatientRecord } from '../../stages/tfrecord/example.js';
import type { EmbeddingBag, TileRef } from '../../stages/types.js';

// An independently written schema (not the vendored one), so the encoder is checked against the spec.
const SCHEMA = `
syntax = "proto3";
package check;
message Example { Features features = 1; }
message Features { map<string, Feature> feature = 1; }
message Feature { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
message BytesList { repeated bytes value = 1; }
message FloatList { repeated float value = 1 [packed = true]; }
message Int64List { repeated int64 value = 1 [packed = true]; }
`;
const Example = protobuf.parse(SCHEMA, { keepCase: true }).root.lookupType('check.Example');

interface Decoded {
  features: { feature: Record<string, { bytes_list?: { value: Uint8Array[] }; float_list?: { value: number[] }; int64_list?: { value: number[] } }> };
}

function decode(bytes: Uint8Array): Decoded {
  return Example.toObject(Example.decode(bytes), { longs: Number, arrays: true }) as Decoded;
}

/** A simple in-memory bag over given rows (avg and max, or any named outputs), counting disposals; `chunkRows` rows per chunk. */
export function memoryBag(patient_id: string, tiles: TileRef[], dim: number, avg: Float32Array, max: Float32Array, chunkRows = 3, named?: ReadonlyArray<{ name: string; dim: number; rows: Float32Array }>) {
  const state = { disposed: 0, reads: 0 };
  const outputs = named ?? [{ name: 'avg', dim, rows: avg }, { name: 'max', dim, rows: max }];
  const bag: EmbeddingBag = {
    patient_id,
    outputs: outputs.map((o) => ({ name: o.name, dim: o.dim })),
    tiles,
    async *rows(which) {
      state.reads++;
      const o = outputs.find((x) => x.name === which)!;
      for (let r = 0; r < tiles.length; r += chunkRows) yield o.rows.slice(r * o.dim, Math.min(tiles.length, r + chunkRows) * o.dim);
    },
    async dispose() {
      state.disposed++;
    },
  };
  return { bag, state };
}

function makeRecord(n: number, dim: number, label?: string, center_id = '3') {
  const tiles: TileRef[] = [];
  for (let i = 0; i < n; i++) tiles.push({ image_id: i % 2 ? 'img-b' : 'img-a', image_num: i % 2, x: 448 * i, y: 896 * i });
  const avg = new Float32Array(n * dim).map((_, i) => Math.sin(i) * 3.5);
  const max = new Float32Array(n * dim).map((_, i) => Math.cos(i) * 1e6);
  const histogram = new Float32Array(4096).map((_, i) => (i % 7) / 12285);
  const { bag, state } = memoryBag('P-7', tiles, dim, avg, max);
  const record: PatientRecord = {
    patient_id: 'P-7',
    patient: { patient_id: 'P-7', center_id, ...(label === undefined ? {} : { label }), image_ids: ['img-a', 'img-b'], lines: [2, 5] },
    bag,
    histogram: { patient_id: 'P-7', tiles: n, histogram },
  };
  return { record, avg, max, histogram, tiles, state };
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(Uint8Array.from(c));
  return Buffer.concat(parts);
}

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

t.test('an Example decodes, with an independent schema, to its inputs', async (t) => {
  for (const [n, dim] of [[5, 1280], [1, 3], [300, 8]] as const) {
    const { record, avg, max, histogram, tiles, state } = makeRecord(n, dim, 'MSI-H');
    const ex = encodeExample(record, { withLabel: true });
    const bytes = await collect(ex.chunks());
    t.equal(bytes.length, ex.byteLength, `n=${n} dim=${dim}: byteLength is exact`);
    const f = decode(bytes).features.feature;
    t.same(Object.keys(f).sort(), ['avg_embedding', 'center_id', 'color_histogram', 'image_ids', 'label', 'max_embedding', 'num_tiles', 'patient_id', 'tile_image_index', 'tile_x', 'tile_y']);
    t.same(f['avg_embedding']!.float_list!.value, Array.from(avg));
    t.same(f['max_embedding']!.float_list!.value, Array.from(max));
    t.same(f['color_histogram']!.float_list!.value, Array.from(histogram));
    t.same(f['center_id']!.int64_list!.value, [3]);
    t.same(f['num_tiles']!.int64_list!.value, [n]);
    t.same(f['label']!.bytes_list!.value.map(text), ['MSI-H']);
    t.same(f['patient_id']!.bytes_list!.value.map(text), ['P-7']);
    t.same(f['image_ids']!.bytes_list!.value.map(text), ['img-a', 'img-b']);
    t.same(f['tile_image_index']!.int64_list!.value, tiles.map((x) => x.image_num));
    t.same(f['tile_x']!.int64_list!.value, tiles.map((x) => x.x));
    t.same(f['tile_y']!.int64_list!.value, tiles.map((x) => x.y));
    // Re-readable: a second pass gives the same bytes; dispose frees the bag once.
    t.same(await collect(ex.chunks()), bytes);
    await ex.dispose();
    await ex.dispose();
    t.equal(state.disposed, 1);
    await t.rejects(collect(ex.chunks()), { code: 'E_DISPOSED' });
  }
});

t.test('the bytes equal what protobufjs itself encodes, with features in sorted order', async (t) => {
  const { record, avg, max, histogram, tiles } = makeRecord(4, 6, 'x');
  const ex = encodeExample(record, { withLabel: true });
  const ours = await collect(ex.chunks());
  const f = (value: object) => value;
  const all = {
    avg_embedding: f({ float_list: { value: Array.from(avg) } }),
    center_id: f({ int64_list: { value: [3] } }),
    color_histogram: f({ float_list: { value: Array.from(histogram) } }),
    image_ids: f({ bytes_list: { value: [Buffer.from('img-a'), Buffer.from('img-b')] } }),
    label: f({ bytes_list: { value: [Buffer.from('x')] } }),
    max_embedding: f({ float_list: { value: Array.from(max) } }),
    num_tiles: f({ int64_list: { value: [4] } }),
    patient_id: f({ bytes_list: { value: [Buffer.from('P-7')] } }),
    tile_image_index: f({ int64_list: { value: tiles.map((x) => x.image_num) } }),
    tile_x: f({ int64_list: { value: tiles.map((x) => x.x) } }),
    tile_y: f({ int64_list: { value: tiles.map((x) => x.y) } }),
  };
  const reference = Example.encode(Example.fromObject({ features: { feature: all } })).finish();
  t.same(Buffer.from(ours), Buffer.from(reference));
});

t.test('center_id is an exact int64, past 2^53 and at both ends of the range', async (t) => {
  const exact = (bytes: Uint8Array) =>
    (Example.toObject(Example.decode(bytes), { longs: String, arrays: true }) as { features: { feature: Record<string, { int64_list?: { value: string[] } }> } }).features.feature;
  for (const center of ['9007199254740993', '9223372036854775807', '-9223372036854775808', '-1', '0', String(2 ** 53 + 2)]) {
    const ex = encodeExample(makeRecord(2, 3, 'a', center).record, { withLabel: true });
    const bytes = await collect(ex.chunks());
    t.equal(bytes.length, ex.byteLength, `${center}: byteLength is exact`);
    t.same(exact(bytes)['center_id']!.int64_list!.value, [center], `${center} decodes to itself`);
  }
});

t.test('without label: no label feature even when the CSV has one', async (t) => {
  const { record } = makeRecord(2, 4, 'y');
  const ex = encodeExample(record, { withLabel: false });
  const f = decode(await collect(ex.chunks())).features.feature;
  t.notOk('label' in f);
  t.ok('num_tiles' in f);
});

t.test('errors', async (t) => {
  const noLabel = makeRecord(2, 4).record;
  t.throws(() => encodeExample(noLabel, { withLabel: true }), { code: 'E_NO_LABEL', message: /P-7.*lines 2, 5/ });
  const stray = makeRecord(2, 4, 'a').record;
  const badTiles = [...stray.bag.tiles, { image_id: 'other', image_num: 9, x: 0, y: 0 }];
  t.throws(() => encodeExample({ ...stray, bag: { ...stray.bag, tiles: badTiles } }, { withLabel: true }), { code: 'E_JOIN', message: /image other/ });
  const hist = makeRecord(2, 4, 'a').record;
  t.throws(() => encodeExample({ ...hist, histogram: { ...hist.histogram, histogram: new Float32Array(10) } }, { withLabel: true }), { code: 'E_HISTOGRAM_SIZE' });
  // A bag whose rows disagree with its tiles breaks the announced length: an error, not a bad record.
  const short = makeRecord(3, 4, 'a');
  const shortBag: EmbeddingBag = { ...short.record.bag, async *rows() { yield new Float32Array(4); } };
  const ex = encodeExample({ ...short.record, bag: shortBag }, { withLabel: true });
  await t.rejects(collect(ex.chunks()), { code: 'E_BAG_ROWS', message: /P-7.*expected 12/ });
  const longBag: EmbeddingBag = { ...short.record.bag, async *rows() { yield new Float32Array(16); } };
  const ex2 = encodeExample({ ...short.record, bag: longBag }, { withLabel: true });
  await t.rejects(collect(ex2.chunks()), { code: 'E_BAG_ROWS' });
});

t.test('named outputs (a ViT: cls, mean) and outputs of other widths: <name>_embedding each, with embedding_outputs and embedding_dims', async (t) => {
  const base = makeRecord(4, 6, 'x');
  const outputs = [
    { name: 'cls', dim: 6, rows: new Float32Array(4 * 6).map((_, i) => Math.sin(i) - 0.25) },
    { name: 'mean', dim: 6, rows: new Float32Array(4 * 6).map((_, i) => Math.cos(i) * 7) },
    { name: 'tok_2', dim: 2, rows: new Float32Array(4 * 2).map((_, i) => i / 3) },
  ];
  const { bag } = memoryBag('P-7', base.tiles, 0, new Float32Array(), new Float32Array(), 3, outputs);
  const ex = encodeExample({ ...base.record, bag }, { withLabel: true });
  const bytes = await collect(ex.chunks());
  t.equal(bytes.length, ex.byteLength, 'byteLength is exact');
  const f = decode(bytes).features.feature;
  t.same(Object.keys(f).sort(), ['center_id', 'cls_embedding', 'color_histogram', 'embedding_dims', 'embedding_outputs', 'image_ids', 'label', 'mean_embedding', 'num_tiles', 'patient_id', 'tile_image_index', 'tile_x', 'tile_y', 'tok_2_embedding']);
  for (const o of outputs) t.same(f[`${o.name}_embedding`]!.float_list!.value, Array.from(o.rows), o.name);
  t.same(f['embedding_outputs']!.bytes_list!.value.map(text), ['cls', 'mean', 'tok_2'], 'names in model order');
  t.same(f['embedding_dims']!.int64_list!.value, [6, 6, 2], 'widths in the same order');

  // avg and max of different widths are not the CNN schema: named, with their widths.
  const odd = memoryBag('P-7', base.tiles, 0, new Float32Array(), new Float32Array(), 3, [{ name: 'avg', dim: 6, rows: outputs[0]!.rows }, { name: 'max', dim: 2, rows: outputs[2]!.rows }]);
  const g = decode(await collect(encodeExample({ ...base.record, bag: odd.bag }, { withLabel: true }).chunks())).features.feature;
  t.same(g['embedding_dims']!.int64_list!.value, [6, 2]);
  t.equal(g['max_embedding']!.float_list!.value.length, 8);
});

t.test('an output name that cannot name a feature, or a bag without outputs, is E_EMBEDDING_OUTPUT', async (t) => {
  const base = makeRecord(2, 4, 'x');
  for (const name of ['9lives', 'a-b', 'x y', '', 'a'.repeat(65)]) {
    const { bag } = memoryBag('P-7', base.tiles, 0, new Float32Array(), new Float32Array(), 3, [{ name, dim: 4, rows: new Float32Array(8) }]);
    t.throws(() => encodeExample({ ...base.record, bag }, { withLabel: true }), { code: 'E_EMBEDDING_OUTPUT', message: /cannot name a feature/ }, JSON.stringify(name));
  }
  const { bag } = memoryBag('P-7', base.tiles, 0, new Float32Array(), new Float32Array(), 3, []);
  t.throws(() => encodeExample({ ...base.record, bag }, { withLabel: true }), { code: 'E_EMBEDDING_OUTPUT', message: /no embedder outputs/ });
});
