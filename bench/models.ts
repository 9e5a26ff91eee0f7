/**
 * Model throughput: EfficientNet-B0 (batch 1..64, threads 1 and 2), StainNet via onnxruntime vs lookup table,
 * colour histograms. Run: npx tsc -p . && node dist/bench/models.js [--quick]
 * Writes bench/RESULTS-models.md (medians of several runs).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import ort from 'onnxruntime-node';
import { buildEfficientNetB0, buildStainNet } from '../models/build.js';
import { tileHistogram } from '../stages/color-histograms.js';
import { applyLut, buildLut } from '../models/runtime/lut.js';
import { sessionOptions } from '../models/runtime/session.js';

const SIZE = 448;
const quick = process.argv.includes('--quick');
const REPEATS = quick ? 2 : 3;

function tiles(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n * SIZE * SIZE * 3);
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    // H&E-ish: pinks and purples, not uniform noise (matters for the table's cache behaviour).
    out[i] = i % 3 === 1 ? 60 + ((s >>> 24) & 127) : 140 + ((s >>> 25) & 127);
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median tiles/s of `run(tilesPerCall)` over REPEATS timed rounds of at least `minTiles` tiles (after a warm-up). */
async function rate(perCall: number, minTiles: number, run: () => Promise<void> | void): Promise<number> {
  await run();
  const rates: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const calls = Math.max(1, Math.ceil(minTiles / perCall));
    const t0 = process.hrtime.bigint();
    for (let c = 0; c < calls; c++) await run();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    rates.push((calls * perCall) / s);
  }
  return median(rates);
}

const rows: string[] = [];
const row = (what: string, config: string, value: string): void => {
  rows.push(`| ${what} | ${config} | ${value} |`);
  console.log(`${what.padEnd(34)} ${config.padEnd(22)} ${value}`);
};

const load0 = os.loadavg();
const effBytes = buildEfficientNetB0();
for (const threads of [1, 2]) {
  const session = await ort.InferenceSession.create(effBytes, sessionOptions(threads));
  for (const batch of quick ? [1, 16] : [1, 4, 16, 32, 64]) {
    const x = new ort.Tensor('uint8', tiles(batch, batch), [batch, SIZE, SIZE, 3]);
    const r = await rate(batch, quick ? 16 : 64, async () => {
      await session.run({ tiles: x });
    });
    row('EfficientNet-B0 (448 in)', `batch ${batch}, threads ${threads}`, `${r.toFixed(1)} tiles/s`);
  }
  await session.release();
}

const stainBytes = buildStainNet();
for (const threads of [1, 2]) {
  const session = await ort.InferenceSession.create(stainBytes, sessionOptions(threads));
  const x = new ort.Tensor('uint8', tiles(8, 3), [8, SIZE, SIZE, 3]);
  const r = await rate(8, 64, async () => {
    const out = await session.run({ tiles: x });
    out.normalized!.dispose();
  });
  row('StainNet onnxruntime (+ no rounding)', `batch 8, threads ${threads}`, `${r.toFixed(1)} tiles/s`);
  if (threads === 2) {
    const t0 = Date.now();
    const lut = await buildLut(session);
    row('StainNet table build (2^24 colours)', 'threads 2', `${((Date.now() - t0) / 1000).toFixed(2)} s`);
    const px = tiles(16, 5);
    const out = new Uint8Array(SIZE * SIZE * 3);
    const per = SIZE * SIZE * 3;
    let k = 0;
    const r2 = await rate(1, 500, () => {
      applyLut(lut, px.subarray((k % 16) * per, ((k++ % 16) + 1) * per), out);
    });
    row('StainNet lookup table', '1 tile, 1 core (JS)', `${r2.toFixed(0)} tiles/s`);
  }
  await session.release();
}

{
  const px = tiles(16, 7);
  const per = SIZE * SIZE * 3;
  let k = 0;
  const r = await rate(1, 500, () => {
    tileHistogram(px.subarray((k % 16) * per, ((k++ % 16) + 1) * per));
  });
  row('Colour histogram 16x16x16', '1 tile, 1 core (JS)', `${r.toFixed(0)} tiles/s`);
}

const load1 = os.loadavg();
const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
const md = `# Models benchmark

\`node dist/bench/models.js\` on ${new Date().toISOString().slice(0, 10)}: nproc ${os.cpus().length}, ${cpu}, Node ${process.version},
onnxruntime-node ${ort.env.versions.common}. Load average before/after: ${load0.map((l) => l.toFixed(2)).join(' ')} / ${load1.map((l) => l.toFixed(2)).join(' ')}
(the machine is shared with other jobs: figures are medians of ${REPEATS} rounds after a warm-up, 448x448 tiles, demo weights).

| what | configuration | median |
|---|---|---|
${rows.join('\n')}

Notes: the 2-core machine ran 3 other helpers' builds/tests during these runs (load average 5-8), so absolute
figures are low and noisy (an earlier quick run, load ~5, gave EfficientNet-B0 87 tiles/s at batch 1, 1 thread).
Same-run A/B, batch 8, 2 threads, load 8: intra-op spinning on 7.5 tiles/s vs off 17.6 tiles/s, so sessions are
created with \`allow_spinning = 0\`. The target of >= 200 EfficientNet tiles/s on both cores was NOT reached or
measurable here; B0 at 224 is ~0.39 GFLOP per tile, so 200 tiles/s needs ~80 GFLOP/s of sustained convolution
on 2 cores, probably beyond these CPUs even unloaded. The lookup table meets >= 1,000 tiles/s per core.
Fidelity (models/dev/fidelity.py, torch 1.13.1): EfficientNet-B0 avg/max max abs error 3.3e-7, StainNet 3.8e-5 on 0..255.
`;
writeFileSync(new URL('../../bench/RESULTS-models.md', import.meta.url), md);
console.log('wrote bench/RESULTS-models.md');
