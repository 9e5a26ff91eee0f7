/**
 * timm VisionTransformer ("vit"): patch embedding (any patch size, 14 and 16 in practice), class token, optional
 * register tokens, position embedding with or without `no_embed_class`, pre-norm blocks (LayerNorm eps 1e-6,
 * multi-head attention, exact erf GELU MLP or gated SiLU MLP: timm SwiGLUPacked `mlp.fc1` [2H,D] or SwiGLU
 * `mlp.fc1_g`/`mlp.fc1_x`; optional LayerScale `ls1.gamma`/`ls2.gamma`), final norm. Widths, depth, patch size,
 * register count and input size (position grid x patch) are read from the weights; heads are D/64 (16 for D=1280,
 * ViT-H) unless given. Input `tiles` uint8 NHWC [N,S,S,3] resized and normalised in the graph; outputs `cls` (the
 * class token after the final norm) and `mean` (mean of the patch tokens after the final norm), float32 [N,D].
 */
import { IMAGENET_MEAN, IMAGENET_STD, inputMetadata, inputStage, type InputSpec } from './layers.js';
import { DT, GraphBuilder } from './onnx-builder.js';
import { ModelError } from './errors.js';
import { checkShapes, weightsMetadata, type NamedTensor, type Weights } from './tensor.js';

export const VIT_ARCH = 'vit';
/** timm's LayerNorm eps; Hugging Face transformers' ViTConfig.layer_norm_eps defaults to 1e-12. */
const LN_EPS = 1e-6;
export const HF_LN_EPS = 1e-12;
/** Keys of timm variants this builder does not implement (refused rather than silently mis-built). */
const UNSUPPORTED = ['attn.q_norm.weight', 'attn.k_norm.weight', 'mlp.norm.weight', 'attn.q_bias', 'norm_pre.weight', 'fc_norm.weight'];

type Mlp = 'gelu' | 'swiglu_packed' | 'swiglu';

/** The transformer as read from the weights. */
export interface VitLayout {
  readonly dim: number;
  readonly depth: number;
  readonly heads: number;
  readonly patch: number;
  readonly grid: number;
  readonly registers: number;
  readonly noEmbedClass: boolean;
  readonly hidden: number;
  readonly mlp: readonly Mlp[];
  readonly layerScale: boolean;
  readonly qkvBias: boolean;
}

export interface VitOptions {
  /** Attention heads (default: D/64, 16 for D=1280). */
  readonly heads?: number;
  /** Input normalisation (default ImageNet). */
  readonly mean?: readonly number[];
  readonly std?: readonly number[];
  /** LayerNorm epsilon (default 1e-6, timm). */
  readonly eps?: number;
  /**
   * The Linear layers' MatMuls (a study, bench/embedders.ts; default fp32): 'dynamic-int8' quantizes the weights per
   * output channel to s8 (symmetric, [-127, 127]; 'dynamic-int8-7bit': [-63, 63], no u8 x s8 pair overflows int16 on
   * AVX2 without VNNI) and the activations per tensor at run time (DynamicQuantizeLinear -> MatMulInteger -> Cast ->
   * Mul by the scales: the pattern onnxruntime fuses into DynamicQuantizeMatMul). Attention and the patch embedding
   * stay fp32.
   */
  readonly matmul?: VitMatmul;
}

export type VitMatmul = 'fp32' | 'dynamic-int8' | 'dynamic-int8-7bit';

/** True when the keys look like a timm VisionTransformer. */
export function looksLikeVit(tensors: ReadonlyMap<string, NamedTensor>): boolean {
  return tensors.has('patch_embed.proj.weight') && tensors.has('blocks.0.attn.qkv.weight');
}

function isSquare(n: number): boolean {
  const r = Math.round(Math.sqrt(n));
  return n > 0 && r * r === n;
}

/** Reads the layout (E_WEIGHTS naming `weights.origin` when it is not a ViT this builder makes). */
export function vitLayout(weights: Weights, opts: VitOptions = {}): VitLayout {
  const t = weights.tensors;
  const fail = (what: string): never => {
    throw new ModelError('E_WEIGHTS', `${weights.origin}: ${what} (${VIT_ARCH})`);
  };
  const shape = (k: string): readonly number[] => t.get(k)?.shape ?? fail(`missing tensor '${k}'`);
  const pe = shape('patch_embed.proj.weight');
  if (pe.length !== 4 || pe[1] !== 3 || pe[2] !== pe[3]) fail(`'patch_embed.proj.weight' has shape [${pe.join(',')}], expected [D,3,p,p]`);
  const [dim, , patch] = pe as [number, number, number, number];
  if (!t.has('cls_token')) fail(`no 'cls_token' (models without a class token are not supported)`);
  const registers = t.get('reg_token')?.shape[1] ?? 0;
  let depth = 0;
  while (t.has(`blocks.${depth}.attn.qkv.weight`)) depth++;
  for (const k of t.keys()) {
    const u = UNSUPPORTED.find((s) => k === s || k.endsWith(`.${s}`));
    if (u) fail(`tensor '${k}': ${u} is a timm variant this builder does not implement`);
  }
  const posLen = shape('pos_embed')[1] ?? 0;
  const prefix = 1 + registers;
  const noEmbedClass = isSquare(posLen);
  if (!noEmbedClass && !isSquare(posLen - prefix)) fail(`'pos_embed' of ${posLen} positions is neither a square grid nor a grid plus ${prefix} prefix tokens`);
  const grid = Math.round(Math.sqrt(noEmbedClass ? posLen : posLen - prefix));
  const mlp: Mlp[] = [];
  let hidden = 0;
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}.mlp`;
    hidden = shape(`${b}.fc2.weight`)[1]!;
    if (t.has(`${b}.fc1_g.weight`)) mlp.push('swiglu');
    else mlp.push(shape(`${b}.fc1.weight`)[0] === 2 * hidden ? 'swiglu_packed' : 'gelu');
  }
  const heads = opts.heads ?? (dim === 1280 ? 16 : Math.max(1, Math.round(dim / 64)));
  if (dim % heads !== 0) fail(`width ${dim} does not split into ${heads} heads`);
  return {
    dim, depth, heads, patch, grid, registers, noEmbedClass, hidden, mlp,
    layerScale: t.has('blocks.0.ls1.gamma'), qkvBias: t.has('blocks.0.attn.qkv.bias'),
  };
}

/** Every tensor the builder needs, with its shape. */
export function vitShapes(l: VitLayout): Map<string, readonly number[]> {
  const D = l.dim;
  const s = new Map<string, readonly number[]>([
    ['patch_embed.proj.weight', [D, 3, l.patch, l.patch]],
    ['cls_token', [1, 1, D]],
    ['pos_embed', [1, l.grid * l.grid + (l.noEmbedClass ? 0 : 1 + l.registers), D]],
    ['norm.weight', [D]],
    ['norm.bias', [D]],
  ]);
  if (l.registers > 0) s.set('reg_token', [1, l.registers, D]);
  for (let i = 0; i < l.depth; i++) {
    const b = `blocks.${i}`;
    for (const n of ['norm1', 'norm2']) for (const p of ['weight', 'bias']) s.set(`${b}.${n}.${p}`, [D]);
    s.set(`${b}.attn.qkv.weight`, [3 * D, D]);
    if (l.qkvBias) s.set(`${b}.attn.qkv.bias`, [3 * D]);
    s.set(`${b}.attn.proj.weight`, [D, D]);
    s.set(`${b}.attn.proj.bias`, [D]);
    if (l.layerScale) for (const n of ['ls1', 'ls2']) s.set(`${b}.${n}.gamma`, [D]);
    const H = l.hidden;
    if (l.mlp[i] === 'swiglu') for (const n of ['fc1_g', 'fc1_x']) { s.set(`${b}.mlp.${n}.weight`, [H, D]); s.set(`${b}.mlp.${n}.bias`, [H]); }
    else { s.set(`${b}.mlp.fc1.weight`, [l.mlp[i] === 'gelu' ? H : 2 * H, D]); s.set(`${b}.mlp.fc1.bias`, [l.mlp[i] === 'gelu' ? H : 2 * H]); }
    s.set(`${b}.mlp.fc2.weight`, [D, H]);
    s.set(`${b}.mlp.fc2.bias`, [D]);
  }
  return s;
}

/** torch Linear weight [out,in] rows `from..to` (scaled per output by `scale`) as a MatMul matrix [in,out]. */
function linear(w: NamedTensor, from = 0, to = w.shape[0]!, scale?: Float32Array | number): Float32Array {
  const inn = w.shape[1]!;
  const out = to - from;
  const m = new Float32Array(inn * out);
  for (let o = 0; o < out; o++) {
    const f = scale === undefined ? 1 : typeof scale === 'number' ? scale : scale[o]!;
    for (let i = 0; i < inn; i++) m[i * out + o] = w.data[(from + o) * inn + i]! * f;
  }
  return m;
}

function scaled(b: Float32Array | undefined, n: number, scale?: Float32Array | number): Float32Array {
  return Float32Array.from({ length: n }, (_, o) => (b?.[o] ?? 0) * (scale === undefined ? 1 : typeof scale === 'number' ? scale : scale[o]!));
}

/** Graph helpers bound to one builder and one state dict. */
class VitGraph {
  constructor(readonly g: GraphBuilder, readonly w: Weights, readonly l: VitLayout, readonly eps: number, readonly matmul: VitMatmul = 'fp32') {}

  get(k: string): NamedTensor {
    return this.w.tensors.get(k)!;
  }

  /** x [N,T,in] @ rows from..to of Linear `key` (+ bias), outputs scaled by `scale` (LayerScale, attention scale). */
  dense(x: string, key: string, from?: number, to?: number, scale?: Float32Array | number): string {
    const w = this.get(`${key}.weight`);
    const lo = from ?? 0;
    const hi = to ?? w.shape[0]!;
    const bias = this.w.tensors.get(`${key}.bias`)?.data.subarray(lo, hi);
    const name = `${key}.${lo}`;
    const m = linear(w, lo, hi, scale);
    const y = this.matmul === 'fp32' ? this.g.op('MatMul', [x, this.g.float(`${name}.w`, [w.shape[1]!, hi - lo], m)]) : this.quantizedMatmul(x, name, m, w.shape[1]!, hi - lo);
    return this.g.op('Add', [y, this.g.float(`${name}.b`, [hi - lo], scaled(bias, hi - lo, scale))]);
  }

  /** x @ m ([inn, out]) with s8 per-column weights and dynamically quantized u8 activations (see VitOptions.matmul). */
  quantizedMatmul(x: string, name: string, m: Float32Array, inn: number, out: number): string {
    const g = this.g;
    const qmax = this.matmul === 'dynamic-int8-7bit' ? 63 : 127;
    const scales = new Float32Array(out);
    for (let i = 0; i < inn; i++) for (let o = 0; o < out; o++) scales[o] = Math.max(scales[o]!, Math.abs(m[i * out + o]!));
    for (let o = 0; o < out; o++) scales[o] = scales[o]! > 0 ? scales[o]! / qmax : 1;
    const q = new Int8Array(inn * out);
    for (let i = 0; i < inn; i++) for (let o = 0; o < out; o++) q[i * out + o] = Math.max(-qmax, Math.min(qmax, Math.round(m[i * out + o]! / scales[o]!)));
    const xq = g.fresh('xq');
    const xs = g.fresh('xs');
    const xz = g.fresh('xz');
    g.opMulti('DynamicQuantizeLinear', [x], [xq, xs, xz]);
    const acc = g.op('MatMulInteger', [xq, g.int8(`${name}.wq`, [inn, out], q), xz]);
    return g.op('Mul', [g.op('Cast', [acc], { to: { i: DT.FLOAT } }), g.op('Mul', [xs, g.float(`${name}.ws`, [out], scales)])]);
  }

  norm(x: string, key: string): string {
    const D = this.l.dim;
    return this.g.op('LayerNormalization', [x, this.g.float(`${key}.g`, [D], this.get(`${key}.weight`).data), this.g.float(`${key}.bt`, [D], this.get(`${key}.bias`).data)], {
      axis: { i: -1 },
      epsilon: { f: this.eps },
    });
  }

  /** Multi-head self-attention on the normed tokens; the output projection carries LayerScale ls1. */
  attention(h: string, b: string): string {
    const { dim: D, heads: H } = this.l;
    const dh = D / H;
    const split = this.g.int64(`${b}.heads`, [0, 0, H, dh]);
    const part = (i: number, perm: number[], scale?: number): string =>
      this.g.op('Transpose', [this.g.op('Reshape', [this.dense(h, `${b}.attn.qkv`, i * D, (i + 1) * D, scale), split])], { perm: { ints: perm } });
    const q = part(0, [0, 2, 1, 3], 1 / Math.sqrt(dh));
    const kT = part(1, [0, 2, 3, 1]);
    const v = part(2, [0, 2, 1, 3]);
    const att = this.g.op('Softmax', [this.g.op('MatMul', [q, kT])], { axis: { i: -1 } });
    const o = this.g.op('Transpose', [this.g.op('MatMul', [att, v])], { perm: { ints: [0, 2, 1, 3] } });
    const merged = this.g.op('Reshape', [o, this.g.int64(`${b}.merge`, [0, 0, D])]);
    return this.dense(merged, `${b}.attn.proj`, undefined, undefined, this.w.tensors.get(`${b}.ls1.gamma`)?.data);
  }

  silu(x: string): string {
    return this.g.op('Mul', [x, this.g.op('Sigmoid', [x])]);
  }

  /** The block's MLP on the normed tokens; fc2 carries LayerScale ls2. */
  mlp(h: string, b: string, kind: Mlp): string {
    const H = this.l.hidden;
    let a: string;
    if (kind === 'gelu') {
      const y = this.dense(h, `${b}.mlp.fc1`);
      const erf = this.g.op('Erf', [this.g.op('Div', [y, this.g.float(`${b}.sqrt2`, [], [Math.SQRT2])])]);
      a = this.g.op('Mul', [this.g.op('Mul', [y, this.g.op('Add', [erf, this.g.float(`${b}.one`, [], [1])])]), this.g.float(`${b}.half`, [], [0.5])]);
    } else if (kind === 'swiglu_packed') {
      a = this.g.op('Mul', [this.silu(this.dense(h, `${b}.mlp.fc1`, 0, H)), this.dense(h, `${b}.mlp.fc1`, H, 2 * H)]);
    } else {
      a = this.g.op('Mul', [this.silu(this.dense(h, `${b}.mlp.fc1_g`)), this.dense(h, `${b}.mlp.fc1_x`)]);
    }
    return this.dense(a, `${b}.mlp.fc2`, undefined, undefined, this.w.tensors.get(`${b}.ls2.gamma`)?.data);
  }

  /** Patch tokens plus prefix (class, registers) tokens with their position embeddings: [N, prefix+grid^2, D]. */
  tokens(x: string): string {
    const { dim: D, patch: p, grid: G, registers: R, noEmbedClass } = this.l;
    const g = this.g;
    const pw = this.get('patch_embed.proj.weight');
    const pb = this.w.tensors.get('patch_embed.proj.bias')?.data ?? new Float32Array(D);
    const conv = g.op('Conv', [x, g.float('patch.w', pw.shape, pw.data), g.float('patch.b', [D], pb)], {
      kernel_shape: { ints: [p, p] },
      strides: { ints: [p, p] },
    });
    const patches = g.op('Transpose', [g.op('Reshape', [conv, g.int64('patch.flat', [0, 0, -1])])], { perm: { ints: [0, 2, 1] } });
    const pos = this.get('pos_embed').data;
    const P = 1 + R;
    const off = noEmbedClass ? 0 : P;
    const prefix = new Float32Array(P * D);
    prefix.set(this.get('cls_token').data, 0);
    if (R > 0) prefix.set(this.get('reg_token').data, D);
    if (!noEmbedClass) for (let i = 0; i < P * D; i++) prefix[i]! += pos[i]!;
    const withPos = g.op('Add', [patches, g.float('pos.patches', [1, G * G, D], pos.subarray(off * D, (off + G * G) * D))]);
    const n = g.op('Slice', [g.op('Shape', [patches]), g.int64('n0', [0]), g.int64('n1', [1])]);
    const shape = g.op('Concat', [n, g.int64('prefix.shape', [P, D])], { axis: { i: 0 } });
    const pre = g.op('Expand', [g.float('prefix', [1, P, D], prefix), shape]);
    return g.op('Concat', [pre, withPos], { axis: { i: 1 } });
  }
}

/** Builds the ViT ONNX model from a timm state dict. */
export function buildVit(weights: Weights, opts: VitOptions = {}): Uint8Array {
  const l = vitLayout(weights, opts);
  checkShapes(weights, vitShapes(l));
  const input: InputSpec = { size: l.grid * l.patch, mean: opts.mean ?? IMAGENET_MEAN, std: opts.std ?? IMAGENET_STD };
  const g = new GraphBuilder();
  const eps = opts.eps ?? LN_EPS;
  const v = new VitGraph(g, weights, l, eps, opts.matmul);
  let x = v.tokens(inputStage(g, input));
  for (let i = 0; i < l.depth; i++) {
    const b = `blocks.${i}`;
    x = g.op('Add', [x, v.attention(v.norm(x, `${b}.norm1`), b)]);
    x = g.op('Add', [x, v.mlp(v.norm(x, `${b}.norm2`), b, l.mlp[i]!)]);
  }
  x = v.norm(x, 'norm');
  const P = 1 + l.registers;
  g.op('Flatten', [g.op('Slice', [x, g.int64('cls0', [0]), g.int64('cls1', [1]), g.int64('tok', [1])])], { axis: { i: 1 } }, 'cls');
  const patchTokens = g.op('Slice', [x, g.int64('pt0', [P]), g.int64('pt1', [P + l.grid * l.grid]), g.int64('tok2', [1])]);
  g.op('ReduceMean', [patchTokens], { axes: { ints: [1] }, keepdims: { i: 0 } }, 'mean');
  g.output('cls', DT.FLOAT, ['N', l.dim]);
  g.output('mean', DT.FLOAT, ['N', l.dim]);
  return g.toBytes(VIT_ARCH, {
    ...weightsMetadata(weights),
    kind: VIT_ARCH,
    ...inputMetadata(input),
    patch: String(l.patch),
    depth: String(l.depth),
    heads: String(l.heads),
    registers: String(l.registers),
    mlp: [...new Set(l.mlp)].join(','),
    layer_scale: String(l.layerScale),
    no_embed_class: String(l.noEmbedClass),
    layer_norm_eps: String(eps),
    outputs: `cls:${l.dim},mean:${l.dim}`,
    ...(opts.matmul !== undefined && opts.matmul !== 'fp32' && { matmul: opts.matmul }),
  });
}

/** True when the keys are Hugging Face transformers ViTModel names (Phikon), optionally under `vit.`. */
export function looksLikeHfVit(tensors: ReadonlyMap<string, NamedTensor>): boolean {
  return tensors.has('embeddings.patch_embeddings.projection.weight') || tensors.has('vit.embeddings.patch_embeddings.projection.weight');
}

/**
 * Renames a transformers ViTModel state dict onto timm names (query/key/value rows stacked into `attn.qkv`);
 * the pooler and any classifier are dropped. Build the result with `eps: HF_LN_EPS`.
 */
export function hfVitToTimm(weights: Weights): Weights {
  const src = new Map([...weights.tensors].map(([k, v]) => [k.startsWith('vit.') ? k.slice(4) : k, v]));
  const out = new Map<string, NamedTensor>();
  const move = (from: string, to: string): void => {
    const t = src.get(from);
    if (t) out.set(to, t);
  };
  for (const p of ['weight', 'bias']) move(`embeddings.patch_embeddings.projection.${p}`, `patch_embed.proj.${p}`);
  move('embeddings.cls_token', 'cls_token');
  move('embeddings.position_embeddings', 'pos_embed');
  for (const p of ['weight', 'bias']) move(`layernorm.${p}`, `norm.${p}`);
  for (let i = 0; src.has(`encoder.layer.${i}.attention.attention.query.weight`); i++) {
    const a = `encoder.layer.${i}.`;
    const b = `blocks.${i}.`;
    const names: Array<[string, string]> = [['layernorm_before', 'norm1'], ['layernorm_after', 'norm2'], ['attention.output.dense', 'attn.proj'], ['intermediate.dense', 'mlp.fc1'], ['output.dense', 'mlp.fc2']];
    for (const [from, to] of names) for (const p of ['weight', 'bias']) move(`${a}${from}.${p}`, `${b}${to}.${p}`);
    for (const p of ['weight', 'bias']) {
      const parts = ['query', 'key', 'value'].map((n) => src.get(`${a}attention.attention.${n}.${p}`));
      if (parts.some((t) => !t)) continue; // checkShapes names what is missing
      const data = new Float32Array(parts.reduce((n, t) => n + t!.data.length, 0));
      parts.reduce((off, t) => (data.set(t!.data, off), off + t!.data.length), 0);
      out.set(`${b}attn.qkv.${p}`, { shape: [3 * parts[0]!.shape[0]!, ...parts[0]!.shape.slice(1)], data });
    }
  }
  return { ...weights, tensors: out };
}
