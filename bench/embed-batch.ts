/**
 * Part `embed-batch` (named only: `npm run bench -- --only embed-batch [--embed-model FILE.onnx] [--precision int8]
 * [--embed-threads 2] [--repeat 5]`): the embedder's CPU ms per tile at batch 1, 2, 4, 8 and 16, each measurement in
 * a fresh child (bench/embed-cost.ts) with the stages' session options (or --embed-variant), the batch sizes
 * alternated within each of --repeat rounds; medians, the median same-round ratio to batch 1, and the batch with the
 * lowest median: the --batch-size decision for that model and precision on this machine.
 */
import type { BenchContext, Figure } from './figure.js';
import { embedCostInChild } from './embed-cost.js';
import { median } from './record.js';

export const SWEEP_BATCHES = [1, 2, 4, 8, 16] as const;
/** Tiles per measurement (whole batches of 16). */
const TILES = 48;

async function measure(ctx: BenchContext): Promise<void> {
  const { opts, record } = ctx;
  const model = opts.embedModel ?? ctx.models.efficientnet;
  const rounds = Math.max(1, opts.repeat);
  const cpu = new Map<number, number[]>(SWEEP_BATCHES.map((b) => [b, []]));
  const ratio = new Map<number, number[]>(SWEEP_BATCHES.map((b) => [b, []]));
  for (let r = 0; r < rounds; r++) {
    const round = new Map<number, number>();
    for (let k = 0; k < SWEEP_BATCHES.length; k++) {
      const batch = SWEEP_BATCHES[(k + r) % SWEEP_BATCHES.length]!; // rotated: no batch size always first
      const run = embedCostInChild({ model, batch, threads: opts.embedThreads, variant: opts.embedVariant, tiles: TILES, size: 448 });
      round.set(batch, run.cpuMsPerTile);
      cpu.get(batch)!.push(run.cpuMsPerTile);
    }
    for (const b of SWEEP_BATCHES) ratio.get(b)!.push(round.get(b)! / round.get(1)!);
  }
  const byBatch = Object.fromEntries(SWEEP_BATCHES.map((b) => [b, median(cpu.get(b)!)]));
  const best = SWEEP_BATCHES.reduce((a, b) => (byBatch[b]! < byBatch[a]! ? b : a));
  record.result.embed_batch = {
    model, precision: opts.precision, threads: opts.embedThreads, variant: opts.embedVariant, rounds,
    cpu_ms_per_tile: byBatch,
    ratio_to_batch_1: Object.fromEntries(SWEEP_BATCHES.map((b) => [b, median(ratio.get(b)!)])),
    runs: Object.fromEntries(SWEEP_BATCHES.map((b) => [b, cpu.get(b)!])),
    lowest: best,
  };
  const label = `embed ${opts.precision} CPU ms/tile by batch (${opts.embedThreads} thread${opts.embedThreads > 1 ? 's' : ''}, ${rounds} rounds, x batch 1)`;
  record.show(label, SWEEP_BATCHES.map((b) => `${b}: ${byBatch[b]!.toFixed(2)} (x${median(ratio.get(b)!).toFixed(3)})`).join(', '));
  record.show(`embed ${opts.precision}: lowest median CPU ms/tile at batch`, String(best));
}

export function embedBatchFigure(): Figure {
  return { name: 'embed-batch', usesLut: false, enabled: (o) => o.runs('embed-batch'), measure };
}
