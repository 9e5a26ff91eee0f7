/**
 * Per-slide outputs (--formats h5, geojson): CPU ms per 1,000 tiles of WriteH5 and WriteGeoJSON on one patient's
 * in-memory bag (2 slides, 2 outputs x 1280 floats), next to the TFRecord encoding and writing of the same patient
 * (encodeExample + writeTfrecords), alternated in the same process, --repeat rounds, medians and same-run ratios.
 * CPU is process.cpuUsage (user + system) around each writer; the files go to a temporary folder.
 * Run: npx tsc -p . && node dist/bench/slide-files.js [--tiles N] [--runs N]; in the suite: --only slide-files.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StageContext, StageMetrics, TileBudget } from '../engine/types.js';
import type { SlideFacts } from '../stages/slide-files/slide-facts.js';
import type { SlideFilesElement } from '../stages/slide-files/slide-tiles.js';
import { writeH5 } from '../stages/slide-files/write-h5.js';
import { writeGeoJson } from '../stages/slide-files/write-geojson.js';
import { encodeExample } from '../stages/tfrecord/example.js';
import { writeTfrecords } from '../stages/write-tfrecords.js';
import type { EmbeddingBag, TileRef } from '../stages/types.js';
import type { Figure } from './figure.js';
import { log, median } from './record.js';

const DIM = 1280;
const TILE = { tileSize: 448, downsample: 16, backgroundThreshold: 190, maxBackground: 0.1 };

function context(name: string): StageContext {
  const metrics: StageMetrics = { name, elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} };
  const tiles: TileBudget = { limit: 1, inUse: 0, maxInUse: 0, acquire: async () => {}, release: () => {} };
  return { signal: new AbortController().signal, name, metrics, tiles };
}

/** One patient, two slides of n/2 tiles, rows in memory (one Float32Array per row, as an unspilled bag yields them). */
function patient(n: number): { element: SlideFilesElement; bag: EmbeddingBag } {
  const tiles: TileRef[] = Array.from({ length: n }, (_, i) => ({ image_id: i < n / 2 ? 's0' : 's1', image_num: i < n / 2 ? 0 : 1, x: 448 * (i % 100), y: 448 * Math.floor(i / 100) }));
  const rows = { avg: tiles.map((_, i) => new Float32Array(DIM).map((_, j) => Math.sin(i + j))), max: tiles.map((_, i) => new Float32Array(DIM).map((_, j) => Math.cos(i * j))) };
  const bag: EmbeddingBag = {
    patient_id: 'p',
    outputs: [{ name: 'avg', dim: DIM }, { name: 'max', dim: DIM }],
    tiles,
    async *rows(name) {
      yield* rows[name as 'avg' | 'max'];
    },
    async dispose() {},
  };
  const facts = (image_id: string): SlideFacts => ({ image_id, width: 44800, height: 448 * Math.ceil(n / 100), levels: [1, 4, 16], tileLevel: 0, format: 'svs', histogramTiles: n / 2, histogram: new Float32Array(4096).fill(1 / 4096) });
  const data = { patient_id: 'p', center_id: '1', label: '1', image_ids: ['s0', 's1'], lines: [2, 3] };
  return { bag, element: ['p', { patient: [data], embeddings: [bag], histograms: [{ patient_id: 'p', tiles: n, histogram: new Float32Array(4096).fill(1 / 4096) }], slides: [[facts('s0'), facts('s1')]] }] };
}

async function cpuMs(fn: () => Promise<void>): Promise<number> {
  const c0 = process.cpuUsage();
  await fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

async function drain<T>(it: AsyncIterable<T>): Promise<void> {
  for await (const _ of it) void _;
}

export interface SlideFilesFigures {
  readonly tiles: number;
  readonly runs: number;
  /** Median CPU ms per 1,000 tiles. */
  readonly cpu_ms_per_1000_tiles: { tfrecord: number; h5: number; geojson: number };
  /** h5 / tfrecord and geojson / tfrecord, medians of the per-round ratios. */
  readonly ratio_to_tfrecord: { h5: number; geojson: number };
}

export async function benchSlideFiles(opts: { tiles?: number; runs?: number } = {}): Promise<SlideFilesFigures> {
  const n = opts.tiles ?? 4000;
  const runs = opts.runs ?? 3;
  const { element, bag } = patient(n);
  const dir = await mkdtemp(join(tmpdir(), 'bench-slide-files-'));
  const ms = { tfrecord: [] as number[], h5: [] as number[], geojson: [] as number[] };
  try {
    async function* one(): AsyncGenerator<SlideFilesElement> {
      yield element;
    }
    await drain(writeH5({ outDir: dir, tile: TILE, encoder: { name: 'bench', sha256: '0'.repeat(64) }, precision: 'fp32' })(one(), context('WriteH5'))); // h5wasm loaded, warm
    for (let r = 0; r < runs; r++) {
      ms.tfrecord.push(await cpuMs(async () => {
        async function* examples() {
          yield encodeExample({ patient_id: 'p', patient: element[1].patient[0]!, bag, histogram: element[1].histograms[0]! }, { withLabel: true });
        }
        await writeTfrecords({ outDir: join(dir, 'tf') })(examples(), context('WriteTFRecords'));
      }));
      ms.h5.push(await cpuMs(() => drain(writeH5({ outDir: dir, tile: TILE, encoder: { name: 'bench', sha256: '0'.repeat(64) }, precision: 'fp32' })(one(), context('WriteH5')))));
      ms.geojson.push(await cpuMs(() => drain(writeGeoJson({ outDir: dir, tileSize: 448 })(one(), context('WriteGeoJSON')))));
      log(`slide-files round ${r + 1}: tfrecord ${ms.tfrecord.at(-1)!.toFixed(0)} ms, h5 ${ms.h5.at(-1)!.toFixed(0)} ms, geojson ${ms.geojson.at(-1)!.toFixed(0)} ms CPU for ${n} tiles`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const per = (xs: number[]): number => (median(xs) * 1000) / n;
  return {
    tiles: n,
    runs,
    cpu_ms_per_1000_tiles: { tfrecord: per(ms.tfrecord), h5: per(ms.h5), geojson: per(ms.geojson) },
    ratio_to_tfrecord: { h5: median(ms.h5.map((v, i) => v / ms.tfrecord[i]!)), geojson: median(ms.geojson.map((v, i) => v / ms.tfrecord[i]!)) },
  };
}

/** The suite's figure (`npm run bench -- --only slide-files`). */
export function slideFilesFigure(): Figure {
  return {
    name: 'per-slide files (h5, geojson)',
    enabled: (opts) => opts.runs('slide-files'),
    async measure({ opts, record }) {
      const f = await benchSlideFiles({ runs: opts.repeat });
      record.result.slide_files = f;
      record.show(`per-slide files, CPU ms / 1000 tiles (tfrecord, h5, geojson)`, `${f.cpu_ms_per_1000_tiles.tfrecord.toFixed(0)}, ${f.cpu_ms_per_1000_tiles.h5.toFixed(0)}, ${f.cpu_ms_per_1000_tiles.geojson.toFixed(0)}`);
    },
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const arg = (name: string): number | undefined => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : undefined);
  console.log(JSON.stringify(await benchSlideFiles({ tiles: arg('--tiles') ?? 4000, runs: arg('--runs') ?? 3 }), null, 2));
}
