/**
 * Seeded fuzzing of the slide readers through the real job: mutants of a generated pyramidal BigTIFF and of a
 * generated single-level classic TIFF (bytes flipped, or words set to hostile values, in the header, the
 * directories, the tile offset/count tables and the tile data; deterministic from SEED with mulberry32), plus the
 * good slides, in one `node graph.js` run. The run never crashes (exit 0 or 1, never a signal or a stack trace),
 * never hangs (the child is killed past a bound), no worker dies (no E_WORKER_CRASH: a native abort would be one),
 * every failed slide has its E_ code in report.json, and the good slides of the same run are written.
 */
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { e2eUnavailable, expectedPositions, makeSlides, readExamples, readReport, startCli, tempDir, TILE, TILE_FLAGS, writeCsv, type CliResult, type SlideSpec } from '../helpers/e2e.js';
import { entryOf, tiffLayout, withCount, withValue, type TiffLayout } from '../helpers/tiff-layout.js';
import { mulberry32 } from '../../models/prng.js';

/** Change it to fuzz other mutants; a failure names the mutant and the bytes it changed. */
const SEED = 20261201;
const MUTANTS_PER_SLIDE = 50;
/** Kept tiles per slide: the job's cost stays in the reading, not in the models. */
const MAX_TILES = 1;
/** The job takes ~30 s here; past this it is killed and the test fails as a hang. */
const RUN_BOUND_MS = 240_000;

const T = TILE.tileSize;
const PYRAMID: SlideSpec = { image_id: 'good-p', width: 2240, height: 1792, seed: 21, tissue: [{ kind: 'rect', x: 2 * T, y: 2 * T, w: 3 * T, h: 2 * T }] };
const KINDS = ['header', 'ifd', 'tables', 'tiles'] as const;
type Kind = (typeof KINDS)[number];

interface Mutant {
  readonly image_id: string;
  readonly bytes: Buffer;
  /** What was changed, for the failure message: "bytes 1234..1241 = 0xe0000000" or "byte 99 ^= 0x1f". */
  readonly change: string;
  /** Targeted mutants: the code and message the slide must fail with. */
  readonly expect?: RegExp;
}

/** The spans of the file each kind of mutation hits. */
function spans(layout: TiffLayout, size: number, kind: Kind): Array<[number, number]> {
  if (kind === 'header') return [[0, layout.big ? 16 : 8]];
  if (kind === 'ifd') return layout.ifds.map((d) => [d.at, d.end]);
  if (kind === 'tables') return layout.ifds.flatMap((d) => d.entries.filter((e) => (e.tag === 324 || e.tag === 325 || e.tag === 273 || e.tag === 279) && e.dataAt !== e.valueFieldAt).map((e): [number, number] => [e.dataAt, e.dataAt + e.dataBytes]));
  return layout.tiles.filter((x) => x.bytes > 0 && x.at + x.bytes <= size).map((x) => [x.at, x.at + x.bytes]);
}

/** One seeded mutant of `base`: XOR a few bytes, or (outside tile data) set an aligned word to a hostile value. */
function mutate(base: Buffer, layout: TiffLayout, kind: Kind, r: () => number): { bytes: Buffer; change: string } {
  const pick = <X>(xs: readonly X[]): X => xs[Math.floor(r() * xs.length)]!;
  const [a, b] = pick(spans(layout, base.length, kind));
  const out = Buffer.from(base);
  if (kind === 'tiles' || r() < 0.5) {
    const n = 1 + Math.floor(r() * (kind === 'tiles' ? 8 : 3));
    const changes: string[] = [];
    for (let k = 0; k < n; k++) {
      const at = a + Math.floor(r() * (b - a));
      const x = 1 + Math.floor(r() * 255);
      out[at] = out[at]! ^ x;
      changes.push(`byte ${at} ^= 0x${x.toString(16)}`);
    }
    return { bytes: out, change: changes.join(', ') };
  }
  const width = layout.big && kind !== 'header' ? pick([2, 4, 8]) : pick([2, 4]);
  const at = a + Math.floor((r() * (b - a)) / width) * width;
  if (at + width > b) return { bytes: out, change: 'nothing (span too short)' };
  const hostile = [0, 1, 0xff, 0xffff, 0x3fffffff, 0x7fffffff, 0x80000000, 0xe0000000, 0xffffffff, base.length - 1, base.length, base.length + 1, 2 ** 32, 2 ** 40, 2 ** 63];
  const v = BigInt(pick(hostile)) % (1n << BigInt(8 * width));
  const word = Buffer.alloc(8);
  if (layout.le) word.writeBigUInt64LE(v);
  else word.writeBigUInt64BE(v);
  (layout.le ? word.subarray(0, width) : word.subarray(8 - width)).copy(out, at);
  return { bytes: out, change: `bytes ${at}..${at + width - 1} = 0x${v.toString(16)}` };
}

/** The targeted mutants of the issue (tile byte count 0xE0000000, tag count 0x3FFFFFFF), then MUTANTS_PER_SLIDE seeded ones. */
function mutants(prefix: string, base: Buffer, seed: number): Mutant[] {
  const layout = tiffLayout(base);
  const out: Mutant[] = [
    { image_id: `${prefix}-count`, bytes: withValue(base, layout, entryOf(layout, 0, 325), 1, 0xe0000000), change: 'tile 1 byte count = 0xe0000000', expect: /^E_SLIDE_FORMAT: .*tile 1 \(tags 324\/325\): 3758096384 bytes/ },
    { image_id: `${prefix}-tagcount`, bytes: withCount(base, layout, entryOf(layout, 0, 324), 0x3fffffff), change: 'tag 324 count = 0x3fffffff', expect: /^E_SLIDE_FORMAT: .*tag 324 \(TileOffsets\), 1073741823 values/ },
  ];
  const r = mulberry32(seed);
  for (let i = 0; i < MUTANTS_PER_SLIDE; i++) {
    const kind = KINDS[i % KINDS.length]!;
    const m = mutate(base, layout, kind, r);
    out.push({ image_id: `${prefix}-${String(i).padStart(2, '0')}-${kind}`, ...m });
  }
  return out;
}

/** Runs the job, killing its process group past RUN_BOUND_MS; `timedOut` says whether it had to. */
async function boundedRun(args: readonly string[], cwd: string): Promise<CliResult & { timedOut: boolean }> {
  const run = startCli(args, cwd, { group: true });
  let timedOut = false;
  const killGroup = (): void => {
    try {
      process.kill(-run.child.pid!, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup();
  }, RUN_BOUND_MS);
  try {
    return { ...(await run.done), timedOut };
  } finally {
    clearTimeout(timer);
    killGroup(); // workers left behind by a killed parent
  }
}

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'fuzz-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, [PYRAMID]);
  const pyramid = await readFile(join(slidesDir, 'good-p.tiff'));
  // The single-level slide: the pyramid's level 0 rewritten by libvips as a classic tiled JPEG TIFF (same tissue).
  const singlePath = join(slidesDir, 'good-s.tif');
  await sharp(pyramid, { page: 0 }).tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 85 }).toFile(singlePath);
  const single = await readFile(singlePath);
  const all = [...mutants('p', pyramid, SEED), ...mutants('s', single, SEED + 1)];
  for (const m of all) await writeFile(join(slidesDir, `${m.image_id}.${m.image_id.startsWith('p') ? 'tiff' : 'tif'}`), m.bytes);
  const good = ['good-p', 'good-s'];
  const ids = [...good, ...all.map((m) => m.image_id)];
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, ids.map((id, i) => ({ image_id: id, center_id: i % 3, patient_id: `pt-${id}`, image_num: 0, label: String(i % 2) })), true);
  const out = join(cwd, 'out');
  const run = await boundedRun(['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--max-tiles', String(MAX_TILES), '--workers', '2', '--progress', 'none'], cwd);
  const change = new Map(all.map((m) => [m.image_id, m]));

  t.test(`the job over ${all.length} mutants (seed ${SEED}) and ${good.length} good slides ends by itself, exit 0 or 1, no stack trace`, async (t) => {
    t.notOk(run.timedOut, `finished within ${RUN_BOUND_MS} ms`);
    t.equal(run.signal, null, 'not killed by a signal');
    t.ok(run.code === 0 || run.code === 1, `exit code ${run.code}\n${run.stderr.slice(-4000)}`);
    t.notMatch(run.stderr, /^\s+at .+:\d+:\d+\)?$/m, 'no stack trace');
    t.notMatch(run.stderr, /Assertion failed|FATAL ERROR|Aborted|core dumped|Segmentation fault/, 'no native failure');
  });

  t.test('report.json: every slide reported, every failure with its E_ code, no worker died', async (t) => {
    const report = await readReport(out);
    t.same(report.slides.map((s) => s.image_id).sort(), [...ids].sort());
    const byCode = new Map<string, number>();
    for (const s of report.slides) {
      const m = change.get(s.image_id);
      const what = `${s.image_id}${m ? ` (${m.change})` : ''}`;
      if (s.status === 'ok') continue;
      byCode.set(s.code ?? '-', (byCode.get(s.code ?? '-') ?? 0) + 1);
      t.match(s.code, /^E_[A-Z_]+$/, `${what}: failed with an E_ code`);
      t.not(s.code, 'E_WORKER_CRASH', `${what}: the worker did not die: ${s.error}`);
      // report.json keeps the code apart and a short message naming the slide's file (stages/report/failures.ts).
      if (s.code?.startsWith('E_SLIDE')) t.match(s.error, new RegExp(`^${s.image_id}(\\.[a-z]+)?: `), `${what}: the message names the slide's file`);
    }
    for (const m of all.filter((x) => x.expect !== undefined)) {
      const s = report.slides.find((x) => x.image_id === m.image_id)!;
      t.equal(s.code, 'E_SLIDE_FORMAT', `${m.image_id}: ${m.change}`);
      t.match(s.error, new RegExp(m.expect!.source.replace(/^\^E_SLIDE_FORMAT: /, '')), `${m.image_id}: names the tag or tile`);
    }
    const failed = report.slides.filter((s) => s.status === 'failed').length;
    t.comment(`${failed} of ${report.slides.length} slides failed: ${[...byCode].map(([c, n]) => `${c} ${n}`).join(', ')}`);
    t.ok(failed > all.length / 4 && failed < report.slides.length, 'the mutants exercise both outcomes');
  });

  t.test('the good slides of the same run are written: their kept tiles, in the shard', async (t) => {
    const report = await readReport(out);
    const expected = expectedPositions(PYRAMID).slice(0, MAX_TILES);
    t.equal(expected.length, MAX_TILES);
    const examples = await readExamples(out);
    for (const id of good) {
      t.equal(report.slides.find((s) => s.image_id === id)?.status, 'ok', `${id} ok`);
      const ex = examples.find((e) => e.bytes['patient_id']![0]!.toString() === `pt-${id}`);
      t.ok(ex, `${id}: its patient's record is in the shard`);
      t.same(ex?.bytes['image_ids']?.map(String), [id]);
      t.same(ex?.ints['tile_x'], expected.map((p) => p[0]), `${id}: tile_x`);
      t.same(ex?.ints['tile_y'], expected.map((p) => p[1]), `${id}: tile_y`);
      t.equal(ex?.floats['avg_embedding']?.length, MAX_TILES * 1280);
    }
  });
}
