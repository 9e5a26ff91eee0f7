/**
 * ResNet truncated after layer3 ("resnet50_trunc", CLAM's and TRIDENT's default CNN encoder): the torchvision / timm
 * bottleneck ResNet (stride on the 3x3 conv, BN eps 1e-5) from the stem through layer3, batch norm folded into the
 * convolutions, then global average and max pooling. Depths and widths are read from the weights (ResNet-50 gives
 * 3/4/6 blocks and 1024 channels; ResNet-101/152 trunks build the same way). Input `tiles` uint8 NHWC [N,S,S,3],
 * resized to 224 and ImageNet-normalised in the graph; outputs `avg` and `max`, float32 [N,C].
 */
import { foldBatchNorm, IMAGENET_MEAN, IMAGENET_STD, inputMetadata, inputStage, type InputSpec } from './layers.js';
import { DT, GraphBuilder } from './onnx-builder.js';
import { ModelError } from './errors.js';
import { checkShapes, weightsMetadata, type NamedTensor, type Weights } from './tensor.js';

export const RESNET_ARCH = 'resnet50_trunc';
const BN_EPS = 1e-5;
const INPUT: InputSpec = { size: 224, mean: IMAGENET_MEAN, std: IMAGENET_STD };
const BN_PARTS = ['weight', 'bias', 'running_mean', 'running_var'] as const;

/** One bottleneck block at `key` (e.g. `layer2.0`): 1x1 -> 3x3 (stride) -> 1x1, optional 1x1 downsample. */
interface Bottleneck {
  readonly key: string;
  readonly cin: number;
  readonly width: number;
  readonly cout: number;
  readonly stride: number;
  readonly downsample: boolean;
}

/** The trunk read from the weights' keys and shapes: stem width and the blocks of layer1..layer3. */
export interface ResNetLayout {
  readonly stem: number;
  readonly blocks: readonly Bottleneck[];
  /** Blocks per layer, e.g. [3, 4, 6]. */
  readonly depths: readonly number[];
  readonly channels: number;
}

/** True when the keys look like a bottleneck ResNet trunk (stem conv1 and a layer3 bottleneck). */
export function looksLikeResNet(tensors: ReadonlyMap<string, NamedTensor>): boolean {
  return tensors.get('conv1.weight')?.shape.length === 4 && tensors.has('layer3.0.conv3.weight');
}

/** The layout of the weights (E_WEIGHTS naming `origin` when a needed tensor is missing). */
export function resnetLayout(weights: Weights): ResNetLayout {
  const t = weights.tensors;
  const shape = (k: string): readonly number[] => {
    const s = t.get(k)?.shape;
    if (!s || s.length !== 4) throw new ModelError('E_WEIGHTS', `${weights.origin}: missing 4-d tensor '${k}' for ${RESNET_ARCH}`);
    return s;
  };
  const stem = shape('conv1.weight')[0]!;
  const blocks: Bottleneck[] = [];
  const depths: number[] = [];
  let cin = stem;
  for (let layer = 1; layer <= 3; layer++) {
    let n = 0;
    while (t.has(`layer${layer}.${n}.conv1.weight`)) {
      const key = `layer${layer}.${n}`;
      const width = shape(`${key}.conv1.weight`)[0]!;
      const cout = shape(`${key}.conv3.weight`)[0]!;
      const stride = n === 0 && layer > 1 ? 2 : 1;
      const downsample = t.has(`${key}.downsample.0.weight`);
      if (!downsample && (cin !== cout || stride !== 1)) {
        throw new ModelError('E_WEIGHTS', `${weights.origin}: block ${key} changes shape (${cin}->${cout} channels, stride ${stride}) but has no 'downsample.0.weight'`);
      }
      blocks.push({ key, cin, width, cout, stride, downsample });
      cin = cout;
      n++;
    }
    if (n === 0) throw new ModelError('E_WEIGHTS', `${weights.origin}: no blocks in layer${layer} (missing 'layer${layer}.0.conv1.weight') for ${RESNET_ARCH}`);
    depths.push(n);
  }
  return { stem, blocks, depths, channels: cin };
}

/** Every tensor the trunk needs, with its shape (layer4, fc and num_batches_tracked are ignored). */
export function resnetShapes(layout: ResNetLayout): Map<string, readonly number[]> {
  const shapes = new Map<string, readonly number[]>();
  const convBn = (conv: string, bn: string, cout: number, cin: number, k: number): void => {
    shapes.set(`${conv}.weight`, [cout, cin, k, k]);
    for (const p of BN_PARTS) shapes.set(`${bn}.${p}`, [cout]);
  };
  convBn('conv1', 'bn1', layout.stem, 3, 7);
  for (const b of layout.blocks) {
    convBn(`${b.key}.conv1`, `${b.key}.bn1`, b.width, b.cin, 1);
    convBn(`${b.key}.conv2`, `${b.key}.bn2`, b.width, b.width, 3);
    convBn(`${b.key}.conv3`, `${b.key}.bn3`, b.cout, b.width, 1);
    if (b.downsample) convBn(`${b.key}.downsample.0`, `${b.key}.downsample.1`, b.cout, b.cin, 1);
  }
  return shapes;
}

/** Builds the truncated ResNet ONNX model from a torchvision/timm state dict. */
export function buildResNetTrunc(weights: Weights): Uint8Array {
  const layout = resnetLayout(weights);
  checkShapes(weights, resnetShapes(layout));
  const g = new GraphBuilder();
  const conv = (x: string, convKey: string, bnKey: string, stride: number, relu: boolean): string => {
    const w = weights.tensors.get(`${convKey}.weight`)!;
    const [gamma, beta, mean, variance] = BN_PARTS.map((p) => weights.tensors.get(`${bnKey}.${p}`)!.data);
    const f = foldBatchNorm(w, { gamma: gamma!, beta: beta!, mean: mean!, variance: variance!, eps: BN_EPS });
    const k = w.shape[2]!;
    const pad = (k - 1) >> 1;
    const y = g.op('Conv', [x, g.float(`${convKey}.w`, w.shape, f.w), g.float(`${convKey}.b`, [w.shape[0]!], f.b)], {
      kernel_shape: { ints: [k, k] },
      strides: { ints: [stride, stride] },
      pads: { ints: [pad, pad, pad, pad] },
    });
    return relu ? g.op('Relu', [y]) : y;
  };
  let x = conv(inputStage(g, INPUT), 'conv1', 'bn1', 2, true);
  x = g.op('MaxPool', [x], { kernel_shape: { ints: [3, 3] }, strides: { ints: [2, 2] }, pads: { ints: [1, 1, 1, 1] } });
  for (const b of layout.blocks) {
    let y = conv(x, `${b.key}.conv1`, `${b.key}.bn1`, 1, true);
    y = conv(y, `${b.key}.conv2`, `${b.key}.bn2`, b.stride, true);
    y = conv(y, `${b.key}.conv3`, `${b.key}.bn3`, 1, false);
    const skip = b.downsample ? conv(x, `${b.key}.downsample.0`, `${b.key}.downsample.1`, b.stride, false) : x;
    x = g.op('Relu', [g.op('Add', [y, skip])]);
  }
  g.op('Flatten', [g.op('GlobalAveragePool', [x])], { axis: { i: 1 } }, 'avg');
  g.op('Flatten', [g.op('GlobalMaxPool', [x])], { axis: { i: 1 } }, 'max');
  g.output('avg', DT.FLOAT, ['N', layout.channels]);
  g.output('max', DT.FLOAT, ['N', layout.channels]);
  return g.toBytes(RESNET_ARCH, {
    ...weightsMetadata(weights),
    kind: RESNET_ARCH,
    ...inputMetadata(INPUT),
    depths: layout.depths.join(','),
    outputs: `avg:${layout.channels},max:${layout.channels}`,
  });
}
