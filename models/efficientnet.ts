/**
 * EfficientNet-B0 without top, exactly torchvision's `efficientnet_b0().features` (BatchNorm eps 1e-5 — B0 uses
 * the default nn.BatchNorm2d; only V2 models use 1e-3), batch norm folded into the convolutions, followed by global
 * average and max pooling. Input `tiles` uint8 NHWC [N,S,S,3]; inside: Cast, Transpose, bilinear Resize to 224
 * (half_pixel, no antialias, as torch F.interpolate(align_corners=False)), /255, ImageNet mean/std.
 * Outputs `avg` and `max`, float32 [N,1280].
 */
import { foldBatchNorm, IMAGENET_MEAN, IMAGENET_STD, inputStage } from './layers.js';
import { DT, GraphBuilder } from './onnx-builder.js';
import { Prng } from './prng.js';
import { checkShapes, weightsMetadata, type NamedTensor, type Weights } from './tensor.js';

export type EffNetWeights = Weights;

export const BN_EPS = 1e-5;
export const EMBED_DIM = 1280;
export const INPUT_SIZE = 224;

/** One conv + folded BN (+ SiLU) at a state-dict prefix such as `features.0` (weights `.0.weight`, BN `.1.*`). */
interface ConvBn {
  readonly kind: 'conv';
  readonly key: string;
  readonly cin: number;
  readonly cout: number;
  readonly k: number;
  readonly stride: number;
  readonly groups: number;
  readonly silu: boolean;
}

/** Squeeze-excitation at a prefix (`.fc1`, `.fc2` convs with bias). */
interface SqueezeExcite {
  readonly kind: 'se';
  readonly key: string;
  readonly channels: number;
  readonly squeeze: number;
}

interface Block {
  readonly layers: ReadonlyArray<ConvBn | SqueezeExcite>;
  readonly residual: boolean;
}

/** torchvision's B0 stage table: expand ratio, kernel, stride, in, out, repeats. */
const STAGES: ReadonlyArray<readonly [number, number, number, number, number, number]> = [
  [1, 3, 1, 32, 16, 1],
  [6, 3, 2, 16, 24, 2],
  [6, 5, 2, 24, 40, 2],
  [6, 3, 2, 40, 80, 3],
  [6, 5, 1, 80, 112, 3],
  [6, 5, 2, 112, 192, 4],
  [6, 3, 1, 192, 320, 1],
];

/** The network as a list of blocks (stem, 16 MBConv, head). */
export function effnetArchitecture(): Block[] {
  const conv = (key: string, cin: number, cout: number, k: number, stride: number, groups: number, silu: boolean): ConvBn => ({
    kind: 'conv', key, cin, cout, k, stride, groups, silu,
  });
  const blocks: Block[] = [{ layers: [conv('features.0', 3, 32, 3, 2, 1, true)], residual: false }];
  STAGES.forEach(([expand, k, stride0, cin0, cout, repeats], s) => {
    for (let j = 0; j < repeats; j++) {
      const cin = j === 0 ? cin0 : cout;
      const stride = j === 0 ? stride0 : 1;
      const exp = cin * expand;
      const p = `features.${s + 1}.${j}.block`;
      const layers: Array<ConvBn | SqueezeExcite> = [];
      let i = 0;
      if (exp !== cin) layers.push(conv(`${p}.${i++}`, cin, exp, 1, 1, 1, true));
      layers.push(conv(`${p}.${i++}`, exp, exp, k, stride, exp, true));
      layers.push({ kind: 'se', key: `${p}.${i++}`, channels: exp, squeeze: Math.max(1, Math.floor(cin / 4)) });
      layers.push(conv(`${p}.${i++}`, exp, cout, 1, 1, 1, false));
      blocks.push({ layers, residual: stride === 1 && cin === cout });
    }
  });
  blocks.push({ layers: [conv('features.8', 320, EMBED_DIM, 1, 1, 1, true)], residual: false });
  return blocks;
}

/** Every state-dict tensor the builder needs, with its shape (num_batches_tracked is ignored). */
export function effnetShapes(): Map<string, readonly number[]> {
  const shapes = new Map<string, readonly number[]>();
  for (const block of effnetArchitecture()) {
    for (const l of block.layers) {
      if (l.kind === 'conv') {
        shapes.set(`${l.key}.0.weight`, [l.cout, l.cin / l.groups, l.k, l.k]);
        for (const n of ['weight', 'bias', 'running_mean', 'running_var']) shapes.set(`${l.key}.1.${n}`, [l.cout]);
      } else {
        shapes.set(`${l.key}.fc1.weight`, [l.squeeze, l.channels, 1, 1]);
        shapes.set(`${l.key}.fc1.bias`, [l.squeeze]);
        shapes.set(`${l.key}.fc2.weight`, [l.channels, l.squeeze, 1, 1]);
        shapes.set(`${l.key}.fc2.bias`, [l.channels]);
      }
    }
  }
  return shapes;
}

/**
 * Deterministic untrained weights (seeded). He-scaled convs (std sqrt(2/fan_in)), project convs scaled down so
 * the residual sums stay bounded, BN running stats near identity: activations stay finite through the 16 blocks.
 */
export function demoEffNetWeights(seed = 42): EffNetWeights {
  const rng = new Prng(seed);
  const tensors = new Map<string, NamedTensor>();
  for (const [key, shape] of effnetShapes()) {
    const count = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (shape.length === 4) {
      const fanIn = shape[1]! * shape[2]! * shape[3]!;
      data = rng.normals(count, Math.sqrt((key.includes('fc') ? 1 : 2) / fanIn));
    } else if (key.endsWith('running_var')) {
      data = Float32Array.from({ length: count }, () => 0.5 + rng.next());
    } else if (key.endsWith('running_mean') || key.endsWith('.bias')) {
      data = rng.normals(count, 0.05);
    } else {
      data = Float32Array.from({ length: count }, () => 0.5 + 0.5 * rng.next()); // BN gamma
    }
    tensors.set(key, { shape, data });
  }
  return { tensors, origin: 'demo-untrained' };
}

/** Builds the EfficientNet-B0 ONNX model (demo weights when none are given). */
export function buildEfficientNetB0(weights: EffNetWeights = demoEffNetWeights()): Uint8Array {
  checkShapes(weights, effnetShapes());
  const get = (k: string): NamedTensor => weights.tensors.get(k)!;
  const g = new GraphBuilder();
  let x = inputStage(g, { size: INPUT_SIZE, mean: IMAGENET_MEAN, std: IMAGENET_STD });

  for (const block of effnetArchitecture()) {
    const input = x;
    for (const l of block.layers) x = l.kind === 'conv' ? convBn(g, get, l, x) : squeezeExcite(g, get, l, x);
    if (block.residual) x = g.op('Add', [x, input]);
  }
  g.op('Flatten', [g.op('GlobalAveragePool', [x])], { axis: { i: 1 } }, 'avg');
  g.op('Flatten', [g.op('GlobalMaxPool', [x])], { axis: { i: 1 } }, 'max');
  g.output('avg', DT.FLOAT, ['N', EMBED_DIM]);
  g.output('max', DT.FLOAT, ['N', EMBED_DIM]);
  return g.toBytes('efficientnet_b0', { ...weightsMetadata(weights), kind: 'efficientnet_b0' });
}

function silu(g: GraphBuilder, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/** Conv (no bias) + BatchNorm folded: w' = w*gamma/sqrt(var+eps), b' = beta - mean*gamma/sqrt(var+eps). */
function convBn(g: GraphBuilder, get: (k: string) => NamedTensor, l: ConvBn, x: string): string {
  const w = get(`${l.key}.0.weight`);
  const [gamma, beta, mean, variance] = ['weight', 'bias', 'running_mean', 'running_var'].map((n) => get(`${l.key}.1.${n}`).data);
  const { w: wf, b: bf } = foldBatchNorm(w, { gamma: gamma!, beta: beta!, mean: mean!, variance: variance!, eps: BN_EPS });
  const pad = (l.k - 1) >> 1;
  const y = g.op('Conv', [x, g.float(`${l.key}.w`, w.shape, wf), g.float(`${l.key}.b`, [l.cout], bf)], {
    kernel_shape: { ints: [l.k, l.k] },
    strides: { ints: [l.stride, l.stride] },
    pads: { ints: [pad, pad, pad, pad] },
    group: { i: l.groups },
  });
  return l.silu ? silu(g, y) : y;
}

/** torchvision SqueezeExcitation: avgpool -> fc1 -> SiLU -> fc2 -> Sigmoid -> scale the input. */
function squeezeExcite(g: GraphBuilder, get: (k: string) => NamedTensor, l: SqueezeExcite, x: string): string {
  const fc = (name: string, s: string): string => {
    const w = get(`${l.key}.${name}.weight`);
    return g.op('Conv', [s, g.float(`${l.key}.${name}.w`, w.shape, w.data), g.float(`${l.key}.${name}.b`, [w.shape[0]!], get(`${l.key}.${name}.bias`).data)]);
  };
  const s = g.op('Sigmoid', [fc('fc2', silu(g, fc('fc1', g.op('GlobalAveragePool', [x]))))]);
  return g.op('Mul', [x, s]);
}
