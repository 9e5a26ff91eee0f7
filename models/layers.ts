/**
 * Graph pieces every embedder shares: the input stage (uint8 NHWC tiles -> normalised float NCHW at the model's
 * input size) and batch-norm folding into a convolution's weights.
 */
import { DT, GraphBuilder } from './onnx-builder.js';
import type { NamedTensor } from './tensor.js';

/** The normalisation most encoders use (torchvision / timm ImageNet statistics). */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** What an embedder expects of its input: the square size tiles are resized to, and the per-channel mean/std. */
export interface InputSpec {
  readonly size: number;
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/** Metadata entries recording an input spec (part of the model file, hence of the checkpoint key). */
export function inputMetadata(spec: InputSpec): Record<string, string> {
  return { input_size: String(spec.size), input_mean: spec.mean.join(','), input_std: spec.std.join(',') };
}

/**
 * Declares input `tiles` uint8 [N,S,S,3] and returns the float32 NCHW tensor: Cast, Transpose, bilinear Resize to
 * `spec.size` (half_pixel, no antialias, as torch F.interpolate(align_corners=False)), /255, (x - mean)/std.
 */
export function inputStage(g: GraphBuilder, spec: InputSpec): string {
  const tiles = g.input('tiles', DT.UINT8, ['N', 'S', 'S', 3]);
  let x = g.op('Transpose', [g.op('Cast', [tiles], { to: { i: DT.FLOAT } })], { perm: { ints: [0, 3, 1, 2] } });
  // sizes = [N, 3, size, size] from the dynamic input shape.
  const nc = g.op('Slice', [g.op('Shape', [x]), g.int64('s0', [0]), g.int64('s2', [2])]);
  const sizes = g.op('Concat', [nc, g.int64('hw', [spec.size, spec.size])], { axis: { i: 0 } });
  x = g.op('Resize', [x, '', '', sizes], {
    mode: { s: 'linear' },
    coordinate_transformation_mode: { s: 'half_pixel' },
  });
  // (x/255 - mean)/std as one multiply-add per channel.
  x = g.op('Mul', [x, g.float('in_scale', [1, 3, 1, 1], spec.std.map((s) => 1 / (255 * s)))]);
  return g.op('Add', [x, g.float('in_shift', [1, 3, 1, 1], spec.mean.map((m, i) => -m / spec.std[i]!))]);
}

/** BatchNorm parameters of one layer (torch names: weight=gamma, bias=beta, running_mean, running_var). */
export interface BatchNorm {
  readonly gamma: Float32Array;
  readonly beta: Float32Array;
  readonly mean: Float32Array;
  readonly variance: Float32Array;
  readonly eps: number;
}

/** Conv (no bias) followed by BN as one conv: w' = w*gamma/sqrt(var+eps), b' = beta - mean*gamma/sqrt(var+eps). */
export function foldBatchNorm(w: NamedTensor, bn: BatchNorm): { w: Float32Array; b: Float32Array } {
  const cout = w.shape[0]!;
  const per = w.data.length / cout;
  const wf = new Float32Array(w.data.length);
  const bf = new Float32Array(cout);
  for (let o = 0; o < cout; o++) {
    const scale = bn.gamma[o]! / Math.sqrt(bn.variance[o]! + bn.eps);
    for (let i = 0; i < per; i++) wf[o * per + i] = w.data[o * per + i]! * scale;
    bf[o] = bn.beta[o]! - bn.mean[o]! * scale;
  }
  return { w: wf, b: bf };
}
