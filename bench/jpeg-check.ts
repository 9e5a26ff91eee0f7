/**
 * The corrupt-JPEG-tile check (--jpeg-check, stages/slides/tile-check.ts): its CPU against the tile read it guards.
 * (a) The check alone, CPU ms per stored JPEG tile, quick and full, over every level-0 tile of a generated 8k slide
 *     (256 px tiles, per-tile Huffman tables) and of the shared Aperio SVS (240 px tiles, shared JPEGTables).
 * (b) ProduceTiles' read on the generated slide (readRegion of columns of 224 px tiles, one libvips thread, as a
 *     worker runs it), CPU ms per output tile, with --jpeg-check off / quick / full, runs alternated, medians.
 * CPU from process.cpuUsage (user + system). Part `jpeg-check` (named only): npm run bench -- --only jpeg-check;
 * alone: npx tsc -p . && node dist/bench/jpeg-check.js [--runs N]. Slides cached in .cache/bench-jpeg-check.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { configureSharpForWorker } from '../stages/slides/backend-sharp.js';
import { jpegTileFault, type JpegCheckMode } from '../stages/slides/jpeg-check.js';
import { openSlide } from '../stages/slides/open.js';
import { generateSlide } from '../stages/slides/synthetic.js';
import { parseTiff } from '../stages/slides/tiff-parse.js';
import type { JpegCheckSetting } from '../stages/slides/tile-check.js';
import type { Figure } from './figure.js';

const DIR = '.cache/bench-jpeg-check';
const SIDE = 8192;
const TILE = 224;
const CMU = fileURLToPath(new URL('../../../shared/testdata/slides/cmu-1-small-region.svs', import.meta.url));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

export interface JpegCheckFigures {
  /** (a): CPU ms per stored tile by slide and mode. */
  readonly check_ms_per_stored_tile: Record<string, { tiles: number; quick: number; full: number }>;
  /** (b): CPU ms per 224 px output tile read, by --jpeg-check. */
  readonly read_ms_per_tile: Record<JpegCheckSetting, number>;
  /** (b) as a fraction of the unchecked read. */
  readonly overhead: { quick: number; full: number };
  readonly runs: number;
}

async function generated(): Promise<string> {
  mkdirSync(DIR, { recursive: true });
  const path = `${DIR}/syn-${SIDE}.tiff`;
  if (!existsSync(path)) await generateSlide({ path, width: SIDE, height: SIDE, seed: 11, tissue: [{ kind: 'ellipse', cx: SIDE / 2, cy: SIDE / 2, rx: SIDE * 0.4, ry: SIDE * 0.3 }] });
  return path;
}

/** (a) on one slide's level-0 tiles: the median over `runs` passes of each mode. */
async function checkOnly(path: string, runs: number): Promise<{ tiles: number; quick: number; full: number }> {
  const fh = await open(path, 'r');
  const tiles: Buffer[] = [];
  let tables: Uint8Array | undefined;
  try {
    const ifd = (await parseTiff(fh)).ifds[0]!;
    tables = ifd.jpegTables;
    for (let i = 0; i < ifd.offsets.length; i++) {
      const b = Buffer.alloc(ifd.byteCounts[i]!);
      await fh.read(b, 0, b.length, ifd.offsets[i]!);
      tiles.push(b);
    }
  } finally {
    await fh.close();
  }
  const pass = (mode: JpegCheckMode): number => {
    const c0 = cpuMs();
    for (const b of tiles) if (jpegTileFault(b, tables, mode) !== undefined) throw new Error(`${path}: a clean tile faults`);
    return (cpuMs() - c0) / tiles.length;
  };
  const xs: Record<JpegCheckMode, number[]> = { quick: [], full: [] };
  pass('full'); // warm-up (JIT)
  for (let r = 0; r < runs; r++) for (const m of ['quick', 'full'] as const) xs[m].push(pass(m));
  return { tiles: tiles.length, quick: median(xs.quick), full: median(xs.full) };
}

/** (b): one pass of column reads (8 tiles of 224 px each) over the tissue in the middle of the slide, CPU ms per output tile. */
async function readPass(path: string, mode: JpegCheckSetting): Promise<number> {
  const s = await openSlide(path, 'bench', { jpegCheck: mode });
  try {
    const c0 = cpuMs();
    let n = 0;
    for (let x = SIDE / 8; x + TILE <= (7 * SIDE) / 8; x += TILE) {
      for (let y = SIDE / 4; y + 8 * TILE <= (3 * SIDE) / 4; y += 8 * TILE) {
        await s.readRegion(0, x, y, TILE, 8 * TILE);
        n += 8;
      }
    }
    return (cpuMs() - c0) / n;
  } finally {
    await s.close();
  }
}

export async function benchJpegCheck(runs = 5): Promise<JpegCheckFigures> {
  configureSharpForWorker();
  const syn = await generated();
  const check: Record<string, { tiles: number; quick: number; full: number }> = { [`generated ${SIDE} px`]: await checkOnly(syn, runs) };
  if (existsSync(CMU)) check['CMU-1-Small-Region.svs'] = await checkOnly(CMU, runs);
  const modes: JpegCheckSetting[] = ['off', 'quick', 'full'];
  const xs: Record<JpegCheckSetting, number[]> = { off: [], quick: [], full: [] };
  for (const m of modes) await readPass(syn, m); // warm-up (JIT, page cache)
  for (let r = 0; r < runs; r++) for (const m of r % 2 === 0 ? modes : [...modes].reverse()) xs[m].push(await readPass(syn, m));
  const read = { off: median(xs.off), quick: median(xs.quick), full: median(xs.full) };
  return { check_ms_per_stored_tile: check, read_ms_per_tile: read, overhead: { quick: read.quick / read.off - 1, full: read.full / read.off - 1 }, runs };
}

export function jpegCheckFigure(): Figure {
  return {
    name: 'corrupt-JPEG-tile check',
    usesLut: false,
    enabled: (opts) => opts.runs('jpeg-check'),
    async measure({ opts, record }) {
      const f = await benchJpegCheck(Math.max(3, opts.repeat));
      record.result.jpeg_check = f;
      const r = f.read_ms_per_tile;
      record.show('tile read CPU ms/tile, --jpeg-check off / quick / full', `${r.off.toFixed(3)} / ${r.quick.toFixed(3)} / ${r.full.toFixed(3)} (+${(f.overhead.quick * 100).toFixed(1)}% / +${(f.overhead.full * 100).toFixed(1)}%)`);
    },
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const runs = argv.includes('--runs') ? Number(argv[argv.indexOf('--runs') + 1]) : 5;
  console.log(JSON.stringify(await benchJpegCheck(runs), null, 2));
}
