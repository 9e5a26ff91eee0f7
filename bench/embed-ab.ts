/**
 * Embedding A/B (run by hand): CPU ms per tile of the embedder under several onnxruntime session-option sets and/or
 * onnxruntime-node copies, each measurement in a fresh child (bench/embed-cost.ts), the variants alternated within
 * every round (A B C, A B C, ...) so that the host's drift hits them alike; medians over rounds, the median of the
 * per-round ratios to the first variant, and each variant's largest absolute output difference from the first.
 *
 *   node dist/bench/embed-ab.js [--variants base,no-quickgelu,base@/tmp/ort123] [--batch 1,8] [--threads 1,2]
 *     [--rounds 9] [--tiles 48] [--model FILE.onnx] [--json FILE]
 *
 * A variant is a SESSION_VARIANTS name (bench/session-variants.ts), optionally `@DIR` for another onnxruntime-node
 * copy (DIR/node_modules/onnxruntime-node, e.g. `npm install --prefix DIR onnxruntime-node@1.23`). The default
 * model is the demo EfficientNet-B0 (built under .cache/models).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureModels } from '../stages/cli/models-build.js';
import { embedCostInChild, type EmbedCostRun } from './embed-cost.js';
import { CACHE } from './options.js';
import { log, median } from './record.js';

interface Cell {
  readonly variant: string;
  readonly runs: EmbedCostRun[];
  readonly ratios: number[];
  maxAbsDiff: number;
  identical: boolean;
}

const list = (s: string): string[] => s.split(',').map((x) => x.trim()).filter(Boolean);

function readFloats(file: string): Float32Array {
  const b = readFileSync(file);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

/** The largest |a - b| (Infinity when the lengths differ) and whether the bytes are identical. */
function compare(a: Float32Array, b: Float32Array): { maxAbsDiff: number; identical: boolean } {
  if (a.length !== b.length) return { maxAbsDiff: Infinity, identical: false };
  let m = 0;
  let same = true;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) same = false;
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
  }
  return { maxAbsDiff: m, identical: same };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      variants: { type: 'string', default: 'base,no-quickgelu' },
      batch: { type: 'string', default: '1,8' },
      threads: { type: 'string', default: '1,2' },
      rounds: { type: 'string', default: '9' },
      tiles: { type: 'string', default: '48' },
      model: { type: 'string' },
      json: { type: 'string' },
    },
  });
  const model = values.model ?? (await ensureModels(join(CACHE, 'models'))).efficientnet;
  const variants = list(values.variants!);
  const rounds = Number(values.rounds);
  const tmp = await mkdtemp(join(os.tmpdir(), 'embed-ab-'));
  const results: Record<string, unknown>[] = [];
  log(`embedding A/B on ${os.cpus()[0]?.model ?? 'unknown'} (${os.availableParallelism()} cores, load ${os.loadavg()[0]!.toFixed(1)}): ${model}`);
  try {
    for (const batch of list(values.batch!).map(Number)) {
      for (const threads of list(values.threads!).map(Number)) {
        const cells: Cell[] = variants.map((v) => ({ variant: v, runs: [], ratios: [], maxAbsDiff: 0, identical: true }));
        for (let r = 0; r < rounds; r++) {
          // Rotate the order each round too: no variant always runs first after a pause or last before one.
          for (let k = 0; k < cells.length; k++) {
            const idx = (k + r) % cells.length;
            const cell = cells[idx]!;
            const [variant, ortDir] = cell.variant.split('@') as [string, string | undefined];
            const dump = r === 0 ? join(tmp, `${idx}.bin`) : undefined;
            cell.runs.push(embedCostInChild({ model, batch, threads, variant, ortDir, tiles: Number(values.tiles), size: 448, dump }));
          }
          for (const c of cells) c.ratios.push(c.runs[r]!.cpuMsPerTile / cells[0]!.runs[r]!.cpuMsPerTile);
        }
        const ref = readFloats(join(tmp, '0.bin'));
        cells.forEach((c, i) => Object.assign(c, compare(ref, readFloats(join(tmp, `${i}.bin`)))));
        for (const c of cells) {
          const cpu = median(c.runs.map((x) => x.cpuMsPerTile));
          const wall = median(c.runs.map((x) => x.wallMsPerTile));
          const ratio = median(c.ratios);
          results.push({ batch, threads, variant: c.variant, ort: c.runs[0]!.ortVersion, cpu_ms_per_tile: cpu, wall_ms_per_tile: wall, ratio_to_first: ratio, max_abs_diff: c.maxAbsDiff, identical: c.identical, cpu_runs: c.runs.map((x) => x.cpuMsPerTile) });
          log(`batch ${batch} threads ${threads} ${c.variant.padEnd(28)} ort ${c.runs[0]!.ortVersion}: CPU ${cpu.toFixed(2)} ms/tile (wall ${wall.toFixed(2)}), x${ratio.toFixed(3)} of ${variants[0]} (same-round), max |diff| ${c.identical ? '0 (identical)' : c.maxAbsDiff.toExponential(2)}`);
        }
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  if (values.json !== undefined) writeFileSync(values.json, JSON.stringify({ model, cpu: os.cpus()[0]?.model, loadavg_end: os.loadavg(), rounds, results }, null, 2) + '\n');
}

await main();
