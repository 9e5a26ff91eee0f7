/**
 * `inspect OUT [--prefix data]`: reads every shard in OUT, verifies every CRC, decodes every
 * tf.train.Example and checks its features agree with each other; prints per-shard (records, bytes)
 * and per-patient (tiles, label, center, images) summaries. Returns the exit code: 0 when everything is
 * sound, 1 on any corruption or inconsistency (each named with its file and byte offset), 2 on usage errors.
 * The folder is checked against its manifest.json first (stages/dataset/manifest.ts): no manifest, a listed
 * shard missing or of another size or sha256, an unlisted shard, a 0-byte shard or a half-done swap is a problem.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ExampleType } from '../tfrecord/example-proto.js';
import { readTfrecords } from '../tfrecord/framing.js';
import { datasetProblems } from '../dataset/verify.js';
import { readManifest } from '../dataset/manifest.js';
import { SlideFileCheck } from '../slide-files/check.js';

export interface InspectIo {
  log(line: string): void;
  error(line: string): void;
}

interface FeatureObject {
  bytes_list?: { value: Uint8Array[] };
  float_list?: { value: number[] };
  /** Decimal strings (decoded with `longs: String`, so a center_id past 2^53 shows exactly). */
  int64_list?: { value: string[] };
}

export interface PatientSummary {
  readonly patient_id: string;
  readonly tiles: number;
  readonly label: string | undefined;
  /** The int64 exactly, as a decimal string. */
  readonly center_id: string;
  readonly images: number;
  /** The embedder outputs and their widths (avg and max for the CNNs; from embedding_outputs / embedding_dims otherwise). */
  readonly embeddings: ReadonlyArray<{ readonly name: string; readonly dim: number }>;
}

const SHARD = /^(.+)-(\d{5})-of-(\d{5})\.tfrecord$/;
const consoleIo: InspectIo = { log: (l) => console.log(l), error: (l) => console.error(l) };

export async function inspect(argv: readonly string[] | string, io: InspectIo = consoleIo): Promise<number> {
  const args = typeof argv === 'string' ? [argv] : [...argv];
  let dir: string | undefined;
  let prefix: string | undefined;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--prefix' && args[i + 1] !== undefined) prefix = args[++i];
    else if (dir === undefined && !args[i]!.startsWith('--')) dir = args[i];
    else {
      io.error(`E_USAGE: unexpected argument ${JSON.stringify(args[i])}; usage: inspect OUT [--prefix data]`);
      return 2;
    }
  }
  if (dir === undefined) {
    io.error('E_USAGE: usage: inspect OUT [--prefix data]');
    return 2;
  }
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (err) {
    io.error(`E_USAGE: cannot read ${dir}: ${(err as Error).message}`);
    return 2;
  }
  let problems = 0;
  const problem = (line: string) => {
    problems++;
    io.error(line);
  };

  // Group shards by (prefix, count) and check each group is complete.
  const groups = new Map<string, Set<number>>();
  const shards: string[] = [];
  for (const name of names) {
    const m = SHARD.exec(name);
    if (m === null || (prefix !== undefined && m[1] !== prefix)) continue;
    shards.push(name);
    const key = `${m[1]}\0${m[3]}`;
    const set = groups.get(key) ?? new Set<number>();
    set.add(Number(m[2]));
    groups.set(key, set);
  }
  for (const line of await datasetProblems(dir, shards)) problem(line);
  if (shards.length === 0) {
    problem(`E_TFRECORD_MISSING: no ${prefix ?? '*'}-NNNNN-of-NNNNN.tfrecord shards in ${dir}`);
    return 1;
  }
  for (const [key, indices] of groups) {
    const [p, count] = key.split('\0') as [string, string];
    for (let i = 0; i < Number(count); i++) {
      if (!indices.has(i)) problem(`E_TFRECORD_MISSING: ${join(dir, `${p}-${String(i).padStart(5, '0')}-of-${count}.tfrecord`)} is missing`);
    }
  }

  // Per-slide files (--formats h5, geojson): checked against each record's tiles (stages/slide-files/check.ts).
  const formats = await readManifest(dir).then((m) => m?.params['formats'], () => undefined);
  const slideFiles = new SlideFileCheck(dir, names, Array.isArray(formats) ? formats.map(String) : []);
  const seen = new Map<string, string>();
  let totalRecords = 0;
  let totalBytes = 0;
  for (const name of shards) {
    const path = join(dir, name);
    const bytes = (await stat(path)).size;
    let records = 0;
    const patients: string[] = [];
    try {
      for await (const { offset, data } of readTfrecords(path)) {
        records++;
        const where = `${path}: byte offset ${offset}`;
        let summary: PatientSummary;
        try {
          summary = summarize(data);
        } catch (err) {
          problem(`E_EXAMPLE_INVALID: ${where}: ${(err as Error).message}`);
          continue;
        }
        const before = seen.get(summary.patient_id);
        if (before !== undefined) problem(`E_DUPLICATE_PATIENT: ${where}: patient ${summary.patient_id} already in ${before}`);
        seen.set(summary.patient_id, where);
        if (slideFiles.active) for (const line of await slideFiles.checkRecord(data, where)) problem(line);
        patients.push(`  ${summary.patient_id}: tiles ${summary.tiles}, label ${summary.label ?? '-'}, center ${summary.center_id}, images ${summary.images}, embeddings ${summary.embeddings.map((e) => `${e.name} ${e.dim}`).join(', ')}`);
      }
    } catch (err) {
      const e = err as { code?: string; message: string };
      problem(`${e.code ?? 'E_TFRECORD_READ'}: ${e.message}`);
    }
    totalRecords += records;
    totalBytes += bytes;
    io.log(`${name}: records ${records}, bytes ${bytes}`);
    for (const line of patients) io.log(line);
  }
  if (slideFiles.active) {
    for (const line of slideFiles.leftovers()) problem(line);
    io.log(`per-slide files: ${slideFiles.count} checked against the records`);
  }
  io.log(`total: ${shards.length} shard(s), ${totalRecords} records, ${totalBytes} bytes, ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}

/** Decodes one record as a tf.train.Example and checks its features against each other. */
export function summarize(data: Uint8Array): PatientSummary {
  const decoded = ExampleType.toObject(ExampleType.decode(data), { longs: String, arrays: true, defaults: false }) as {
    features?: { feature?: Record<string, FeatureObject> };
  };
  const f = decoded.features?.feature ?? {};
  const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');
  const list = <K extends keyof FeatureObject>(key: string, kind: K): NonNullable<FeatureObject[K]>['value'] => {
    const value = f[key]?.[kind]?.value;
    if (value === undefined) throw new Error(`feature ${key} (${kind}) is missing`);
    return value as NonNullable<FeatureObject[K]>['value'];
  };
  const [patient_id] = list('patient_id', 'bytes_list').map(text);
  const [center_id] = list('center_id', 'int64_list');
  const [n] = list('num_tiles', 'int64_list').map(Number);
  if (patient_id === undefined || center_id === undefined || n === undefined) throw new Error('patient_id, center_id or num_tiles is empty');
  const image_ids = list('image_ids', 'bytes_list');
  const check = (ok: boolean, what: string) => {
    if (!ok) throw new Error(`patient ${patient_id}: ${what}`);
  };
  check(n > 0, `num_tiles is ${n}`);
  const embeddings = embeddingOutputs(f, n, list, check);
  for (const key of ['tile_x', 'tile_y', 'tile_image_index']) check(list(key, 'int64_list').length === n, `${key} does not have num_tiles (${n}) values`);
  check(list('tile_image_index', 'int64_list').every((i) => Number(i) >= 0 && Number(i) < image_ids.length), 'tile_image_index points outside image_ids');
  check(list('color_histogram', 'float_list').length === 4096, 'color_histogram does not have 4096 bins');
  const label = f['label']?.bytes_list?.value.map(text)[0];
  return { patient_id, tiles: n, label, center_id, images: image_ids.length, embeddings };
}

/**
 * The record's embedding features, checked: with embedding_outputs, one `<name>_embedding` of num_tiles x width per
 * output (widths from embedding_dims); without, avg_embedding and max_embedding of one width (the CNN schema).
 */
function embeddingOutputs(
  f: Record<string, FeatureObject>,
  n: number,
  list: <K extends keyof FeatureObject>(key: string, kind: K) => NonNullable<FeatureObject[K]>['value'],
  check: (ok: boolean, what: string) => void,
): Array<{ name: string; dim: number }> {
  if (f['embedding_outputs'] === undefined) {
    const avg = list('avg_embedding', 'float_list');
    const max = list('max_embedding', 'float_list');
    check(avg.length === max.length && avg.length % n === 0, `avg_embedding (${avg.length}) and max_embedding (${max.length}) are not num_tiles (${n}) rows of one width`);
    return [{ name: 'avg', dim: avg.length / n }, { name: 'max', dim: max.length / n }];
  }
  const names = list('embedding_outputs', 'bytes_list').map((b) => Buffer.from(b).toString('utf8'));
  const dims = list('embedding_dims', 'int64_list').map(Number);
  check(names.length > 0 && names.length === dims.length, `embedding_outputs (${names.length}) and embedding_dims (${dims.length}) do not name the same outputs`);
  return names.map((name, k) => {
    const dim = dims[k]!;
    const values = list(`${name}_embedding`, 'float_list');
    check(dim > 0 && values.length === n * dim, `${name}_embedding has ${values.length} values, not num_tiles (${n}) x embedding_dims (${dim})`);
    return { name, dim };
  });
}
