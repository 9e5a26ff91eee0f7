/**
 * StainNet (khtao/StainNet): a per-pixel network 3 -> 32 -> ReLU -> 32 -> ReLU -> 3, written with MatMul on the
 * channel axis (the same arithmetic as the authors' 1x1 convolutions, without NCHW transposes).
 * Input `tiles` uint8 [N,S,S,3]; output `normalized` float32 [N,S,S,3] on 0..255, clamped, NOT rounded:
 * callers round once (stages/normalize-tiles.ts rounds half up).
 */
import { DT, GraphBuilder } from './onnx-builder.js';
import { Prng } from './prng.js';
import { checkShapes, weightsMetadata, type NamedTensor, type Weights } from './tensor.js';

export type StainNetWeights = Weights;

/** The state-dict keys and shapes of StainNet-Public_layer3_ch32. */
export const STAINNET_SHAPES: ReadonlyMap<string, readonly number[]> = new Map([
  ['rgb_trans.0.weight', [32, 3, 1, 1]],
  ['rgb_trans.0.bias', [32]],
  ['rgb_trans.2.weight', [32, 32, 1, 1]],
  ['rgb_trans.2.bias', [32]],
  ['rgb_trans.4.weight', [3, 32, 1, 1]],
  ['rgb_trans.4.bias', [3]],
]);

/** Deterministic untrained weights (seeded), He-scaled; output stays a plausible colour map. */
export function demoStainNetWeights(seed = 1234): StainNetWeights {
  const rng = new Prng(seed);
  const tensors = new Map<string, NamedTensor>();
  for (const [key, shape] of STAINNET_SHAPES) {
    const count = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length === 4 ? shape[1]! : 1;
    const data = key.endsWith('.bias') ? rng.normals(count, 0.01) : rng.normals(count, Math.sqrt(2 / fanIn));
    tensors.set(key, { shape, data });
  }
  return { tensors, origin: 'demo-untrained' };
}

/** [out,in,1,1] conv weight -> [in,out] MatMul weight. */
function transposed(t: NamedTensor): Float32Array {
  const [out, inp] = [t.shape[0]!, t.shape[1]!];
  const m = new Float32Array(out * inp);
  for (let o = 0; o < out; o++) for (let i = 0; i < inp; i++) m[i * out + o] = t.data[o * inp + i]!;
  return m;
}

/** Builds the StainNet ONNX model (demo weights when none are given). */
export function buildStainNet(weights: StainNetWeights = demoStainNetWeights()): Uint8Array {
  checkShapes(weights, STAINNET_SHAPES);
  const w = (k: string): NamedTensor => weights.tensors.get(k)!;
  const g = new GraphBuilder();
  const tiles = g.input('tiles', DT.UINT8, ['N', 'H', 'W', 3]);
  let x = g.op('Cast', [tiles], { to: { i: DT.FLOAT } });
  // The authors' scaling: (rgb/255 - 0.5) / 0.5.
  x = g.op('Div', [x, g.float('c255', [], [255])]);
  x = g.op('Sub', [x, g.float('c05', [], [0.5])]);
  x = g.op('Div', [x, 'c05']);
  const layers = [0, 2, 4];
  for (const [n, l] of layers.entries()) {
    const wt = w(`rgb_trans.${l}.weight`);
    const W = g.float(`w${l}`, [wt.shape[1]!, wt.shape[0]!], transposed(wt));
    const b = g.float(`b${l}`, [wt.shape[0]!], w(`rgb_trans.${l}.bias`).data);
    x = g.op('Add', [g.op('MatMul', [x, W]), b]);
    if (n < layers.length - 1) x = g.op('Relu', [x]);
  }
  // y*0.5 + 0.5, clamped to [0,1], times 255.
  x = g.op('Add', [g.op('Mul', [x, 'c05']), 'c05']);
  x = g.op('Clip', [x, g.float('c0', [], [0]), g.float('c1', [], [1])]);
  g.op('Mul', [x, 'c255'], {}, 'normalized');
  g.output('normalized', DT.FLOAT, ['N', 'H', 'W', 3]);
  return g.toBytes('stainnet', { ...weightsMetadata(weights), kind: 'stainnet', pixelwise: 'true' });
}
