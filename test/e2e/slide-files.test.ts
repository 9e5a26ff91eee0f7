/**
 * --formats tfrecord,h5,geojson through the compiled CLI: one `<image_id>.h5` and `<image_id>.geojson` per slide,
 * read back with h5wasm and JSON.parse and compared with the TFRecords for the same tiles; listed in the manifest;
 * byte-identical whatever the worker count; checked by `inspect` (a tampered file is exit 1); bad --formats values
 * refused before any work (exit 2).
 */
import t from 'tap';
import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import h5wasm from 'h5wasm/node';
import { e2eUnavailable, expectedPositions, makeSlides, readExamples, runCli, shardBytes, tempDir, TILE, TILE_FLAGS, writeCsv, type SlideSpec } from '../helpers/e2e.js';
import { signedArea } from '../../stages/slide-files/check.js';

const T = TILE.tileSize;
const SLIDES: SlideSpec[] = [
  { image_id: 'a0', width: 1344, height: 1120, seed: 31, tissue: [{ kind: 'rect', x: T, y: T, w: 3 * T, h: 2 * T }] },
  { image_id: 'a1', width: 1120, height: 1344, seed: 32, tissue: [{ kind: 'rect', x: 0, y: T, w: 2 * T, h: 3 * T }] },
  { image_id: 'b0', width: 1344, height: 1344, seed: 33, tissue: [{ kind: 'ellipse', cx: 672, cy: 672, rx: 500, ry: 380 }] },
];
const ROWS = [
  { image_id: 'a1', center_id: 0, patient_id: 'pa', image_num: 1, label: '1' },
  { image_id: 'a0', center_id: 0, patient_id: 'pa', image_num: 0, label: '1' },
  { image_id: 'b0', center_id: 1, patient_id: 'pb', image_num: 0, label: '0' },
];

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function folderBytes(out: string, ext: string): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const f of (await readdir(out)).filter((n) => n.endsWith(ext)).sort()) m.set(f, sha256(await readFile(join(out, f))));
  return m;
}

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  await h5wasm.ready;
  const cwd = await tempDir(t, 'e2e-slide-files-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, SLIDES);
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, ROWS, true);
  const args = (out: string, ...more: string[]): string[] => ['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--progress', 'none', ...more];
  const out2 = join(cwd, 'out-w2');
  const out1 = join(cwd, 'out-w1');
  const run2 = await runCli(args(out2, '--workers', '2', '--formats', 'tfrecord,h5,geojson'), cwd);
  const run1 = await runCli(args(out1, '--workers', '1', '--formats', 'geojson,tfrecord,h5', '--bag-memory-mb', '1'), cwd);

  t.test('runs finish; one h5 and one geojson per slide, listed in the manifest', async (t) => {
    t.equal(run2.code, 0, run2.stderr);
    t.equal(run1.code, 0, run1.stderr);
    const names = (await readdir(out2)).filter((n) => !n.startsWith('.')).sort();
    t.same(names, ['a0.geojson', 'a0.h5', 'a1.geojson', 'a1.h5', 'b0.geojson', 'b0.h5', 'data-00000-of-00001.tfrecord', 'manifest.json', 'report-files', 'report.html', 'report.json']);
    const manifest = JSON.parse(await readFile(join(out2, 'manifest.json'), 'utf8')) as { files: Array<{ file: string; bytes: number; sha256: string }>; params: { formats: string[] } };
    t.same(manifest.params.formats, ['tfrecord', 'h5', 'geojson']);
    for (const f of ['a0.h5', 'a1.h5', 'b0.h5', 'a0.geojson', 'a1.geojson', 'b0.geojson']) {
      const bytes = await readFile(join(out2, f));
      t.match(manifest.files.find((e) => e.file === f), { bytes: bytes.length, sha256: sha256(bytes) }, `${f} listed with its size and sha256`);
    }
  });

  t.test('byte-identical whatever the worker count and bag spilling', async (t) => {
    t.same(await shardBytes(out1), await shardBytes(out2), 'shards');
    const h5a = await folderBytes(out2, '.h5');
    t.equal(h5a.size, 3);
    t.same(await folderBytes(out1, '.h5'), h5a, 'h5 files (HDF5 timestamps pinned)');
    t.same(await folderBytes(out1, '.geojson'), await folderBytes(out2, '.geojson'), 'geojson files');
  });

  t.test('h5 read back with h5wasm: shapes, dtypes, values equal to the TFRecord for the same tiles', async (t) => {
    const examples = await readExamples(out2);
    const manifest = JSON.parse(await readFile(join(out2, 'manifest.json'), 'utf8')) as { models: { embedder: { sha256: string } } };
    let slides = 0;
    for (const ex of examples) {
      const ids = ex.bytes['image_ids']!.map(String);
      const n = ex.ints['num_tiles']![0]!;
      const dim = ex.floats['avg_embedding']!.length / n;
      for (const [k, image_id] of ids.entries()) {
        const rows = ex.ints['tile_image_index']!.flatMap((v, i) => (v === k ? [i] : []));
        const spec = SLIDES.find((s) => s.image_id === image_id)!;
        t.same(rows.map((i) => [ex.ints['tile_x']![i], ex.ints['tile_y']![i]]), expectedPositions(spec), `${image_id}: the record's tiles are the expected ones`);
        const f = new h5wasm.File(join(out2, `${image_id}.h5`), 'r');
        try {
          const coords = f.get('coords') as InstanceType<typeof h5wasm.Dataset>;
          t.equal(coords.dtype, '<q');
          t.same(coords.shape, [rows.length, 2]);
          t.same(Array.from(coords.value as BigInt64Array, Number), rows.flatMap((i) => [ex.ints['tile_x']![i], ex.ints['tile_y']![i]]), `${image_id}: coords`);
          t.equal(coords.attrs['patch_size']!.value, 224n);
          for (const [name, feature] of [['features_avg', 'avg_embedding'], ['features_max', 'max_embedding'], ['features', 'avg_embedding']] as const) {
            const d = f.get(name) as InstanceType<typeof h5wasm.Dataset>;
            t.equal(d.dtype, '<f', `${image_id} ${name} float32`);
            t.same(d.shape, [rows.length, dim], `${image_id} ${name} shape`);
            const want = Float32Array.from(rows.flatMap((i) => ex.floats[feature]!.slice(i * dim, (i + 1) * dim)));
            t.same(Array.from(d.value as Float32Array), Array.from(want), `${image_id} ${name} values equal the record's ${feature}`);
          }
          const hist = f.get('color_histogram') as InstanceType<typeof h5wasm.Dataset>;
          t.same(hist.shape, [4096]);
          t.ok(Math.abs((hist.value as Float32Array).reduce((s, v) => s + v, 0) - 1) < 1e-4, 'the histogram sums to 1');
          t.equal(f.attrs['image_id']!.value, image_id);
          t.equal(f.attrs['encoder_sha256']!.value, manifest.models.embedder.sha256);
          t.equal(f.attrs['precision']!.value, 'fp32');
          t.equal(f.attrs['width']!.value, BigInt(spec.width));
          t.equal(f.attrs['max_background']!.value, 0.1);
          slides++;
        } finally {
          f.close();
        }
      }
    }
    t.equal(slides, 3);
  });

  t.test('geojson: RFC 7946 FeatureCollection, one QuPath annotation polygon per kept tile inside the slide', async (t) => {
    for (const spec of SLIDES) {
      const doc = JSON.parse(await readFile(join(out2, `${spec.image_id}.geojson`), 'utf8')) as {
        type: string;
        slide: { width: number; height: number };
        features: Array<{ type: string; geometry: { type: string; coordinates: number[][][] }; properties: { objectType: string; classification: { name: string; color: number[] } } }>;
      };
      t.equal(doc.type, 'FeatureCollection');
      t.same(doc.slide, { image_id: spec.image_id, patient_id: ROWS.find((r) => r.image_id === spec.image_id)!.patient_id, width: spec.width, height: spec.height, tile_size: T, tiles: expectedPositions(spec).length });
      const want = expectedPositions(spec);
      t.equal(doc.features.length, want.length, `${spec.image_id}: one feature per kept tile`);
      doc.features.forEach((f, i) => {
        const ring = f.geometry.coordinates[0]!;
        const ok =
          f.type === 'Feature' &&
          f.geometry.type === 'Polygon' &&
          f.geometry.coordinates.length === 1 &&
          ring.length === 5 &&
          String(ring[0]) === String(ring[4]) &&
          signedArea(ring) > 0 &&
          ring.every(([x, y]) => x! >= 0 && y! >= 0 && x! <= spec.width && y! <= spec.height) &&
          ring[0]![0] === want[i]![0] &&
          ring[0]![1] === want[i]![1] &&
          f.properties.objectType === 'annotation' &&
          f.properties.classification.name === 'Tile' &&
          f.properties.classification.color.length === 3;
        if (!ok) t.fail(`${spec.image_id} feature ${i}: ${JSON.stringify(f)}`);
      });
    }
  });

  t.test('inspect verifies the per-slide files; a tampered h5 is exit 1', async (t) => {
    const ok = await runCli(['inspect', out2], cwd);
    t.equal(ok.code, 0, ok.stderr);
    t.match(ok.stdout, 'per-slide files: 6 checked against the records');

    const bad = join(cwd, 'tampered');
    await cp(out2, bad, { recursive: true });
    const path = join(bad, 'a1.h5');
    const bytes = await readFile(path);
    bytes[bytes.length - 9] ^= 0xff; // inside the last dataset written
    await writeFile(path, bytes);
    const r = await runCli(['inspect', bad], cwd);
    t.equal(r.code, 1);
    t.match(r.stderr, `E_MANIFEST_MISMATCH: ${path}: sha256 differs`);
  });

  t.test('inspect compares the h5 with the records even when the manifest agrees with the file', async (t) => {
    const bad = join(cwd, 'rewritten');
    await cp(out2, bad, { recursive: true });
    const path = join(bad, 'a0.h5');
    const f = new h5wasm.File(path, 'a');
    const d = f.get('features_max') as InstanceType<typeof h5wasm.Dataset>;
    d.write_slice([[1, 2], [3, 4]], new Float32Array([12345]));
    f.close();
    // The manifest rewritten to the new bytes: only the comparison with the records can see it.
    const manifestPath = join(bad, 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as { files: Array<{ file: string; bytes: number; sha256: string }> };
    const bytes = await readFile(path);
    manifest.files = manifest.files.map((e) => (e.file === 'a0.h5' ? { ...e, bytes: bytes.length, sha256: sha256(bytes) } : e));
    await writeFile(manifestPath, JSON.stringify(manifest));
    // A slide's geojson gone, and an h5 that no record accounts for.
    await rm(join(bad, 'b0.geojson'));
    await cp(join(bad, 'a1.h5'), join(bad, 'zz.h5'));
    const r = await runCli(['inspect', bad], cwd);
    t.equal(r.code, 1);
    t.match(r.stderr, `E_H5_MISMATCH: ${path}: features_max[1, 3] is 12345`);
    t.match(r.stderr, `E_GEOJSON_MISSING: ${join(bad, 'b0.geojson')} is missing`);
    t.match(r.stderr, `E_SLIDE_FILE_UNCHECKED: ${join(bad, 'zz.h5')} belongs to no image with tiles in the shards`);
    t.notMatch(r.stderr, 'E_MANIFEST_MISMATCH');
  });

  t.test('--formats values refused before any work (exit 2, naming the value)', async (t) => {
    for (const [value, message] of [
      ['tfrecord,parquet', '--formats: unknown format "parquet"'],
      ['h5,geojson', 'must include tfrecord'],
      ['tfrecord,h5,h5', 'h5 is named twice'],
      ['', 'unknown format ""'],
    ] as const) {
      const out = join(cwd, `refused-${value.replace(/\W/g, '_')}`);
      const r = await runCli(args(out, '--formats', value), cwd);
      t.equal(r.code, 2, value);
      t.match(r.stderr, message, value);
      t.notOk(existsSync(out), `${value}: nothing written`);
    }
  });
}
