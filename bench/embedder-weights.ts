/**
 * Seeded random state dicts at full size, under the published key names, for the per-architecture bench
 * (bench/embedders.ts): timm ViT-S/16 and ViT-L/16, torchvision ResNet50 (the trunk keeps layer1..layer3). The
 * project's builders turn them into ONNX exactly as they would the real files; the weights only need the right
 * shapes (for speed) and activations of a sensible scale (for the quantization study): Linear and conv weights
 * N(0, 1/fan_in), norms' weights 1 + N(0, 0.1).
 */
import { Prng } from '../models/prng.js';
import type { NamedTensor, Weights } from '../models/tensor.js';

export interface VitSize {
  readonly name: string;
  readonly dim: number;
  readonly depth: number;
  readonly hidden: number;
}

/** The two ViT widths of the bench: timm vit_small_patch16_224 (Kaiko, Lunit) and vit_large_patch16_224 (UNI). */
export const VIT_SIZES: readonly VitSize[] = [
  { name: 'vit_s16', dim: 384, depth: 12, hidden: 1536 },
  { name: 'vit_l16', dim: 1024, depth: 24, hidden: 4096 },
];

function filler(seed: number) {
  const rng = new Prng(seed);
  const m = new Map<string, NamedTensor>();
  const put = (k: string, shape: number[], std: number, base = 0): void => {
    const d = rng.normals(shape.reduce((a, b) => a * b, 1), std);
    if (base !== 0) for (let i = 0; i < d.length; i++) d[i]! += base;
    m.set(k, { shape, data: d });
  };
  return { m, put };
}

/** A timm VisionTransformer state dict (patch 16, 224 input: grid 14, class token, no registers). */
export function randomVit(size: VitSize, seed: number): Weights {
  const { m, put } = filler(seed);
  const D = size.dim;
  const H = size.hidden;
  put('patch_embed.proj.weight', [D, 3, 16, 16], Math.sqrt(1 / (3 * 256)));
  put('patch_embed.proj.bias', [D], 0.02);
  put('cls_token', [1, 1, D], 0.02);
  put('pos_embed', [1, 197, D], 0.02);
  for (let i = 0; i < size.depth; i++) {
    const b = `blocks.${i}`;
    for (const n of ['norm1', 'norm2']) { put(`${b}.${n}.weight`, [D], 0.1, 1); put(`${b}.${n}.bias`, [D], 0.02); }
    put(`${b}.attn.qkv.weight`, [3 * D, D], Math.sqrt(1 / D));
    put(`${b}.attn.qkv.bias`, [3 * D], 0.02);
    put(`${b}.attn.proj.weight`, [D, D], Math.sqrt(1 / D));
    put(`${b}.attn.proj.bias`, [D], 0.02);
    put(`${b}.mlp.fc1.weight`, [H, D], Math.sqrt(1 / D));
    put(`${b}.mlp.fc1.bias`, [H], 0.02);
    put(`${b}.mlp.fc2.weight`, [D, H], Math.sqrt(1 / H));
    put(`${b}.mlp.fc2.bias`, [D], 0.02);
  }
  put('norm.weight', [D], 0.1, 1);
  put('norm.bias', [D], 0.02);
  return { tensors: m, origin: `random ${size.name} (seed ${seed})` };
}

/** A torchvision resnet50 state dict up to layer3 (what resnet50_trunc reads). */
export function randomResNet50(seed: number): Weights {
  const { m, put } = filler(seed);
  const conv = (k: string, cout: number, cin: number, ks: number): void => put(`${k}.weight`, [cout, cin, ks, ks], Math.sqrt(2 / (cin * ks * ks)));
  const bn = (k: string, c: number): void => {
    put(`${k}.weight`, [c], 0.1, 1);
    put(`${k}.bias`, [c], 0.05);
    put(`${k}.running_mean`, [c], 0.05);
    put(`${k}.running_var`, [c], 0.05, 1);
    m.set(`${k}.num_batches_tracked`, { shape: [], data: Float32Array.of(1) });
  };
  conv('conv1', 64, 3, 7);
  bn('bn1', 64);
  let cin = 64;
  for (const [layer, blocks, width] of [[1, 3, 64], [2, 4, 128], [3, 6, 256]] as const) {
    for (let i = 0; i < blocks; i++) {
      const k = `layer${layer}.${i}`;
      conv(`${k}.conv1`, width, cin, 1); bn(`${k}.bn1`, width);
      conv(`${k}.conv2`, width, width, 3); bn(`${k}.bn2`, width);
      conv(`${k}.conv3`, 4 * width, width, 1); bn(`${k}.bn3`, 4 * width);
      if (i === 0) { conv(`${k}.downsample.0`, 4 * width, cin, 1); bn(`${k}.downsample.1`, 4 * width); }
      cin = 4 * width;
    }
  }
  return { tensors: m, origin: `random resnet50 (seed ${seed})` };
}
