/**
 * Per-architecture embedder cost, and the dynamically quantized ViT study (issue 19). Part `embedders` of the suite
 * (only when named: `npm run bench -- --only embedders`), or alone:
 *   npx tsc -p . && node dist/bench/embedders.js [--runs N] [--threads N] [--accuracy-tiles N] [--no-large]
 * Models: EfficientNet-B0 (the demo weights, the reference), ResNet50-trunc, timm ViT-S/16 and ViT-L/16, all built by
 * the project's builders from seeded random state dicts at full size (bench/embedder-weights.ts), fp32; the ViTs
 * also with their Linear MatMuls dynamically quantized (models/vit.ts `matmul`: s8 per-channel weights, u8 per-tensor
 * activations, fused by onnxruntime into DynamicQuantizeMatMul), with the full s8 range and with 7-bit weights.
 * Built once into .cache/bench-embedders/.
 * Speed: CPU ms per tile (process.cpuUsage: the host is shared), one onnxruntime session per model with the job's
 * session options, 448 px tiles one per run (the job's default batch), the models alternated in every round, medians
 * over the rounds; int8 / fp32 as the median of same-round ratios.
 * Accuracy: int8 against fp32 on generated tissue-like tiles, per output (cls, mean): cosine per tile (mean, 1st
 * percentile) and max abs error, against the int8 gate of issue 18 (mean >= 0.99, p1 >= 0.97; models/int8-gate.ts).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { buildEfficientNetB0 } from '../models/efficientnet.js';
import { compareSessions, generatedTiles, runTile, type GateFigures } from '../models/int8-gate.js';
import { buildResNetTrunc } from '../models/resnet.js';
import { sessionOptions } from '../models/runtime/session.js';
import { buildVit, type VitMatmul } from '../models/vit.js';
import { randomResNet50, randomVit, VIT_SIZES } from './embedder-weights.js';
import type { Figure } from './figure.js';
import { CACHE } from './options.js';
import { log, median } from './record.js';

const DIR = join(CACHE, 'bench-embedders');

interface Variant {
  readonly name: string;
  /** The fp32 model this one is a quantized copy of. */
  readonly base?: string;
  readonly build: () => Uint8Array;
}

/** Every model of the bench; a ViT size's weights are generated once for its fp32 and int8 variants. */
function variants(large: boolean): Variant[] {
  const out: Variant[] = [
    { name: 'efficientnet_b0', build: () => buildEfficientNetB0() },
    { name: 'resnet50_trunc', build: () => buildResNetTrunc(randomResNet50(50)) },
  ];
  for (const size of VIT_SIZES.filter((s) => large || s.name !== 'vit_l16')) {
    let weights: ReturnType<typeof randomVit> | undefined;
    const vit = (matmul: VitMatmul) => () => buildVit((weights ??= randomVit(size, 16)), { matmul });
    out.push({ name: size.name, build: vit('fp32') });
    out.push({ name: `${size.name}_int8`, base: size.name, build: vit('dynamic-int8') });
    out.push({ name: `${size.name}_int8_7bit`, base: size.name, build: vit('dynamic-int8-7bit') });
  }
  return out;
}

/** The variant's ONNX file, built once (written whole, then renamed). */
function modelFile(v: Variant): string {
  const file = join(DIR, `${v.name}.onnx`);
  if (!existsSync(file)) {
    mkdirSync(DIR, { recursive: true });
    log(`building ${v.name}`);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, v.build());
    renameSync(tmp, file);
  }
  return file;
}

const cpuMs = (c: NodeJS.CpuUsage): number => (c.user + c.system) / 1000;

export interface SpeedRow {
  readonly model: string;
  readonly cpu_ms_per_tile: number;
  readonly samples: number[];
}

/** CPU ms per tile of every session, alternated: each round runs every model on `perRound(model)` tiles, order rotated. */
async function speed(sessions: Map<string, ort.InferenceSession>, rounds: number, tiles: Uint8Array[], perRound: (m: string) => number): Promise<SpeedRow[]> {
  const names = [...sessions.keys()];
  for (const n of names) await runTile(sessions.get(n)!, tiles[0]!); // warm-up (allocations, arena)
  const samples = new Map(names.map((n) => [n, [] as number[]]));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < names.length; k++) {
      const n = names[(k + r) % names.length]!;
      const count = perRound(n);
      const c0 = process.cpuUsage();
      for (let i = 0; i < count; i++) await runTile(sessions.get(n)!, tiles[(r + i) % tiles.length]!);
      samples.get(n)!.push(cpuMs(process.cpuUsage(c0)) / count);
    }
    log(`round ${r + 1}/${rounds}: ${names.map((n) => `${n} ${samples.get(n)!.at(-1)!.toFixed(1)}`).join(', ')} ms/tile`);
  }
  return names.map((n) => ({ model: n, cpu_ms_per_tile: median(samples.get(n)!), samples: samples.get(n)! }));
}

export interface AccuracyRow extends GateFigures {
  readonly model: string;
}

export interface EmbedderFigures {
  readonly threads: number;
  readonly speed: SpeedRow[];
  /** Per quantized variant: the median of same-round int8 / fp32 CPU ratios. */
  readonly int8_ratio: Record<string, number>;
  readonly accuracy: AccuracyRow[];
}

export async function benchEmbedders(opts: { rounds: number; threads: number; accuracyTiles: number; large: boolean }): Promise<EmbedderFigures> {
  const all = variants(opts.large);
  const files = new Map(all.map((v) => [v.name, modelFile(v)] as const));
  const sessions = new Map<string, ort.InferenceSession>();
  try {
    for (const [name, file] of files) sessions.set(name, await ort.InferenceSession.create(file, sessionOptions(opts.threads)));
    const tiles = generatedTiles(Math.max(opts.accuracyTiles, 8), 19);
    // Fewer tiles per round for the slow ones, so that a round stays short and the rounds alternate often.
    const rows = await speed(sessions, opts.rounds, tiles, (m) => (m.startsWith('vit_l16') ? 2 : m.startsWith('vit_s16') || m === 'resnet50_trunc' ? 4 : 8));
    const int8_ratio: Record<string, number> = {};
    const samples = new Map(rows.map((r) => [r.model, r.samples]));
    for (const v of all.filter((x) => x.base !== undefined)) {
      const q = samples.get(v.name)!;
      const f = samples.get(v.base!)!;
      int8_ratio[v.name] = median(q.map((x, i) => x / f[i]!));
    }
    const acc: AccuracyRow[] = [];
    for (const v of all.filter((x) => x.base !== undefined)) {
      const n = v.base === 'vit_l16' ? Math.min(opts.accuracyTiles, 16) : opts.accuracyTiles;
      acc.push(...(await compareSessions(sessions.get(v.name)!, sessions.get(v.base!)!, tiles.slice(0, n))).map((f) => ({ model: v.name, ...f })));
      log(`accuracy ${v.name}: ${acc.slice(-2).map((a) => `${a.output} mean ${a.cosine_mean.toFixed(5)} p1 ${a.cosine_p1.toFixed(5)} max abs ${a.max_abs_error.toFixed(4)}`).join('; ')}`);
    }
    return { threads: opts.threads, speed: rows.map(({ model, cpu_ms_per_tile, samples: s }) => ({ model, cpu_ms_per_tile, samples: s })), int8_ratio, accuracy: acc };
  } finally {
    for (const s of sessions.values()) await s.release();
  }
}

/** Part `embedders` (named only: it builds a ViT-L once, about a minute and 4 GB, and runs for several minutes). */
export function embeddersFigure(): Figure {
  return {
    name: 'embedders',
    enabled: (opts) => opts.runs('embedders'),
    async measure({ opts, record }) {
      const f = await benchEmbedders({ rounds: Math.max(3, opts.repeat), threads: 1, accuracyTiles: 64, large: true });
      record.result.embedders = f;
      for (const r of f.speed) record.show(`embedder ${r.model}, CPU ms/tile (1 thread)`, r.cpu_ms_per_tile.toFixed(1));
      for (const [m, r] of Object.entries(f.int8_ratio)) record.show(`embedder ${m} / fp32 CPU`, r.toFixed(3));
      for (const a of f.accuracy) record.show(`embedder ${a.model} ${a.output} vs fp32: cosine mean / p1, max abs`, `${a.cosine_mean.toFixed(5)} / ${a.cosine_p1.toFixed(5)}, ${a.max_abs_error.toFixed(4)} (${a.passes ? 'passes' : 'fails'} the gate)`);
    },
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const flag = (name: string, def: number): number => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : def);
  const f = await benchEmbedders({ rounds: flag('--runs', 5), threads: flag('--threads', 1), accuracyTiles: flag('--accuracy-tiles', 64), large: !argv.includes('--no-large') });
  const json = JSON.stringify({ cpu: /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1], ...f }, null, 2);
  console.log(json);
}
