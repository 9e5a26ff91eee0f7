/**
 * The accuracy gate of a quantized embedder against its fp32 build (issue 18's figures: mean and 1st-percentile
 * cosine per tile, max abs error), on generated tissue-like tiles: run before a quantized model is written, so that a
 * model that does not pass is refused rather than shipped.
 */
import ort from 'onnxruntime-node';
import { ModelError } from './errors.js';
import { Prng } from './prng.js';
import { sessionOptions } from './runtime/session.js';

/** Cosine per tile against fp32: the mean and the 1st percentile must reach these (issue 18). */
export const INT8_GATE = { mean: 0.99, p1: 0.97 } as const;

export interface GateFigures {
  readonly output: string;
  readonly tiles: number;
  readonly cosine_mean: number;
  readonly cosine_p1: number;
  readonly max_abs_error: number;
  /** max abs error / max |fp32 value| over the tiles. */
  readonly max_abs_relative: number;
  readonly passes: boolean;
}

const clamp = (v: number): number => Math.max(0, Math.min(255, Math.round(v)));

/** `n` tissue-like RGB tiles of `size` px: smooth pink/purple fields, seeded dark nuclei and pixel noise. */
export function generatedTiles(n: number, seed: number, size = 448): Uint8Array[] {
  const rng = new Prng(seed);
  return Array.from({ length: n }, () => {
    const waves = Array.from({ length: 6 }, () => ({ fx: rng.next() * 0.08, fy: rng.next() * 0.08, ph: rng.next() * 6.3, a: 0.5 + rng.next() }));
    const blobs = Array.from({ length: 20 }, () => ({ x: rng.next() * size, y: rng.next() * size, r: 6 + rng.next() * 30 }));
    const px = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let s = 0;
        for (const w of waves) s += w.a * Math.sin(w.fx * x + w.fy * y + w.ph);
        const nucleus = blobs.some((b) => (x - b.x) ** 2 + (y - b.y) ** 2 < b.r * b.r);
        const t = 0.5 + s / 12;
        const noise = (rng.next() - 0.5) * 30;
        const i = 3 * (y * size + x);
        px[i] = clamp(nucleus ? 90 + 40 * t : 220 - 40 * t + noise);
        px[i + 1] = clamp(nucleus ? 50 + 30 * t : 140 - 50 * t + noise);
        px[i + 2] = clamp(nucleus ? 150 + 30 * t : 190 - 20 * t + noise);
      }
    }
    return px;
  });
}

/** Every output of `session` for one tile, copied out. */
export async function runTile(session: ort.InferenceSession, px: Uint8Array, size = 448): Promise<Record<string, Float32Array>> {
  const res = await session.run({ tiles: new ort.Tensor('uint8', px, [1, size, size, 3]) });
  const out: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(res)) {
    out[k] = (t.data as Float32Array).slice();
    t.dispose();
  }
  return out;
}

/** The gate's figures of `quantized` against `reference` on `tiles`, per output. */
export async function compareSessions(quantized: ort.InferenceSession, reference: ort.InferenceSession, tiles: readonly Uint8Array[], size = 448): Promise<GateFigures[]> {
  const per = new Map<string, { cos: number[]; maxAbs: number; scale: number }>();
  for (const px of tiles) {
    const a = await runTile(reference, px, size);
    const b = await runTile(quantized, px, size);
    for (const [output, x] of Object.entries(a)) {
      const y = b[output]!;
      const s = per.get(output) ?? { cos: [], maxAbs: 0, scale: 0 };
      let dot = 0;
      let nx = 0;
      let ny = 0;
      for (let i = 0; i < x.length; i++) {
        dot += x[i]! * y[i]!;
        nx += x[i]! * x[i]!;
        ny += y[i]! * y[i]!;
        s.maxAbs = Math.max(s.maxAbs, Math.abs(x[i]! - y[i]!));
        s.scale = Math.max(s.scale, Math.abs(x[i]!));
      }
      s.cos.push(nx === 0 && ny === 0 ? 1 : dot / Math.sqrt(nx * ny));
      per.set(output, s);
    }
  }
  return [...per].map(([output, s]) => {
    const sorted = [...s.cos].sort((u, v) => u - v);
    const mean = s.cos.reduce((u, v) => u + v, 0) / s.cos.length;
    const p1 = sorted[Math.floor(0.01 * (sorted.length - 1))]!;
    return { output, tiles: tiles.length, cosine_mean: mean, cosine_p1: p1, max_abs_error: s.maxAbs, max_abs_relative: s.scale > 0 ? s.maxAbs / s.scale : 0, passes: mean >= INT8_GATE.mean && p1 >= INT8_GATE.p1 };
  });
}

/** Measures `quantized` against `reference` (ONNX bytes) on `count` generated tiles; E_INT8_GATE when an output fails. */
export async function checkInt8Gate(quantized: Uint8Array, reference: Uint8Array, label: string, count = 32, threads = 1): Promise<GateFigures[]> {
  const [q, r] = [await ort.InferenceSession.create(quantized, sessionOptions(threads)), await ort.InferenceSession.create(reference, sessionOptions(threads))];
  let figures: GateFigures[];
  try {
    figures = await compareSessions(q, r, generatedTiles(count, 19));
  } finally {
    await Promise.all([q.release(), r.release()]);
  }
  const failed = figures.filter((f) => !f.passes);
  if (failed.length > 0) {
    throw new ModelError('E_INT8_GATE', `${label}: the int8 model does not pass the accuracy gate against fp32 (cosine mean >= ${INT8_GATE.mean}, p1 >= ${INT8_GATE.p1}) on ${count} generated tiles: ${describeGate(failed)}`);
  }
  return figures;
}

export function describeGate(figures: readonly GateFigures[]): string {
  return figures.map((f) => `${f.output} mean ${f.cosine_mean.toFixed(4)}, p1 ${f.cosine_p1.toFixed(4)}, max abs ${f.max_abs_error.toPrecision(3)}`).join('; ');
}
