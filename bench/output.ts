/**
 * Output-area benchmark: writing tf.train.Examples of 500 tiles (500*1280*2 floats, ~5 MB each) to
 * TFRecord shards, from in-memory and from spilled bags, and raw CRC32C throughput.
 * Run: npx tsc -p . && node dist/bench/output.js   (writes bench/RESULTS-output.md)
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { combineEmbeddings } from '../stages/combine-embeddings.js';
import { toExample } from '../stages/to-example.js';
import { writeTfrecords } from '../stages/write-tfrecords.js';
import { crc32c } from '../stages/tfrecord/crc32c.js';
import type { PatientRecord } from '../stages/tfrecord/example.js';
import type { StageContext } from '../engine/types.js';

const TILES = 500;
const DIM = 1280;
const PATIENTS = 16;
const RUNS = 5;

function ctx(name: string): StageContext {
  return {
    signal: new AbortController().signal,
    name,
    metrics: { name, elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} },
    tiles: { limit: 1, inUse: 0, maxInUse: 0, acquire: async () => {}, release: () => {} },
  };
}

async function records(spillDir: string, spillThresholdBytes: number): Promise<PatientRecord[]> {
  const fn = combineEmbeddings({ spillThresholdBytes });
  const out: PatientRecord[] = [];
  for (let p = 0; p < PATIENTS; p++) {
    const patient_id = `patient-${String(p).padStart(3, '0')}`;
    let acc = await fn.createAccumulator({ key: patient_id, spillDir: join(spillDir, patient_id), signal: new AbortController().signal });
    for (let i = 0; i < TILES; i++) {
      const avg = new Float32Array(DIM).map((_, d) => Math.sin(i + d));
      acc = await fn.addInput(acc, { kind: 'embeddings', image_id: 'img', patient_id, image_num: 0, x: [448 * (i % 40)], y: [448 * Math.floor(i / 40)], outputs: [{ name: 'avg', dim: DIM, rows: avg }, { name: 'max', dim: DIM, rows: avg }] });
    }
    out.push({
      patient_id,
      patient: { patient_id, center_id: '1', label: 'MSS', image_ids: ['img'], lines: [p + 2] },
      bag: await fn.extractOutput(acc),
      histogram: { patient_id, tiles: TILES, histogram: new Float32Array(4096).fill(1 / 4096) },
    });
  }
  return out;
}

async function* from<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function writeCase(shards: number, spill: boolean): Promise<{ recordsPerSec: number; mbPerSec: number }> {
  const rates: number[] = [];
  let bytes = 0;
  for (let r = 0; r < RUNS; r++) {
    const dir = await mkdtemp(join(tmpdir(), 'bench-out-'));
    try {
      const input = await records(join(dir, 'spill'), spill ? 1 << 20 : 64 << 20);
      const start = performance.now();
      await writeTfrecords({ outDir: join(dir, 'out'), shards, onSummary: (s) => (bytes = s.bytes) })(toExample({ withLabel: true })(from(input), ctx('to-example')), ctx('write'));
      rates.push((performance.now() - start) / 1000);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  const seconds = median(rates);
  return { recordsPerSec: PATIENTS / seconds, mbPerSec: bytes / 1e6 / seconds };
}

async function main(): Promise<void> {
  const cpu = (await readFile('/proc/cpuinfo', 'utf8').catch(() => '')).match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const rows: string[] = [];
  for (const [shards, spill] of [[1, true], [1, false], [4, false], [4, true]] as const) {
    const r = await writeCase(shards, spill);
    rows.push(`| write ${PATIENTS} Examples of ${TILES} tiles, ${shards} shard(s), ${spill ? 'spilled' : 'in-memory'} bags | ${r.recordsPerSec.toFixed(1)} records/s | ${r.mbPerSec.toFixed(0)} MB/s |`);
  }
  const buf = new Uint8Array(64 << 20).map((_, i) => i & 0xff);
  const times: number[] = [];
  let sink = 0;
  for (let r = 0; r < RUNS; r++) {
    const start = performance.now();
    sink = (sink ^ crc32c(buf)) >>> 0;
    times.push((performance.now() - start) / 1000);
  }
  rows.push(`| CRC32C over 64 MiB (@node-rs/crc32) | ${(buf.length / 1e9 / median(times)).toFixed(2)} GB/s | (check ${sink.toString(16)}) |`);

  const table = ['| case | rate | throughput |', '|---|---|---|', ...rows].join('\n');
  console.log(table);
  const md = `# Output benchmark (bench/output.ts)\n\nMachine: ${cpus().length} CPUs visible (nproc), ${cpu}; Node ${process.version}. Shared, noisy machine: medians of ${RUNS} runs.\nEach Example: ${TILES} tiles x ${DIM} x 2 float32 (~${((TILES * DIM * 8) / 1e6).toFixed(1)} MB). Timing covers to-example + write-tfrecords (framing, CRC, staging, copy or rename, fsync), not building the bags.\n\n${table}\n`;
  await writeFile(new URL('../../bench/RESULTS-output.md', import.meta.url), md);
}

await main();
