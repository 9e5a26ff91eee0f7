/**
 * The stages with no engine at all: one process reads a slide's tiles and, for each tile in turn, normalizes it
 * (lookup table), embeds it (onnxruntime, 1 thread, batch 1) and takes its colour histogram. No channels, no
 * batching, no worker protocol, no serialization, no output. bench/run.ts starts one copy alone and then one copy
 * per core at once: the second is what a perfect engine could reach on this machine's cores as they really scale.
 *
 *   node dist/bench/ideal.js <slide.tiff> <tiles> <lut file> <efficientnet.onnx>
 *
 * Prints one JSON line: tiles, and wall / CPU milliseconds from the first tile on (the slide's open and thumbnail
 * and the session's creation are start-up, measured elsewhere).
 */
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import ort from 'onnxruntime-node';
import type { StageContext } from '../engine/types.js';
import { tileHistogram } from '../stages/color-histograms.js';
import { applyLut } from '../stages/lib/lut.js';
import { sessionOptions } from '../stages/lib/onnx-session.js';
import { configureSharpForWorker } from '../stages/lib/slide-sharp.js';
import { DEFAULT_TILE_PARAMS } from '../stages/lib/tile-params.js';
import { produceTiles } from '../stages/produce-tiles.js';

const [slidePath, count, lutFile, model] = process.argv.slice(2);
if (slidePath === undefined || count === undefined || lutFile === undefined || model === undefined) {
  console.error('usage: node dist/bench/ideal.js <slide.tiff> <tiles> <lut file> <efficientnet.onnx>');
  process.exit(2);
}
configureSharpForWorker();
const lut = new Uint8Array(await readFile(lutFile));
const session = await ort.InferenceSession.create(model, sessionOptions(1));
const T = DEFAULT_TILE_PARAMS.tileSize;
const ctx: StageContext = {
  signal: new AbortController().signal,
  name: 'ideal',
  metrics: { name: 'ideal', elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} },
  tiles: { limit: 1e9, inUse: 0, maxInUse: 0, acquire: async () => undefined, release: () => undefined },
};
const id = slidePath.replace(/^.*\//, '').replace(/\.tiff$/, '');
const task = { image_id: id, patient_id: 'p', image_num: 0, slidesDir: dirname(slidePath) };
let n = 0;
let t0 = 0;
let c0 = process.cpuUsage();
for await (const tile of produceTiles({ ...DEFAULT_TILE_PARAMS, maxTiles: Number(count) + 1 })((async function* () { yield task; })(), ctx)) {
  const out = new Uint8Array(tile.pixels.length);
  applyLut(lut, tile.pixels, out);
  const res = await session.run({ tiles: new ort.Tensor('uint8', out, [1, T, T, 3]) });
  for (const t of Object.values(res)) t.dispose();
  tileHistogram(out);
  if (n++ === 0) {
    // The first tile warms up the session and the decoder: the clock starts after it.
    t0 = performance.now();
    c0 = process.cpuUsage();
  }
}
const c = process.cpuUsage(c0);
console.log(JSON.stringify({ tiles: n - 1, wall_ms: performance.now() - t0, cpu_ms: (c.user + c.system) / 1000 }));
await session.release();
