/**
 * Issue 18, int8 EfficientNet-B0 (`npm run build && node dist/bench/int8.js [--pairs N] [--job | --job-only]`):
 *   1. embedding CPU ms per tile, fp32 vs int8 (the QDQ model, calibrated on seeded tissue-like tiles), at batch 1
 *      and 8, one onnxruntime thread, measured in alternated pairs in one process (process.cpuUsage), medians;
 *   2. with --job: the main job end to end on the demo slides (demo models; StainNet table; 2 workers), fp32 vs
 *      int8 alternated after one int8 warm-up run (which calibrates and gates; later runs reuse the cache):
 *      tiles/s (tiles written / elapsed) and peak RSS of the process tree, from each run's report.json.
 * Prints a markdown table for bench/RESULTS.md (section "Issue 18: int8 EfficientNet-B0").
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { buildEfficientNetB0 } from '../models/build.js';
import { buildGated, calibrate } from '../models/quant/int8-embedder.js';
import { sessionOptions } from '../models/runtime/session.js';
import { Prng } from '../models/prng.js';

const SIZE = 448;
const args = process.argv.slice(2);
const PAIRS = Number(args[args.indexOf('--pairs') + 1] ?? 5) || 5;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Seeded tiles with smooth coloured blobs (H&E-ish pinks and purples) and noise. */
function tiles(n: number, seed: number): Uint8Array[] {
  const rng = new Prng(seed);
  return Array.from({ length: n }, () => {
    const blobs = Array.from({ length: 8 }, () => ({ x: rng.next() * SIZE, y: rng.next() * SIZE, r: (0.05 + 0.2 * rng.next()) * SIZE, c: [150 + 90 * rng.next(), 60 + 100 * rng.next(), 150 + 80 * rng.next()] }));
    const px = new Uint8Array(SIZE * SIZE * 3);
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const b = blobs.find((b) => (x - b.x) ** 2 + (y - b.y) ** 2 < b.r ** 2);
        for (let c = 0; c < 3; c++) px[(y * SIZE + x) * 3 + c] = Math.max(0, Math.min(255, Math.round((b ? b.c[c]! : 235) + 20 * (rng.next() - 0.5))));
      }
    }
    return px;
  });
}

/** CPU ms per tile of one run of `batch` tiles. */
async function cpuPerTile(s: ort.InferenceSession, input: ort.Tensor, batch: number): Promise<number> {
  const c0 = process.cpuUsage();
  const out = await s.run({ tiles: input });
  const c = process.cpuUsage(c0);
  for (const v of Object.values(out)) v.dispose();
  return (c.user + c.system) / 1000 / batch;
}

async function embedding(): Promise<string[]> {
  const fp32 = buildEfficientNetB0();
  async function* chunks(): AsyncIterable<Uint8Array[]> {
    for (let i = 0; i < 4; i++) yield tiles(16, 100 + i);
  }
  const ranges = await calibrate(fp32, SIZE, chunks(), { method: 'percentile' });
  const gated = await buildGated(fp32, ranges, { size: SIZE, pixels: tiles(32, 7) }, { gate: { mean: 0.99, p1: 0.97 }, maxFallback: 0 });
  const f = gated.figures;
  console.error(`gate on 32 held-out tiles: mean cosine ${f.mean_cosine.toFixed(5)}, p1 ${f.p1_cosine.toFixed(5)}, max abs ${f.max_abs_error.toPrecision(3)}`);
  const sf = await ort.InferenceSession.create(fp32, sessionOptions(1));
  const sq = await ort.InferenceSession.create(gated.bytes, sessionOptions(1));
  const rows: string[] = [];
  for (const batch of [1, 8]) {
    const px = tiles(batch, 999);
    const input = new Uint8Array(batch * SIZE * SIZE * 3);
    px.forEach((p, i) => input.set(p, i * SIZE * SIZE * 3));
    const x = new ort.Tensor('uint8', input, [batch, SIZE, SIZE, 3]);
    await cpuPerTile(sf, x, batch);
    await cpuPerTile(sq, x, batch);
    const a: number[] = [];
    const b: number[] = [];
    const calls = Math.max(1, Math.ceil(8 / batch));
    for (let p = 0; p < PAIRS; p++) {
      let ta = 0;
      let tb = 0;
      for (let c = 0; c < calls; c++) ta += await cpuPerTile(sf, x, batch);
      for (let c = 0; c < calls; c++) tb += await cpuPerTile(sq, x, batch);
      a.push(ta / calls);
      b.push(tb / calls);
    }
    rows.push(`| embedding CPU ms/tile, batch ${batch}, 1 thread | ${median(a).toFixed(1)} | ${median(b).toFixed(1)} | ${(median(b) / median(a)).toFixed(2)} | ${PAIRS} alternated pairs of ${calls * batch} tiles |`);
    console.error(rows[rows.length - 1]);
  }
  rows.push(`| gate (demo weights, 32 held-out tiles) | | mean ${f.mean_cosine.toFixed(4)}, p1 ${f.p1_cosine.toFixed(4)} | | |`);
  await sf.release();
  await sq.release();
  return rows;
}

function job(dir: string, out: string, precision: 'fp32' | 'int8'): { tilesPerS: number; rssMb: number } {
  const cli = resolve(fileURLToPath(new URL('../../graph.js', import.meta.url)));
  const r = spawnSync(process.execPath, [cli, '--out', join(dir, out), '--progress', 'none', '--workers', '2', '--no-resume', '--precision', precision], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`job ${precision} exited ${r.status}: ${r.stderr}`);
  const report = JSON.parse(readFileSync(join(dir, out, 'report.json'), 'utf8')) as { tiles_written: number; elapsed_s: number; peak_rss_mb: number };
  return { tilesPerS: report.tiles_written / report.elapsed_s, rssMb: report.peak_rss_mb };
}

function endToEnd(): string[] {
  const dir = resolve('.cache/bench-int8');
  mkdirSync(dir, { recursive: true });
  job(dir, 'warm-fp32', 'fp32'); // demo slides, models, StainNet table
  job(dir, 'warm-int8', 'int8'); // calibration and gate, cached
  const f: Array<{ tilesPerS: number; rssMb: number }> = [];
  const q: Array<{ tilesPerS: number; rssMb: number }> = [];
  for (let p = 0; p < Math.min(PAIRS, 3); p++) {
    f.push(job(dir, 'fp32', 'fp32'));
    q.push(job(dir, 'int8', 'int8'));
  }
  const tf = median(f.map((x) => x.tilesPerS));
  const tq = median(q.map((x) => x.tilesPerS));
  return [
    `| job tiles/s (demo slides, 2 workers) | ${tf.toFixed(1)} | ${tq.toFixed(1)} | ${(tq / tf).toFixed(2)} | ${f.length} alternated pairs |`,
    `| job peak RSS MB | ${median(f.map((x) => x.rssMb)).toFixed(0)} | ${median(q.map((x) => x.rssMb)).toFixed(0)} | | |`,
  ];
}

const load0 = os.loadavg()[0]!;
const rows = [...(args.includes('--job-only') ? [] : await embedding()), ...(args.includes('--job') || args.includes('--job-only') ? endToEnd() : [])];
console.log(`CPU: ${os.cpus()[0]?.model} x ${os.cpus().length}; load average ${load0.toFixed(1)} -> ${os.loadavg()[0]!.toFixed(1)}`);
console.log('| figure | fp32 | int8 | int8/fp32 | how |\n|---|---|---|---|---|');
for (const r of rows) console.log(r);
