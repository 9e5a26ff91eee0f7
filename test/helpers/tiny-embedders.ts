/** Seeded tiny state dicts (torch/timm key names) for the embedder builders' tests. */
import { Prng } from '../../models/prng.js';
import type { NamedTensor } from '../../models/tensor.js';

/** A tiny bottleneck ResNet state dict: stem 4, layer1 2 blocks (2->8), layer2 and layer3 1 block each (->12, ->16). */
export function tinyResNet(seed: number): Map<string, NamedTensor> {
  const rng = new Prng(seed);
  const m = new Map<string, NamedTensor>();
  const conv = (key: string, cout: number, cin: number, k: number): void => {
    m.set(`${key}.weight`, { shape: [cout, cin, k, k], data: rng.normals(cout * cin * k * k, Math.sqrt(2 / (cin * k * k))) });
  };
  const bn = (key: string, c: number): void => {
    m.set(`${key}.weight`, { shape: [c], data: Float32Array.from({ length: c }, () => 0.5 + rng.next()) });
    m.set(`${key}.bias`, { shape: [c], data: rng.normals(c, 0.1) });
    m.set(`${key}.running_mean`, { shape: [c], data: rng.normals(c, 0.1) });
    m.set(`${key}.running_var`, { shape: [c], data: Float32Array.from({ length: c }, () => 0.5 + rng.next()) });
    m.set(`${key}.num_batches_tracked`, { shape: [], data: Float32Array.of(7) });
  };
  conv('conv1', 4, 3, 7);
  bn('bn1', 4);
  const blocks: Array<[string, number, number, number, boolean]> = [
    ['layer1.0', 4, 2, 8, true], ['layer1.1', 8, 2, 8, false], ['layer2.0', 8, 4, 12, true], ['layer3.0', 12, 4, 16, true],
    ['layer4.0', 16, 4, 20, true], // ignored by the trunk
  ];
  for (const [key, cin, width, cout, down] of blocks) {
    conv(`${key}.conv1`, width, cin, 1); bn(`${key}.bn1`, width);
    conv(`${key}.conv2`, width, width, 3); bn(`${key}.bn2`, width);
    conv(`${key}.conv3`, cout, width, 1); bn(`${key}.bn3`, cout);
    if (down) { conv(`${key}.downsample.0`, cout, cin, 1); bn(`${key}.downsample.1`, cout); }
  }
  m.set('fc.weight', { shape: [5, 20], data: rng.normals(100, 0.1) });
  m.set('fc.bias', { shape: [5], data: rng.normals(5, 0.1) });
  return m;
}

export interface TinyVit {
  readonly dim: number;
  readonly depth: number;
  readonly patch: number;
  readonly grid: number;
  readonly registers: number;
  readonly noEmbedClass: boolean;
  readonly hidden: number;
  /** Per block: 'gelu' (fc1/fc2), 'packed' (fc1 [2H,D], SiLU gate first), 'split' (fc1_g, fc1_x). */
  readonly mlp: ReadonlyArray<'gelu' | 'packed' | 'split'>;
  readonly layerScale: boolean;
}

/** A tiny timm-named ViT state dict with seeded weights. */
export function tinyVit(c: TinyVit, seed: number): Map<string, NamedTensor> {
  const rng = new Prng(seed);
  const m = new Map<string, NamedTensor>();
  const put = (k: string, shape: number[], std: number, base = 0): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = rng.normals(n, std);
    m.set(k, { shape, data: base ? d.map((v) => v + base) : d });
  };
  const D = c.dim;
  put('patch_embed.proj.weight', [D, 3, c.patch, c.patch], Math.sqrt(1 / (3 * c.patch * c.patch)));
  put('patch_embed.proj.bias', [D], 0.1);
  put('cls_token', [1, 1, D], 0.5);
  if (c.registers) put('reg_token', [1, c.registers, D], 0.5);
  put('pos_embed', [1, c.grid * c.grid + (c.noEmbedClass ? 0 : 1 + c.registers), D], 0.5);
  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}`;
    for (const n of ['norm1', 'norm2']) { put(`${b}.${n}.weight`, [D], 0.2, 1); put(`${b}.${n}.bias`, [D], 0.1); }
    put(`${b}.attn.qkv.weight`, [3 * D, D], Math.sqrt(2 / D));
    put(`${b}.attn.qkv.bias`, [3 * D], 0.1);
    put(`${b}.attn.proj.weight`, [D, D], Math.sqrt(1 / D));
    put(`${b}.attn.proj.bias`, [D], 0.1);
    if (c.layerScale) { put(`${b}.ls1.gamma`, [D], 0.3, 0.5); put(`${b}.ls2.gamma`, [D], 0.3, 0.5); }
    const H = c.hidden;
    if (c.mlp[i] === 'split') {
      for (const n of ['fc1_g', 'fc1_x']) { put(`${b}.mlp.${n}.weight`, [H, D], Math.sqrt(1 / D)); put(`${b}.mlp.${n}.bias`, [H], 0.1); }
    } else {
      const rows = c.mlp[i] === 'packed' ? 2 * H : H;
      put(`${b}.mlp.fc1.weight`, [rows, D], Math.sqrt(1 / D));
      put(`${b}.mlp.fc1.bias`, [rows], 0.1);
    }
    put(`${b}.mlp.fc2.weight`, [D, H], Math.sqrt(1 / H));
    put(`${b}.mlp.fc2.bias`, [D], 0.1);
  }
  put('norm.weight', [D], 0.2, 1);
  put('norm.bias', [D], 0.1);
  put('head.weight', [3, D], 0.1); // a classifier head is ignored
  return m;
}
