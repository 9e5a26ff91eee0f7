import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import ort from 'onnxruntime-node';
import { demoEffNetWeights, demoStainNetWeights } from '../../models/build.js';
import { buildEmbedder, EMBEDDER_ARCHS, importEmbedder } from '../../models/embedders.js';
import type { NamedTensor } from '../../models/tensor.js';
import { prepareModel } from '../../models/runtime/model-files.js';
import { modelsBuild } from '../../stages/cli/models-build.js';
import { randomBytesSeeded, onnxMetadata as metadata } from '../helpers/models-ctx.js';
import { tinyResNet } from '../helpers/tiny-embedders.js';
import { safetensors, torchZip, tensorSpecs as specs } from '../helpers/torch-writer.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'resnet-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** A feature map [C,H,W] in float64. */
interface Fm { c: number; h: number; w: number; d: Float64Array }

function conv2d(x: Fm, w: NamedTensor, stride: number): Fm {
  const [o, , k] = w.shape as [number, number, number, number];
  const pad = (k - 1) >> 1;
  const h = Math.floor((x.h + 2 * pad - k) / stride) + 1;
  const wd = Math.floor((x.w + 2 * pad - k) / stride) + 1;
  const d = new Float64Array(o * h * wd);
  for (let oc = 0; oc < o; oc++) {
    for (let ic = 0; ic < x.c; ic++) {
      for (let ky = 0; ky < k; ky++) {
        for (let kx = 0; kx < k; kx++) {
          const wv = w.data[((oc * x.c + ic) * k + ky) * k + kx]!;
          for (let y = 0; y < h; y++) {
            const iy = y * stride - pad + ky;
            if (iy < 0 || iy >= x.h) continue;
            for (let xx = 0; xx < wd; xx++) {
              const ix = xx * stride - pad + kx;
              if (ix >= 0 && ix < x.w) d[(oc * h + y) * wd + xx]! += wv * x.d[(ic * x.h + iy) * x.w + ix]!;
            }
          }
        }
      }
    }
  }
  return { c: o, h, w: wd, d };
}

/** BatchNorm in eval mode, as torch computes it (not folded), optionally followed by ReLU. */
function batchNorm(x: Fm, sd: Map<string, NamedTensor>, key: string, relu: boolean): Fm {
  const [g, b, m, v] = ['weight', 'bias', 'running_mean', 'running_var'].map((p) => sd.get(`${key}.${p}`)!.data);
  const d = x.d.map((val, i) => {
    const c = Math.floor(i / (x.h * x.w));
    const y = ((val - m![c]!) / Math.sqrt(v![c]! + 1e-5)) * g![c]! + b![c]!;
    return relu ? Math.max(0, y) : y;
  });
  return { ...x, d };
}

function maxPool(x: Fm): Fm {
  const h = Math.floor((x.h + 2 - 3) / 2) + 1;
  const w = Math.floor((x.w + 2 - 3) / 2) + 1;
  const d = new Float64Array(x.c * h * w).fill(-Infinity);
  for (let c = 0; c < x.c; c++) for (let y = 0; y < h; y++) for (let xx = 0; xx < w; xx++) {
    for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) {
      const iy = y * 2 - 1 + ky;
      const ix = xx * 2 - 1 + kx;
      if (iy >= 0 && iy < x.h && ix >= 0 && ix < x.w) d[(c * h + y) * w + xx] = Math.max(d[(c * h + y) * w + xx]!, x.d[(c * x.h + iy) * x.w + ix]!);
    }
  }
  return { c: x.c, h, w, d };
}

/** The truncated ResNet in plain float64 on one 224x224 RGB tile (so the in-graph resize is the identity). */
function reference(sd: Map<string, NamedTensor>, rgb: Uint8Array): { avg: number[]; max: number[] } {
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const S = 224;
  const d = new Float64Array(3 * S * S);
  for (let i = 0; i < S * S; i++) for (let c = 0; c < 3; c++) d[c * S * S + i] = (rgb[i * 3 + c]! / 255 - mean[c]!) / std[c]!;
  let x = maxPool(batchNorm(conv2d({ c: 3, h: S, w: S, d }, sd.get('conv1.weight')!, 2), sd, 'bn1', true));
  for (const [key, stride, down] of [['layer1.0', 1, true], ['layer1.1', 1, false], ['layer2.0', 2, true], ['layer3.0', 2, true]] as const) {
    let y = batchNorm(conv2d(x, sd.get(`${key}.conv1.weight`)!, 1), sd, `${key}.bn1`, true);
    y = batchNorm(conv2d(y, sd.get(`${key}.conv2.weight`)!, stride), sd, `${key}.bn2`, true);
    y = batchNorm(conv2d(y, sd.get(`${key}.conv3.weight`)!, 1), sd, `${key}.bn3`, false);
    const skip = down ? batchNorm(conv2d(x, sd.get(`${key}.downsample.0.weight`)!, stride), sd, `${key}.downsample.1`, false) : x;
    x = { ...y, d: y.d.map((v, i) => Math.max(0, v + skip.d[i]!)) };
  }
  const hw = x.h * x.w;
  const avg: number[] = [];
  const max: number[] = [];
  for (let c = 0; c < x.c; c++) {
    const row = x.d.subarray(c * hw, (c + 1) * hw);
    avg.push(row.reduce((a, b) => a + b, 0) / hw);
    max.push(row.reduce((a, b) => Math.max(a, b), -Infinity));
  }
  return { avg, max };
}

const sd = tinyResNet(11);
const pth = path.join(dir, 'tiny-resnet.pth');
writeFileSync(pth, torchZip(specs(sd)));
const st = path.join(dir, 'tiny-resnet.safetensors');
writeFileSync(st, safetensors(sd));

t.test('a tiny ResNet trunk from .pth and .safetensors: recognised, [N,16] avg/max, metadata', async (t) => {
  const fromPth = await importEmbedder(pth);
  const fromSt = await importEmbedder(st);
  t.equal(fromPth.arch, 'resnet50_trunc');
  t.equal(fromSt.arch, 'resnet50_trunc');
  t.same(fromPth.outputs, ['avg', 'max']);
  const meta = metadata(fromPth.bytes);
  t.match(meta, { kind: 'resnet50_trunc', weights: 'tiny-resnet.pth', input_size: '224', input_mean: '0.485,0.456,0.406', depths: '2,1,1', outputs: 'avg:16,max:16' });
  t.match(meta.weights_sha256, /^[0-9a-f]{64}$/);
  const s = await ort.InferenceSession.create(fromSt.bytes);
  t.teardown(() => s.release());
  for (const [n, size] of [[2, 100], [1, 448]] as const) {
    const r = await s.run({ tiles: new ort.Tensor('uint8', randomBytesSeeded(n * size * size * 3, size), [n, size, size, 3]) });
    t.same(r.avg!.dims, [n, 16], `avg at S=${size}`);
    t.same(r.max!.dims, [n, 16], `max at S=${size}`);
    t.ok((r.avg!.data as Float32Array).every(Number.isFinite), 'finite');
  }
});

t.test('the graph matches a plain float64 evaluation of the same weights (BN unfolded), S=224', async (t) => {
  const s = await ort.InferenceSession.create((await importEmbedder(pth)).bytes);
  t.teardown(() => s.release());
  const n = 2;
  const px = randomBytesSeeded(n * 224 * 224 * 3, 99);
  const r = await s.run({ tiles: new ort.Tensor('uint8', px, [n, 224, 224, 3]) });
  for (let i = 0; i < n; i++) {
    const ref = reference(sd, px.subarray(i * 224 * 224 * 3, (i + 1) * 224 * 224 * 3));
    for (const name of ['avg', 'max'] as const) {
      const got = [...(r[name]!.data as Float32Array).subarray(i * 16, (i + 1) * 16)];
      const scale = Math.max(...ref[name].map(Math.abs));
      const err = Math.max(...got.map((v, j) => Math.abs(v - ref[name][j]!)));
      t.ok(scale > 0.01, `tile ${i} ${name}: reference not degenerate (max ${scale})`);
      t.ok(err <= 1e-4 * scale, `tile ${i} ${name}: max abs error ${err} vs scale ${scale}`);
    }
  }
});

t.test('recognition: EfficientNet-B0 and ResNet keys; anything else refused saying what was found and what is supported', async (t) => {
  t.equal(buildEmbedder(demoEffNetWeights()).arch, 'efficientnet_b0');
  t.same(EMBEDDER_ARCHS.slice(0, 2), ['efficientnet_b0', 'resnet50_trunc']);
  const stain = path.join(dir, 'stainnet.pth');
  writeFileSync(stain, torchZip(specs(demoStainNetWeights(1).tensors)));
  await t.rejects(importEmbedder(stain), {
    code: 'E_WEIGHTS',
    message: /stainnet\.pth: not a state dict of a supported embedder \(6 tensors: rgb_trans\.0\.weight \[32,3,1,1\].*Supported: efficientnet_b0 \(.*resnet50_trunc \(/,
  });
  await t.rejects(importEmbedder(pth, 'efficientnet_b0'), { code: 'E_WEIGHTS', message: /tiny-resnet\.pth: missing tensor 'features\.0\.0\.weight'/ }, 'a named arch that does not fit');
  await t.rejects(importEmbedder(path.join(dir, 'absent.pth'), 'resnet9000'), { code: 'E_WEIGHTS', message: /unknown embedder architecture 'resnet9000'; supported: efficientnet_b0, resnet50_trunc/ }, 'before reading');
});

t.test('misshapen or inconsistent ResNet weights are E_WEIGHTS naming the file and tensor', async (t) => {
  const bad = new Map(sd);
  bad.set('layer2.0.bn2.running_var', { shape: [5], data: new Float32Array(5) });
  const f1 = path.join(dir, 'bad-bn.safetensors');
  writeFileSync(f1, safetensors(bad));
  await t.rejects(importEmbedder(f1), { code: 'E_WEIGHTS', message: new RegExp(`${f1.replace(/[.\\]/g, '\\$&')}: tensor 'layer2\\.0\\.bn2\\.running_var' has shape \\[5\\], expected \\[4\\]`) });
  const noDown = new Map([...sd].filter(([k]) => !k.startsWith('layer2.0.downsample')));
  const f2 = path.join(dir, 'no-down.safetensors');
  writeFileSync(f2, safetensors(noDown));
  await t.rejects(importEmbedder(f2), { code: 'E_WEIGHTS', message: /no-down\.safetensors: block layer2\.0 changes shape \(8->12 channels, stride 2\) but has no 'downsample\.0\.weight'/ });
  const chain = new Map(sd);
  chain.set('layer3.0.conv1.weight', { shape: [4, 10, 1, 1], data: new Float32Array(40) });
  const f3 = path.join(dir, 'chain.safetensors');
  writeFileSync(f3, safetensors(chain));
  await t.rejects(importEmbedder(f3), { code: 'E_WEIGHTS', message: /tensor 'layer3\.0\.conv1\.weight' has shape \[4,10,1,1\], expected \[4,12,1,1\]/ });
});

t.test('--embedder FILE for a run: built once, checked, named after the weights (and the arch when named)', async (t) => {
  const buildDir = path.join(dir, 'built');
  const onnx = await prepareModel(pth, 'efficientnet', '/unused', buildDir);
  t.match(path.basename(onnx), /^embedder-[0-9a-f]{16}\.onnx$/);
  t.equal(metadata(new Uint8Array(await import('node:fs').then((f) => f.readFileSync(onnx)))).kind, 'resnet50_trunc');
  const named = await prepareModel(pth, 'efficientnet', '/unused', buildDir, 'resnet50_trunc');
  t.not(named, onnx, 'a named arch is a different build');
  await t.rejects(prepareModel(pth, 'efficientnet', '/unused', buildDir, 'efficientnet_b0'), { code: 'E_WEIGHTS', message: /missing tensor 'features\.0\.0\.weight'/ });
});

t.test('models build --embedder writes DIR/<arch>.onnx; misuse is exit 2 with the usage', async (t) => {
  const out = path.join(dir, 'out');
  const lines: string[] = [];
  t.equal(await modelsBuild(['--out', out, '--embedder', pth], (l) => lines.push(l)), 0);
  t.ok(existsSync(path.join(out, 'resnet50_trunc.onnx')));
  t.notOk(existsSync(path.join(out, 'stainnet.onnx')), 'no StainNet unless asked');
  t.match(lines[0], /resnet50_trunc\.onnx \(resnet50_trunc, outputs avg, max, from tiny-resnet\.pth\)/);
  const s = await ort.InferenceSession.create(path.join(out, 'resnet50_trunc.onnx'));
  t.same(s.outputNames, ['avg', 'max']);
  await s.release();
  for (const [args, re] of [
    [['--out', out, '--embedder', pth, '--efficientnet', pth], /--embedder and --efficientnet together/],
    [['--out', out, '--embedder-arch', 'resnet50_trunc'], /--embedder-arch without --embedder/],
    [['--out', out, '--embedder', pth, '--embedder-arch', 'vgg'], /unknown --embedder-arch 'vgg'/],
  ] as const) {
    const msgs: string[] = [];
    t.equal(await modelsBuild(args, (l) => msgs.push(l)), 2, args.join(' '));
    t.match(msgs[0], re);
    t.match(msgs.join('\n'), /--embedder-arch efficientnet_b0\|resnet50_trunc/);
  }
});
