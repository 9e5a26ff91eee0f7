/**
 * `manifest.json`: what a finished dataset holds. Every shard (records, bytes, sha256), the other files
 * (the run report), the CSV (path, sha256), the run's parameters and the models (path, sha256). It is
 * the last file of a dataset to appear (commit.ts), so its presence means the dataset is complete; `inspect`
 * checks the folder against it (verifyManifest).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { naming, readTextIfThere } from './io.js';

export const MANIFEST = 'manifest.json';

export interface ManifestFile {
  readonly file: string;
  readonly bytes: number;
  readonly sha256: string;
}

export interface ManifestShard extends ManifestFile {
  readonly records: number;
}

export interface Manifest {
  readonly format: 1;
  readonly run_id: string;
  readonly created_at: string;
  /** Patients (records) in all shards. */
  readonly records: number;
  readonly shards: readonly ManifestShard[];
  /** The dataset's other files (report.json, report.html). */
  readonly files: readonly ManifestFile[];
  /** sha256 null: the CSV was not a regular file (standard input, a FIFO), read once and not kept. */
  readonly csv: { readonly path: string; readonly sha256: string | null };
  readonly params: Readonly<Record<string, unknown>>;
  readonly models: Readonly<Record<string, { readonly path: string; readonly sha256: string }>>;
}

/** What the run knows of its dataset when it builds the manifest. */
export interface ManifestInput {
  readonly runId: string;
  /** The sink's shards (file names inside the folder, records, bytes). */
  readonly shards: ReadonlyArray<{ readonly file: string; readonly records: number; readonly bytes: number }>;
  readonly csvFile: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly models: Readonly<Record<string, { readonly path: string; readonly sha256: string }>>;
}

export async function sha256File(path: string): Promise<string> {
  return naming('read', path, async () => {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    return hash.digest('hex');
  });
}

/** A regular file's sha256; null for standard input or a FIFO, which cannot be read a second time. */
async function csvSha256(file: string): Promise<string | null> {
  const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined; // '-': standard input
    throw err;
  });
  return st?.isFile() === true ? sha256File(file) : null;
}

async function describe(dir: string, file: string): Promise<ManifestFile> {
  const path = join(dir, file);
  const { size } = await naming('stat', path, () => stat(path));
  return { file, bytes: size, sha256: await sha256File(path) };
}

/**
 * The dataset's files in `dir`, sorted: its plain files, and the files of its folders (the report's pictures in
 * `report-files/`) as `folder/name`, at any depth. Hidden names (staging, journal, locks) are not the dataset's.
 */
async function datasetFileNames(dir: string, prefix = ''): Promise<string[]> {
  const folder = join(dir, prefix);
  const entries = await naming('list', folder, () => readdir(folder, { withFileTypes: true }));
  const names: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (e.name.startsWith('.')) continue;
    if (e.isDirectory()) names.push(...(await datasetFileNames(dir, `${prefix}${e.name}/`)));
    else names.push(`${prefix}${e.name}`);
  }
  return names;
}

/** A file name of the manifest: relative, inside the folder (`a/b` for a file in a folder; no `..`, no hidden part). */
export function safeDatasetPath(name: unknown): boolean {
  return typeof name === 'string' && name.length > 0 && !name.includes('\\') && name.split('/').every((part) => part.length > 0 && !part.startsWith('.'));
}

/**
 * The manifest of the files in `dir` (hidden names are not the dataset's): the shards as the sink reported
 * them, each checked against its file's size (the bytes are read back for the sha256), and the other files.
 */
export async function buildManifest(dir: string, input: ManifestInput): Promise<Manifest> {
  const shardNames = new Set(input.shards.map((s) => s.file));
  const shards: ManifestShard[] = [];
  for (const s of input.shards) {
    const d = await describe(dir, s.file);
    if (d.bytes !== s.bytes) throw Object.assign(new Error(`E_OUTPUT_IO: ${join(dir, s.file)} holds ${d.bytes} bytes, the writer wrote ${s.bytes}`), { code: 'E_OUTPUT_IO' });
    shards.push({ ...d, records: s.records });
  }
  const files: ManifestFile[] = [];
  for (const name of await datasetFileNames(dir)) {
    if (name === MANIFEST || shardNames.has(name)) continue;
    files.push(await describe(dir, name));
  }
  const models: Record<string, { path: string; sha256: string }> = {};
  for (const [name, m] of Object.entries(input.models)) models[name] = { path: m.path, sha256: m.sha256 };
  return {
    format: 1,
    run_id: input.runId,
    created_at: new Date().toISOString(),
    records: shards.reduce((n, s) => n + s.records, 0),
    shards,
    files,
    csv: { path: input.csvFile, sha256: await csvSha256(input.csvFile) },
    params: input.params,
    models,
  };
}

function invalid(path: string, what: string): Error {
  return Object.assign(new Error(`E_MANIFEST_INVALID: ${path}: ${what}`), { code: 'E_MANIFEST_INVALID' });
}

/** The manifest in `dir`; undefined when there is none; throws E_MANIFEST_INVALID when it cannot be read as one. */
export async function readManifest(dir: string): Promise<Manifest | undefined> {
  const path = join(dir, MANIFEST);
  const text = await readTextIfThere(path).catch((err: unknown) => {
    throw invalid(path, (err as Error).message);
  });
  if (text === undefined) return undefined;
  let m: Manifest;
  try {
    m = JSON.parse(text) as Manifest;
  } catch (err) {
    throw invalid(path, `not JSON (${(err as Error).message})`);
  }
  const entry = (f: ManifestFile): boolean => safeDatasetPath(f?.file) && Number.isInteger(f.bytes) && /^[0-9a-f]{64}$/.test(String(f.sha256));
  if (m.format !== 1 || !Array.isArray(m.shards) || !Array.isArray(m.files) || ![...m.shards, ...m.files].every(entry)) throw invalid(path, 'not a manifest this version reads');
  return m;
}

/**
 * Problems of `dir` against its manifest, one line each: no manifest, a listed file missing or with another
 * size or sha256, a shard the manifest does not list, a 0-byte shard. `shards`: the shard files found in dir.
 */
export async function verifyManifest(dir: string, shards: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  let manifest: Manifest | undefined;
  try {
    manifest = await readManifest(dir);
  } catch (err) {
    return [(err as Error).message];
  }
  const listed = new Map<string, ManifestFile & { records?: number }>();
  for (const f of [...(manifest?.shards ?? []), ...(manifest?.files ?? [])]) listed.set(f.file, f);
  if (manifest === undefined) {
    problems.push(`E_MANIFEST_MISSING: ${join(dir, MANIFEST)} is missing: the dataset is not known to be complete (a run that did not finish, or one from before manifests)`);
  }
  for (const name of shards) {
    const path = join(dir, name);
    const { size } = await stat(path);
    const entry = listed.get(name);
    if (size === 0 && !(entry?.bytes === 0 && entry.records === 0)) problems.push(`E_TFRECORD_EMPTY: ${path} is 0 bytes: it holds no record`);
    if (manifest !== undefined && entry === undefined) problems.push(`E_TFRECORD_UNLISTED: ${path} is not listed in ${MANIFEST}: not part of this dataset`);
  }
  for (const f of listed.values()) {
    const path = join(dir, f.file);
    const size = await stat(path).then((s) => s.size, () => undefined);
    if (size === undefined) problems.push(`${f.records === undefined ? 'E_DATASET_FILE_MISSING' : 'E_TFRECORD_MISSING'}: ${path} is listed in ${MANIFEST} but missing`);
    else if (size !== f.bytes) problems.push(`E_MANIFEST_MISMATCH: ${path} is ${size} bytes, ${MANIFEST} says ${f.bytes}`);
    else if ((await sha256File(path)) !== f.sha256) problems.push(`E_MANIFEST_MISMATCH: ${path}: sha256 differs from ${MANIFEST}'s`);
  }
  return problems;
}
