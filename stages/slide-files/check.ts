/**
 * What `inspect` checks of the per-slide files (--formats h5, geojson) against the TFRecords: for every record,
 * each image with tiles has its `<image_id>.h5` (every `features_<output>` float32 [n, D] equal to the record's
 * `<output>_embedding` rows for that image's tiles, `features` the same, `coords` int64 [n, 2] equal to its
 * tile_x / tile_y) and its `<image_id>.geojson` (a FeatureCollection of n closed, counter-clockwise tile polygons
 * at those positions, inside the slide); no such file is left that no record accounts for.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Dataset, File as H5File } from 'h5wasm';
import { ExampleType } from '../tfrecord/example-proto.js';
import { loadH5wasm } from './hdf5.js';
import { TILE_CLASS } from './write-geojson.js';

interface Decoded {
  readonly image_ids: string[];
  readonly index: number[];
  readonly x: number[];
  readonly y: number[];
  /** Float features `<name>_embedding`, by output name, in model order. */
  readonly outputs: Map<string, number[]>;
}

/** One image's tiles in a record: their positions in the record and level-0 corners. */
interface ImageTiles {
  readonly image_id: string;
  readonly rows: number[];
  readonly x: number[];
  readonly y: number[];
}

const ROWS_PER_READ = 1024;

export class SlideFileCheck {
  private readonly checked = new Set<string>();

  /** `names`: the folder's files; `formats`: the manifest's params.formats (files found are checked whatever it says). */
  constructor(
    private readonly dir: string,
    private readonly names: readonly string[],
    private readonly formats: readonly string[],
  ) {}

  /** True when the folder holds per-slide files or the manifest says it should. */
  get active(): boolean {
    return this.expects('h5') || this.expects('geojson');
  }

  private expects(ext: 'h5' | 'geojson'): boolean {
    return this.formats.includes(ext) || this.names.some((n) => n.endsWith(`.${ext}`));
  }

  /** Problems of the per-slide files of one record (`where`: its shard and offset). */
  async checkRecord(data: Uint8Array, where: string): Promise<string[]> {
    const problems: string[] = [];
    const record = decode(data);
    for (const image of imagesOf(record)) {
      for (const ext of ['h5', 'geojson'] as const) {
        if (!this.expects(ext)) continue;
        const file = `${image.image_id}.${ext}`;
        const path = join(this.dir, file);
        this.checked.add(file);
        if (!(await stat(path).then((s) => s.isFile(), () => false))) {
          problems.push(`${ext === 'h5' ? 'E_H5_MISSING' : 'E_GEOJSON_MISSING'}: ${path} is missing (${where} has ${image.rows.length} tile(s) of ${image.image_id})`);
          continue;
        }
        try {
          const found = ext === 'h5' ? await checkH5(path, record, image) : await checkGeoJson(path, image);
          problems.push(...found.map((p) => `${ext === 'h5' ? 'E_H5_MISMATCH' : 'E_GEOJSON_INVALID'}: ${path}: ${p} (against ${where})`));
        } catch (err) {
          problems.push(`${ext === 'h5' ? 'E_H5_INVALID' : 'E_GEOJSON_INVALID'}: ${path}: ${(err as Error).message}`);
        }
      }
    }
    return problems;
  }

  /** Per-slide files no record accounts for. */
  leftovers(): string[] {
    return this.names
      .filter((n) => (n.endsWith('.h5') || n.endsWith('.geojson')) && !this.checked.has(n))
      .map((n) => `E_SLIDE_FILE_UNCHECKED: ${join(this.dir, n)} belongs to no image with tiles in the shards`);
  }

  /** How many files were checked. */
  get count(): number {
    return this.checked.size;
  }
}

function decode(data: Uint8Array): Decoded {
  const obj = ExampleType.toObject(ExampleType.decode(data), { longs: Number, arrays: true, defaults: false }) as {
    features?: { feature?: Record<string, { bytes_list?: { value: Uint8Array[] }; float_list?: { value: number[] }; int64_list?: { value: number[] } }> };
  };
  const f = obj.features?.feature ?? {};
  // In model order: embedding_outputs when the record has it (any embedder but the CNNs), else avg, max.
  const order = f['embedding_outputs']?.bytes_list?.value.map((b) => Buffer.from(b).toString('utf8')) ?? ['avg', 'max'];
  const outputs = new Map<string, number[]>();
  for (const name of order) {
    const values = f[`${name}_embedding`]?.float_list?.value;
    if (values !== undefined) outputs.set(name, values);
  }
  return {
    image_ids: (f['image_ids']?.bytes_list?.value ?? []).map((b) => Buffer.from(b).toString('utf8')),
    index: f['tile_image_index']?.int64_list?.value ?? [],
    x: f['tile_x']?.int64_list?.value ?? [],
    y: f['tile_y']?.int64_list?.value ?? [],
    outputs,
  };
}

function imagesOf(r: Decoded): ImageTiles[] {
  const images = r.image_ids.map((image_id) => ({ image_id, rows: [] as number[], x: [] as number[], y: [] as number[] }));
  r.index.forEach((k, i) => {
    const im = images[k];
    if (im === undefined) return; // summarize reports an index outside image_ids
    im.rows.push(i);
    im.x.push(r.x[i]!);
    im.y.push(r.y[i]!);
  });
  return images.filter((im) => im.rows.length > 0);
}

async function checkH5(path: string, record: Decoded, image: ImageTiles): Promise<string[]> {
  const h5 = await loadH5wasm();
  const problems: string[] = [];
  const file: H5File = new h5.File(path, 'r');
  try {
    const n = image.rows.length;
    const dataset = (name: string): Dataset | undefined => {
      const d = file.get(name);
      if (d instanceof h5.Dataset) return d;
      problems.push(`no dataset ${name}`);
      return undefined;
    };
    const coords = dataset('coords');
    if (coords !== undefined) {
      if (coords.dtype !== '<q' || String(coords.shape) !== `${n},2`) problems.push(`coords is ${coords.dtype} [${coords.shape}], expected int64 [${n}, 2]`);
      else {
        const v = coords.value as BigInt64Array;
        const bad = image.x.findIndex((x, i) => v[2 * i] !== BigInt(x) || v[2 * i + 1] !== BigInt(image.y[i]!));
        if (bad >= 0) problems.push(`coords row ${bad} is (${v[2 * bad]}, ${v[2 * bad + 1]}), the record's tile is (${image.x[bad]}, ${image.y[bad]})`);
      }
    }
    // `features` is features_avg, or the first output in model order (as write-h5.ts links it).
    const first = record.outputs.has('avg') ? 'avg' : [...record.outputs.keys()][0];
    for (const [output, values] of record.outputs) {
      for (const name of output === first ? [`features_${output}`, 'features'] : [`features_${output}`]) {
        const d = dataset(name);
        if (d !== undefined) problems.push(...compareRows(d, name, values, record.index.length, image.rows));
      }
    }
  } finally {
    file.close();
  }
  return problems;
}

/** The dataset against the record's rows `rows` of a `total`-row float list. */
function compareRows(d: Dataset, name: string, values: number[], total: number, rows: number[]): string[] {
  const dim = total === 0 ? 0 : values.length / total;
  const n = rows.length;
  if (d.dtype !== '<f' || String(d.shape) !== `${n},${dim}`) return [`${name} is ${d.dtype} [${d.shape}], expected float32 [${n}, ${dim}]`];
  for (let start = 0; start < n; start += ROWS_PER_READ) {
    const end = Math.min(n, start + ROWS_PER_READ);
    const got = d.slice([[start, end], []]) as Float32Array;
    for (let i = start; i < end; i++) {
      const from = rows[i]! * dim;
      for (let j = 0; j < dim; j++) {
        if (got[(i - start) * dim + j] !== Math.fround(values[from + j]!)) return [`${name}[${i}, ${j}] is ${got[(i - start) * dim + j]}, the record's is ${values[from + j]}`];
      }
    }
  }
  return [];
}

interface GeoFeature {
  type?: unknown;
  geometry?: { type?: unknown; coordinates?: unknown };
  properties?: { objectType?: unknown; classification?: { name?: unknown } };
}

async function checkGeoJson(path: string, image: ImageTiles): Promise<string[]> {
  const doc = JSON.parse(await readFile(path, 'utf8')) as { type?: unknown; features?: unknown; slide?: { width?: unknown; height?: unknown; tile_size?: unknown } };
  if (doc.type !== 'FeatureCollection' || !Array.isArray(doc.features)) return ['not a FeatureCollection with a features array'];
  const { width, height, tile_size: size } = doc.slide ?? {};
  if (typeof width !== 'number' || typeof height !== 'number' || typeof size !== 'number') return ['no slide member with width, height and tile_size'];
  const features = doc.features as GeoFeature[];
  if (features.length !== image.rows.length) return [`${features.length} features, the record has ${image.rows.length} tile(s) of ${image.image_id}`];
  for (let i = 0; i < features.length; i++) {
    const f = features[i]!;
    const problem = featureProblem(f, image.x[i]!, image.y[i]!, size, width, height);
    if (problem !== undefined) return [`feature ${i}: ${problem}`];
  }
  return [];
}

function featureProblem(f: GeoFeature, x: number, y: number, size: number, width: number, height: number): string | undefined {
  if (f.type !== 'Feature' || f.geometry?.type !== 'Polygon') return 'not a Polygon Feature';
  if (f.properties?.objectType !== 'annotation' || f.properties.classification?.name !== TILE_CLASS.name) return 'not a QuPath annotation of class Tile';
  const rings = f.geometry.coordinates as number[][][];
  const ring = Array.isArray(rings) && rings.length === 1 ? rings[0]! : undefined;
  if (ring === undefined || ring.length < 4 || !ring.every((p) => Array.isArray(p) && p.length === 2 && p.every(Number.isFinite))) return 'not one linear ring of [x, y] positions';
  const [a, z] = [ring[0]!, ring.at(-1)!];
  if (a[0] !== z[0] || a[1] !== z[1]) return 'the ring is not closed';
  if (signedArea(ring) <= 0) return 'the exterior ring is not counter-clockwise';
  if (ring.some(([px, py]) => px! < 0 || py! < 0 || px! > width || py! > height)) return `a position outside the slide (${width} x ${height})`;
  const xs = ring.map((p) => p[0]!);
  const ys = ring.map((p) => p[1]!);
  if (Math.min(...xs) !== x || Math.min(...ys) !== y || Math.max(...xs) !== x + size || Math.max(...ys) !== y + size) return `the polygon is not the tile at (${x}, ${y}) of side ${size}`;
  return undefined;
}

/** Twice the signed area (shoelace): positive for a counter-clockwise ring. */
export function signedArea(ring: readonly (readonly number[])[]): number {
  let s = 0;
  for (let i = 0; i + 1 < ring.length; i++) s += ring[i]![0]! * ring[i + 1]![1]! - ring[i + 1]![0]! * ring[i]![1]!;
  return s;
}
