import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import ort from 'onnxruntime-node';
import { importEmbedder } from '../../models/embedders.js';
import type { NamedTensor } from '../../models/tensor.js';
import { buildVit } from '../../models/vit.js';
import { prepareModel } from '../../models/runtime/model-files.js';
import { modelsBuild } from '../../stages/cli/models-build.js';
import { randomBytesSeeded, onnxMetadata as metadata } from '../helpers/models-ctx.js';
import { tinyVit, type TinyVit as Tiny } from '../helpers/tiny-embedders.js';
import { safetensors, torchZip, tensorSpecs as specs } from '../helpers/torch-writer.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'vit-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** erf to ~1e-12 (series below 3, continued fraction above; JS has no Math.erf). */
function erf(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 100; n++) {
      term *= (-a * a) / n;
      sum += term / (2 * n + 1);
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    let f = 0;
    for (let n = 60; n >= 1; n--) f = (n / 2) / (a + f);
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + f);
  }
  return x < 0 ? -r : r;
}

type Mat = number[][];
const lin = (x: Mat, w: NamedTensor, b: NamedTensor | undefined, from = 0, to = w.shape[0]!): Mat =>
  x.map((row) => Array.from({ length: to - from }, (_, o) => {
    let acc = b ? b.data[from + o]! : 0;
    for (let i = 0; i < row.length; i++) acc += row[i]! * w.data[(from + o) * row.length + i]!;
    return acc;
  }));
const layerNorm = (x: Mat, g: NamedTensor, b: NamedTensor): Mat =>
  x.map((row) => {
    const mu = row.reduce((a, v) => a + v, 0) / row.length;
    const va = row.reduce((a, v) => a + (v - mu) ** 2, 0) / row.length;
    return row.map((v, i) => ((v - mu) / Math.sqrt(va + 1e-6)) * g.data[i]! + b.data[i]!);
  });
const silu = (v: number): number => v / (1 + Math.exp(-v));

/** The ViT in plain float64 on one tile of exactly the input size (the in-graph resize is the identity then). */
function reference(sd: Map<string, NamedTensor>, c: Tiny, heads: number, rgb: Uint8Array): { cls: number[]; mean: number[] } {
  const S = c.grid * c.patch;
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const px = (y: number, x: number, ch: number): number => (rgb[(y * S + x) * 3 + ch]! / 255 - mean[ch]!) / std[ch]!;
  const pw = sd.get('patch_embed.proj.weight')!;
  const D = c.dim;
  const patches: Mat = [];
  for (let gy = 0; gy < c.grid; gy++) for (let gx = 0; gx < c.grid; gx++) {
    patches.push(Array.from({ length: D }, (_, o) => {
      let acc = sd.get('patch_embed.proj.bias')!.data[o]!;
      for (let ch = 0; ch < 3; ch++) for (let ky = 0; ky < c.patch; ky++) for (let kx = 0; kx < c.patch; kx++) {
        acc += pw.data[((o * 3 + ch) * c.patch + ky) * c.patch + kx]! * px(gy * c.patch + ky, gx * c.patch + kx, ch);
      }
      return acc;
    }));
  }
  const pos = sd.get('pos_embed')!.data;
  const row = (t: NamedTensor, i: number): number[] => [...t.data.subarray(i * D, (i + 1) * D)];
  const prefix: Mat = [row(sd.get('cls_token')!, 0)];
  for (let r = 0; r < c.registers; r++) prefix.push(row(sd.get('reg_token')!, r));
  let x: Mat;
  const addPos = (m: Mat, off: number): Mat => m.map((r, i) => r.map((v, j) => v + pos[(off + i) * D + j]!));
  if (c.noEmbedClass) x = [...prefix, ...addPos(patches, 0)];
  else x = addPos([...prefix, ...patches], 0);
  const dh = D / heads;
  for (let i = 0; i < c.depth; i++) {
    const b = `blocks.${i}`;
    const g = (k: string): NamedTensor => sd.get(`${b}.${k}`)!;
    let h = layerNorm(x, g('norm1.weight'), g('norm1.bias'));
    const qkv = lin(h, g('attn.qkv.weight'), g('attn.qkv.bias'));
    const out: Mat = x.map(() => new Array<number>(D).fill(0));
    for (let hd = 0; hd < heads; hd++) {
      for (let q = 0; q < x.length; q++) {
        const s = x.map((_, k) => {
          let acc = 0;
          for (let j = 0; j < dh; j++) acc += qkv[q]![hd * dh + j]! * qkv[k]![D + hd * dh + j]!;
          return acc / Math.sqrt(dh);
        });
        const mx = Math.max(...s);
        const e = s.map((v) => Math.exp(v - mx));
        const z = e.reduce((a, v) => a + v, 0);
        for (let k = 0; k < x.length; k++) for (let j = 0; j < dh; j++) out[q]![hd * dh + j]! += (e[k]! / z) * qkv[k]![2 * D + hd * dh + j]!;
      }
    }
    const ls = (m: Mat, k: string): Mat => (c.layerScale ? m.map((r) => r.map((v, j) => v * g(k).data[j]!)) : m);
    const a = ls(lin(out, g('attn.proj.weight'), g('attn.proj.bias')), 'ls1.gamma');
    x = x.map((r, q) => r.map((v, j) => v + a[q]![j]!));
    h = layerNorm(x, g('norm2.weight'), g('norm2.bias'));
    let act: Mat;
    const H = c.hidden;
    if (c.mlp[i] === 'gelu') act = lin(h, g('mlp.fc1.weight'), g('mlp.fc1.bias')).map((r) => r.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2))));
    else if (c.mlp[i] === 'packed') {
      const y = lin(h, g('mlp.fc1.weight'), g('mlp.fc1.bias'));
      act = y.map((r) => r.slice(0, H).map((v, j) => silu(v) * r[H + j]!));
    } else {
      const gt = lin(h, g('mlp.fc1_g.weight'), g('mlp.fc1_g.bias'));
      const xv = lin(h, g('mlp.fc1_x.weight'), g('mlp.fc1_x.bias'));
      act = gt.map((r, q) => r.map((v, j) => silu(v) * xv[q]![j]!));
    }
    const m = ls(lin(act, g('mlp.fc2.weight'), g('mlp.fc2.bias')), 'ls2.gamma');
    x = x.map((r, q) => r.map((v, j) => v + m[q]![j]!));
  }
  x = layerNorm(x, sd.get('norm.weight')!, sd.get('norm.bias')!);
  const P = 1 + c.registers;
  const pt = x.slice(P);
  return { cls: x[0]!, mean: Array.from({ length: D }, (_, j) => pt.reduce((a, r) => a + r[j]!, 0) / pt.length) };
}

const PLAIN: Tiny = { dim: 128, depth: 2, patch: 16, grid: 3, registers: 0, noEmbedClass: false, hidden: 256, mlp: ['gelu', 'gelu'], layerScale: false };
const GATED: Tiny = { dim: 64, depth: 2, patch: 14, grid: 4, registers: 3, noEmbedClass: true, hidden: 96, mlp: ['packed', 'split'], layerScale: true };

async function compare(t: Tap.Test, c: Tiny, bytes: Uint8Array, sd: Map<string, NamedTensor>, heads: number): Promise<void> {
  const s = await ort.InferenceSession.create(bytes);
  const S = c.grid * c.patch;
  const px = randomBytesSeeded(2 * S * S * 3, S);
  const r = await s.run({ tiles: new ort.Tensor('uint8', px, [2, S, S, 3]) });
  await s.release();
  for (let i = 0; i < 2; i++) {
    const ref = reference(sd, c, heads, px.subarray(i * S * S * 3, (i + 1) * S * S * 3));
    for (const name of ['cls', 'mean'] as const) {
      t.same(r[name]!.dims, [2, c.dim]);
      const got = (r[name]!.data as Float32Array).subarray(i * c.dim, (i + 1) * c.dim);
      const scale = Math.max(...ref[name].map(Math.abs));
      const err = Math.max(...ref[name].map((v, j) => Math.abs(v - got[j]!)));
      t.ok(scale > 0.1 && err <= 1e-4 * scale, `tile ${i} ${name}: max abs error ${err.toExponential(2)}, scale ${scale.toFixed(3)}`);
    }
  }
}

t.test('plain ViT (patch 16, class token in pos_embed, GELU): recognised from .pth, equals a float64 reference', async (t) => {
  const sd = tinyVit(PLAIN, 3);
  const file = path.join(dir, 'plain.pth');
  writeFileSync(file, torchZip(specs(sd)));
  const built = await importEmbedder(file);
  t.equal(built.arch, 'vit');
  t.same(built.outputs, ['cls', 'mean']);
  t.match(metadata(built.bytes), { kind: 'vit', input_size: '48', patch: '16', depth: '2', heads: '2', registers: '0', mlp: 'gelu', no_embed_class: 'false', layer_scale: 'false', outputs: 'cls:128,mean:128' });
  await compare(t, PLAIN, built.bytes, sd, 2);
});

t.test('registers, no_embed_class, LayerScale, packed and split SwiGLU (patch 14), 4 heads given', async (t) => {
  const sd = tinyVit(GATED, 4);
  const file = path.join(dir, 'gated.safetensors');
  writeFileSync(file, safetensors(sd));
  const built = await importEmbedder(file);
  t.match(metadata(built.bytes), { input_size: '56', registers: '3', mlp: 'swiglu_packed,swiglu', layer_scale: 'true', no_embed_class: 'true', heads: '1' });
  const bytes = buildVit({ tensors: sd, origin: 'gated' }, { heads: 4 });
  t.equal(metadata(bytes).heads, '4');
  await compare(t, GATED, bytes, sd, 4);
});

t.test('other tile sizes are resized in the graph: [N,D] outputs at S=100', async (t) => {
  const s = await ort.InferenceSession.create(buildVit({ tensors: tinyVit(PLAIN, 3), origin: 'x' }));
  const r = await s.run({ tiles: new ort.Tensor('uint8', randomBytesSeeded(3 * 100 * 100 * 3, 5), [3, 100, 100, 3]) });
  t.same(r.cls!.dims, [3, 128]);
  t.same(r.mean!.dims, [3, 128]);
  t.ok((r.mean!.data as Float32Array).every(Number.isFinite));
  await s.release();
});

t.test('named normalisation (h_optimus_0) lands in the metadata', async (t) => {
  const file = path.join(dir, 'hopt.safetensors');
  writeFileSync(file, safetensors(tinyVit(GATED, 5)));
  const built = await importEmbedder(file, 'h_optimus_0');
  t.match(metadata(built.bytes), { input_mean: '0.707223,0.578729,0.703617', input_std: '0.211883,0.230117,0.177517' });
});

t.test('ViT variants we do not build, and broken ViT weights, are E_WEIGHTS naming the file and tensor', async (t) => {
  const cases: Array<[string, (m: Map<string, NamedTensor>) => void, RegExp]> = [
    ['qnorm', (m) => m.set('blocks.1.attn.q_norm.weight', { shape: [64], data: new Float32Array(64) }), /tensor 'blocks\.1\.attn\.q_norm\.weight': attn\.q_norm\.weight is a timm variant this builder does not implement/],
    ['nocls', (m) => m.delete('cls_token'), /no 'cls_token'/],
    ['pos', (m) => m.set('pos_embed', { shape: [1, 18, 128], data: new Float32Array(18 * 128) }), /'pos_embed' of 18 positions is neither a square grid nor a grid plus 1 prefix tokens/],
    ['fc2', (m) => m.set('blocks.0.mlp.fc2.bias', { shape: [7], data: new Float32Array(7) }), /tensor 'blocks\.0\.mlp\.fc2\.bias' has shape \[7\], expected \[128\]/],
  ];
  for (const [name, edit, re] of cases) {
    const m = tinyVit(name === 'qnorm' ? GATED : PLAIN, 1);
    edit(m);
    const file = path.join(dir, `${name}.safetensors`);
    writeFileSync(file, safetensors(m));
    await t.rejects(importEmbedder(file), { code: 'E_WEIGHTS', message: new RegExp(`${name}\\.safetensors: .*${re.source}`) }, name);
  }
});

t.test('a ViT for a run is built into the work folder (outputs cls, mean); models build --embedder writes DIR/vit.onnx', async (t) => {
  const file = path.join(dir, 'plain.safetensors');
  writeFileSync(file, safetensors(tinyVit(PLAIN, 3)));
  const built = await prepareModel(file, 'efficientnet', '/unused', path.join(dir, 'built'));
  t.match(path.basename(built), /^embedder-[0-9a-f]{16}\.onnx$/);
  const named = await prepareModel(file, 'efficientnet', '/unused', path.join(dir, 'built'), 'h_optimus_0');
  t.not(named, built, 'named as another architecture: another file');
  const out = path.join(dir, 'out');
  const lines: string[] = [];
  t.equal(await modelsBuild(['--out', out, '--embedder', file], (l) => lines.push(l)), 0);
  t.ok(existsSync(path.join(out, 'vit.onnx')));
  t.match(lines[0], /vit\.onnx \(vit, outputs cls, mean, from plain\.safetensors\)/);
});

/** The same weights under Hugging Face transformers ViTModel names (query/key/value split), as Phikon ships them. */
function toHf(sd: Map<string, NamedTensor>, depth: number, prefix: string): Map<string, NamedTensor> {
  const m = new Map<string, NamedTensor>();
  const put = (k: string, v: NamedTensor): void => void m.set(`${prefix}${k}`, v);
  for (const p of ['weight', 'bias']) put(`embeddings.patch_embeddings.projection.${p}`, sd.get(`patch_embed.proj.${p}`)!);
  put('embeddings.cls_token', sd.get('cls_token')!);
  put('embeddings.position_embeddings', sd.get('pos_embed')!);
  for (const p of ['weight', 'bias']) put(`layernorm.${p}`, sd.get(`norm.${p}`)!);
  for (let i = 0; i < depth; i++) {
    const a = `encoder.layer.${i}.`;
    const b = `blocks.${i}.`;
    for (const [hf, timm] of [['layernorm_before', 'norm1'], ['layernorm_after', 'norm2'], ['attention.output.dense', 'attn.proj'], ['intermediate.dense', 'mlp.fc1'], ['output.dense', 'mlp.fc2']]) {
      for (const p of ['weight', 'bias']) put(`${a}${hf}.${p}`, sd.get(`${b}${timm}.${p}`)!);
    }
    for (const p of ['weight', 'bias']) {
      const qkv = sd.get(`${b}attn.qkv.${p}`)!;
      const rows = qkv.shape[0]! / 3;
      const per = qkv.data.length / 3;
      ['query', 'key', 'value'].forEach((n, j) => put(`${a}attention.attention.${n}.${p}`, { shape: [rows, ...qkv.shape.slice(1)], data: qkv.data.slice(j * per, (j + 1) * per) }));
    }
  }
  put('pooler.dense.weight', { shape: [2, 2], data: new Float32Array(4) }); // dropped
  return m;
}

t.test('Hugging Face ViTModel names (Phikon; with or without a vit. prefix) build the same network', async (t) => {
  const sd = tinyVit(PLAIN, 3);
  for (const prefix of ['', 'vit.']) {
    const file = path.join(dir, `hf${prefix.length}.safetensors`);
    writeFileSync(file, safetensors(toHf(sd, PLAIN.depth, prefix)));
    const built = await importEmbedder(file);
    t.equal(built.arch, 'vit_hf', `prefix '${prefix}'`);
    t.match(metadata(built.bytes), { layer_norm_eps: '1e-12', heads: '2', outputs: 'cls:128,mean:128' });
    await compare(t, PLAIN, built.bytes, sd, 2);
  }
  const broken = toHf(sd, PLAIN.depth, '');
  broken.delete('encoder.layer.1.attention.attention.key.bias');
  const file = path.join(dir, 'hf-broken.safetensors');
  writeFileSync(file, safetensors(broken));
  await t.rejects(importEmbedder(file), { code: 'E_WEIGHTS', message: /hf-broken\.safetensors: missing tensor 'blocks\.1\.attn\.qkv\.bias'.*\(timm names, after renaming the transformers keys\)/ });
});
