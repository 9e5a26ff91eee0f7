/**
 * End-to-end test helpers: run the compiled CLI (`node graph.js`, i.e. dist/) as a child process in a
 * temporary working directory, with the tap run's shared cache folder as WSI_CACHE_DIR (test/helpers/test-cache.ts:
 * the demo models and the LUT are built once per run, never in the repo's .cache), generate small slides with
 * known tissue, compute the expected kept tiles from the tissue geometry, and decode the written TFRecord shards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSlide, tissueMaskAt, type TissueShape } from '../../stages/slides/synthetic.js';
import { readTfrecords } from '../../stages/tfrecord/framing.js';
import { ExampleType } from '../../stages/tfrecord/example-proto.js';
import type { RunReport } from '../../stages/report/report.js';
import { CACHE_DIR_ENV } from '../../stages/cli/cache-dir.js';
import { pruneDeadRunCaches, TEST_CACHE } from './test-cache.js';

pruneDeadRunCaches();

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(REPO, 'graph.js');

/** Why the e2e tests cannot run here (no compiled CLI), or undefined when they can. */
export function e2eUnavailable(): string | undefined {
  if (!existsSync(join(REPO, 'dist', 'graph.js'))) return 'dist/graph.js is missing: run `npx tsc -p .` (npm test builds first)';
  return undefined;
}

/** A temporary folder removed at the end of the test (pass the tap test). */
export async function tempDir(t: { teardown(fn: () => unknown): void }, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunningCli {
  readonly child: ChildProcess;
  readonly done: Promise<CliResult>;
}

export interface CliOptions {
  /** In a process group of its own (its workers too), so a test can signal the group as a terminal's Ctrl-C does. */
  readonly group?: boolean;
  /** Written to the child's standard input, which is then closed (otherwise stdin is /dev/null). */
  readonly stdin?: string | Buffer;
  /** The CLI's own cache, `cwd`/.cache, instead of the run's shared one: for the tests of what is cached. */
  readonly ownCache?: boolean;
  /** Variables added to the child's environment (after WSI_CACHE_DIR, so a test can set its own). */
  readonly env?: NodeJS.ProcessEnv;
}

/** The environment of a CLI child: NODE_OPTIONS cleared, WSI_CACHE_DIR the run's shared cache (or unset: `ownCache`). */
export function cliEnv(opts: { ownCache?: boolean; env?: NodeJS.ProcessEnv } = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '', [CACHE_DIR_ENV]: TEST_CACHE };
  if (opts.ownCache === true) delete env[CACHE_DIR_ENV];
  return { ...env, ...opts.env };
}

/** Starts `node graph.js ...args` with `cwd` (no progress bars: not a terminal). */
export function startCli(args: readonly string[], cwd: string, opts: CliOptions = {}): RunningCli {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: cliEnv(opts), detached: opts.group ?? false });
  // A child that exits before reading all of it (a refused CSV) closes the pipe: EPIPE is then expected.
  child.stdin?.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') child.emit('error', err);
  });
  child.stdin?.end(opts.stdin);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

export function runCli(args: readonly string[], cwd: string, opts: Omit<CliOptions, 'group'> = {}): Promise<CliResult> {
  return startCli(args, cwd, opts).done;
}

/** Polls `check` every 20 ms until it returns a value other than undefined/false; fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The tile parameters every e2e run uses (small tiles keep the runs short). */
export const TILE = { tileSize: 224, downsample: 16, backgroundThreshold: 190, maxBackground: 0.1 } as const;
export const TILE_FLAGS = ['--tile-size', String(TILE.tileSize), '--downsample', String(TILE.downsample)];

export interface SlideSpec {
  readonly image_id: string;
  readonly width: number;
  readonly height: number;
  readonly seed: number;
  readonly tissue: readonly TissueShape[];
}

/** Writes `<dir>/<image_id>.tiff` for each spec. */
export async function makeSlides(dir: string, specs: readonly SlideSpec[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const s of specs) await generateSlide({ path: join(dir, `${s.image_id}.tiff`), width: s.width, height: s.height, seed: s.seed, tissue: s.tissue });
}

/**
 * The seed's selection rule applied to the analytic tissue mask at thumbnail resolution (the generator
 * paints the 1/16 level from the same function at the same pixel centres; tissue colours are never
 * background and the background never is tissue). Throws when a tile's background fraction lies within
 * 5% of the threshold, where JPEG edges could tip it: the slide specs must keep clear of it.
 */
export function expectedPositions(spec: SlideSpec): Array<[number, number]> {
  const { tileSize: T, downsample: ds, maxBackground } = TILE;
  const out: Array<[number, number]> = [];
  for (let y = 0; y + T <= spec.height; y += T) {
    for (let x = 0; x + T <= spec.width; x += T) {
      let bg = 0;
      let n = 0;
      for (let r = Math.floor(y / ds); r < Math.floor((y + T) / ds); r++) {
        for (let c = Math.floor(x / ds); c < Math.floor((x + T) / ds); c++) {
          n++;
          if (!tissueMaskAt(spec.tissue, (c + 0.5) * ds, (r + 0.5) * ds)) bg++;
        }
      }
      const f = bg / n;
      if (Math.abs(f - maxBackground) < 0.05) throw new Error(`slide ${spec.image_id}: tile (${x},${y}) is ${f.toFixed(3)} background, too close to the threshold`);
      if (f <= maxBackground) out.push([x, y]);
    }
  }
  return out;
}

export interface CsvLine {
  readonly image_id: string;
  readonly center_id: number;
  readonly patient_id: string;
  readonly image_num: number;
  readonly label?: string;
}

export async function writeCsv(file: string, rows: readonly CsvLine[], withLabel: boolean): Promise<void> {
  const header = withLabel ? 'image_id,center_id,patient_id,image_num,label' : 'image_id,center_id,patient_id,image_num';
  const lines = rows.map((r) => [r.image_id, r.center_id, r.patient_id, r.image_num, ...(withLabel ? [r.label ?? ''] : [])].join(','));
  await writeFile(file, [header, ...lines].join('\n') + '\n');
}

/** A decoded tf.train.Example, features by name. */
export interface DecodedExample {
  readonly file: string;
  readonly bytes: Record<string, Buffer[]>;
  readonly floats: Record<string, number[]>;
  readonly ints: Record<string, number[]>;
  readonly names: string[];
}

/** The shard files of an output folder, sorted. */
export async function shardFiles(outDir: string): Promise<string[]> {
  if (!existsSync(outDir)) return [];
  return (await readdir(outDir)).filter((f) => /^data-\d+-of-\d+\.tfrecord$/.test(f)).sort();
}

/** Every shard's bytes, by file name: for byte-identity checks. */
export async function shardBytes(outDir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const f of await shardFiles(outDir)) out.set(f, await readFile(join(outDir, f)));
  return out;
}

/** Reads (CRC-checked) and decodes every Example of every shard, in file order. */
export async function readExamples(outDir: string): Promise<DecodedExample[]> {
  const out: DecodedExample[] = [];
  for (const file of await shardFiles(outDir)) {
    for await (const { data } of readTfrecords(join(outDir, file))) {
      const obj = ExampleType.toObject(ExampleType.decode(data), { longs: Number, arrays: true, defaults: false }) as {
        features: { feature: Record<string, { bytes_list?: { value: Uint8Array[] }; float_list?: { value: number[] }; int64_list?: { value: number[] } }> };
      };
      const ex: DecodedExample = { file, bytes: {}, floats: {}, ints: {}, names: Object.keys(obj.features.feature).sort() };
      for (const [name, f] of Object.entries(obj.features.feature)) {
        if (f.bytes_list) ex.bytes[name] = f.bytes_list.value.map((v) => Buffer.from(v));
        if (f.float_list) ex.floats[name] = f.float_list.value;
        if (f.int64_list) ex.ints[name] = f.int64_list.value;
      }
      out.push(ex);
    }
  }
  return out;
}

/** What the tests read of report.json: the report's own type (stages/report/report.ts). */
export type ReportJson = RunReport;

export async function readReport(outDir: string): Promise<ReportJson> {
  return JSON.parse(await readFile(join(outDir, 'report.json'), 'utf8')) as ReportJson;
}
