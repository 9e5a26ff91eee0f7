/**
 * The stages with no engine at all: one process reads a slide's tiles and, for each tile in turn, normalizes it
 * (lookup table), embeds it (onnxruntime, 1 thread, batch 1) and takes its colour histogram. No channels, no
 * batching, no worker protocol, no serialization, no output. bench/run.ts starts one copy alone and then one copy
 * per core at once: the second is what a perfect engine could reach on this machine's cores as they really scale.
 *
 *   node dist/bench/ideal.js <slide.tiff> <tiles> <lut file> <efficientnet.onnx> [all|read|normalize|embed|histogram]
 *
 * Prints one JSON line: tiles, and wall / CPU milliseconds from the first tile on (the slide's open and thumbnail
 * and the session's creation are start-up, measured elsewhere). With a stage name, only that stage is timed, over
 * tiles read (and normalized) beforehand, repeated for at least 2 s: how each stage alone scales when every core
 * runs it at once. Copies started together wait at a barrier: each prints `ready` once set up and starts timing
 * when a line arrives on stdin, so their timed parts overlap.
 */
import { dirname } from 'node:path';
import ort from 'onnxruntime-node';
import type { StageContext } from '../engine/types.js';
import { tileHistogram } from '../stages/color-histograms.js';
import { applyLut } from '../models/runtime/lut.js';
import { mapOrReadFile } from '../models/runtime/map-file.js';
import { sessionOptions } from '../models/runtime/session.js';
import { configureSharpForWorker } from '../stages/slides/backend-sharp.js';
import { DEFAULT_TILE_PARAMS } from '../stages/slides/tile-params.js';
import { produceTiles } from '../stages/produce-tiles.js';

const [slidePath, count, lutFile, model, only = 'all'] = process.argv.slice(2);
if (slidePath === undefined || count === undefined || lutFile === undefined || model === undefined || !['all', 'read', 'normalize', 'embed', 'histogram'].includes(only)) {
  console.error('usage: node dist/bench/ideal.js <slide.tiff> <tiles> <lut file> <efficientnet.onnx> [all|read|normalize|embed|histogram]');
  process.exit(2);
}
configureSharpForWorker();
const lut = (await mapOrReadFile(lutFile)).bytes; // as the pipeline loads it
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
const tiles = (): AsyncIterable<{ pixels: Uint8Array }> => produceTiles({ ...DEFAULT_TILE_PARAMS, maxTiles: Number(count) + 1 })((async function* () { yield task; })(), ctx);
const embed = async (pixels: Uint8Array): Promise<void> => {
  const res = await session.run({ tiles: new ort.Tensor('uint8', pixels, [1, T, T, 3]) });
  for (const t of Object.values(res)) t.dispose();
};
/** Tells the parent this copy is set up, then waits for its go (a line on stdin). */
const barrier = async (): Promise<void> => {
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  process.stdin.pause();
};
let n = 0;
let t0 = 0;
let c0 = process.cpuUsage();
/** The first tile warms up the session and the decoder: the clock starts after it. */
const tick = (): void => {
  if (n++ > 0) return;
  t0 = performance.now();
  c0 = process.cpuUsage();
};
if (only === 'all' || only === 'read') {
  await barrier();
  for await (const tile of tiles()) {
    if (only === 'all') {
      applyLut(lut, tile.pixels, tile.pixels); // in place, as the pipeline does
      await embed(tile.pixels);
      tileHistogram(tile.pixels);
    }
    tick();
  }
} else {
  const read: Uint8Array[] = [];
  for await (const tile of tiles()) read.push(tile.pixels);
  const normalized = read.map((p) => {
    const out = new Uint8Array(p.length);
    applyLut(lut, p, out);
    return out;
  });
  const outputs = only === 'normalize' ? read.map((p) => new Uint8Array(p.length)) : [];
  await barrier();
  for (let i = 0; n < 2 || performance.now() - t0 < 2000; i = (i + 1) % read.length) {
    if (only === 'normalize') applyLut(lut, read[i]!, outputs[i]!); // the lookups alone, into buffers made beforehand
    else if (only === 'embed') await embed(normalized[i]!);
    else tileHistogram(normalized[i]!);
    tick();
  }
}
const c = process.cpuUsage(c0);
process.stdout.write('\n');
console.log(JSON.stringify({ tiles: n - 1, wall_ms: performance.now() - t0, cpu_ms: (c.user + c.system) / 1000 }));
await session.release();
