import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { onnxMetadata as metadata } from '../helpers/models-ctx.js';
import ort from 'onnxruntime-node';
import { buildEfficientNetB0, buildStainNet, demoEffNetWeights, demoStainNetWeights } from '../../models/build.js';
import { importEfficientNetB0, importStainNet, loadStateDict } from '../../models/weights/import.js';
import { ensureModels, modelsBuild } from '../../stages/cli/models-build.js';
import { safetensors, torchZip, zipFiles, type TensorSpec, tensorSpecs as specs } from '../helpers/torch-writer.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'models-import-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, bytes: Buffer): string {
  const file = path.join(dir, name);
  writeFileSync(file, bytes);
  return file;
}

t.test('StainNet .pth round trip (any folder name, deflated entries) builds the same network', async (t) => {
  const demo = demoStainNetWeights(3);
  for (const [folder, deflate] of [['archive', false], ['StainNet-whatever', true]] as const) {
    const file = write(`stainnet-${folder}.pth`, torchZip(specs(demo.tensors), { folder, deflate }));
    const w = await importStainNet(file);
    for (const [k, v] of demo.tensors) t.same(w.tensors.get(k), v, `${folder}: ${k}`);
    const meta = metadata(buildStainNet(w));
    t.equal(meta.weights, path.basename(file));
    t.match(meta.weights_sha256, /^[0-9a-f]{64}$/);
  }
});

t.test('storage offset, strides, shared storages, int64 and float16 storages', async (t) => {
  // A 2x3 tensor stored transposed (stride [1,2]) at offset 1 of a shared 7-element storage.
  const storage = [9, 1, 2, 3, 4, 5, 6];
  const file = write('strided.pth', torchZip(new Map<string, TensorSpec>([
    ['t', { shape: [2, 3], storage, offset: 1, stride: [1, 2], storageKey: 's' }],
    ['u', { shape: [2], storage, offset: 5, storageKey: 's' }],
    ['n', { shape: [], storage: [7], dtype: 'int64' }],
    ['h', { shape: [3], storage: [0.5, -2, 1024], dtype: 'float16' }],
  ])));
  const w = await loadStateDict(file);
  t.same([...w.tensors.get('t')!.data], [1, 3, 5, 2, 4, 6]);
  t.same([...w.tensors.get('u')!.data], [5, 6]);
  t.same([...w.tensors.get('n')!.data], [7]);
  t.same([...w.tensors.get('h')!.data], [0.5, -2, 1024]);
});

t.test('EfficientNet-B0 from .pth and .safetensors (torchvision keys, num_batches_tracked, classifier ignored)', async (t) => {
  const demo = demoEffNetWeights(9);
  const pthSpecs = specs(demo.tensors);
  pthSpecs.set('features.0.1.num_batches_tracked', { shape: [], storage: [100], dtype: 'int64' });
  pthSpecs.set('classifier.1.weight', { shape: [2, 2], storage: [1, 2, 3, 4] });
  const pth = write('effnet.pth', torchZip(pthSpecs));
  const st = write('effnet.safetensors', safetensors(demo.tensors));
  const a = await importEfficientNetB0(pth);
  const b = await importEfficientNetB0(st);
  for (const [k, v] of demo.tensors) {
    if (!a.tensors.get(k) || !b.tensors.get(k)) t.fail(`missing ${k}`);
  }
  t.same(a.tensors.get('features.3.1.block.1.0.weight'), demo.tensors.get('features.3.1.block.1.0.weight'));
  t.same(b.tensors.get('features.8.1.running_var'), demo.tensors.get('features.8.1.running_var'));
  const bytes = buildEfficientNetB0(b);
  t.equal(metadata(bytes).weights, 'effnet.safetensors');
  const s = await ort.InferenceSession.create(bytes);
  const r = await s.run({ tiles: new ort.Tensor('uint8', new Uint8Array(32 * 32 * 3).fill(128), [1, 32, 32, 3]) });
  t.same(r.avg!.dims, [1, 1280]);
  await s.release();
});

t.test('missing and misshapen tensors: E_WEIGHTS naming the file and the tensor', async (t) => {
  const demo = demoStainNetWeights();
  const missing = specs(demo.tensors);
  missing.delete('rgb_trans.2.bias');
  const f1 = write('missing.pth', torchZip(missing));
  await t.rejects(importStainNet(f1), { code: 'E_WEIGHTS', message: /missing\.pth: missing tensor 'rgb_trans\.2\.bias'/ });
  const bad = specs(demo.tensors);
  bad.set('rgb_trans.4.weight', { shape: [3, 32], storage: new Array(96).fill(0) });
  const f2 = write('bad.pth', torchZip(bad));
  await t.rejects(importStainNet(f2), { code: 'E_WEIGHTS', message: /bad\.pth: tensor 'rgb_trans\.4\.weight' has shape \[3,32\], expected \[3,32,1,1\]/ });
  // An EfficientNet file given as StainNet (and vice versa).
  const eff = write('eff-as-stain.safetensors', safetensors(demoEffNetWeights().tensors));
  await t.rejects(importStainNet(eff), { code: 'E_WEIGHTS', message: /missing tensor 'rgb_trans\.0\.weight'/ });
});

t.test('the unpickler refuses any other global and never runs it', async (t) => {
  const demo = demoStainNetWeights();
  for (const g of [['os', 'system'], ['builtins', 'eval'], ['torch', 'load']] as [string, string][]) {
    const f = write(`evil-${g[1]}.pth`, torchZip(specs(demo.tensors), { extraGlobal: g }));
    await t.rejects(loadStateDict(f), { code: 'E_WEIGHTS', message: new RegExp(`refusing global '${g.join('\\.')}'`) });
  }
});

t.test('not a checkpoint, truncated, unreadable: E_WEIGHTS naming the file', async (t) => {
  const txt = write('notes.pth', Buffer.from('hello'));
  await t.rejects(loadStateDict(txt), { code: 'E_WEIGHTS', message: /notes\.pth: not a PyTorch zip checkpoint/ });
  const full = torchZip(specs(demoStainNetWeights().tensors));
  const cut = write('cut.pth', full.subarray(0, full.length - 30));
  await t.rejects(loadStateDict(cut), { code: 'E_WEIGHTS', message: /cut\.pth/ });
  const noPkl = write('nopkl.pth', zipFiles(new Map([['x/version', Buffer.from('3\n')]])));
  await t.rejects(loadStateDict(noPkl), { code: 'E_WEIGHTS', message: /nopkl\.pth: no data\.pkl/ });
  const empty = write('empty.pth', torchZip(new Map(), { folder: 'x' }));
  t.equal((await loadStateDict(empty)).tensors.size, 0, 'an empty state dict reads as empty');
  await t.rejects(loadStateDict(path.join(dir, 'absent.pth')), { code: 'E_WEIGHTS', message: /absent\.pth: cannot read/ });
  const badSt = write('bad.safetensors', Buffer.concat([Buffer.from([255, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{')]));
  await t.rejects(loadStateDict(badSt), { code: 'E_WEIGHTS', message: /bad\.safetensors/ });
});

t.test('public StainNet checkpoint reproduces the reference values', async (t) => {
  const ckpt = new URL('../../../shared/testdata/stainnet/StainNet-Public_layer3_ch32.pth', import.meta.url);
  if (!existsSync(ckpt)) {
    t.skip('../shared/testdata/stainnet/StainNet-Public_layer3_ch32.pth not present');
    return;
  }
  const w = await importStainNet(ckpt.pathname);
  const s = await ort.InferenceSession.create(buildStainNet(w));
  const inputs = [[255, 255, 255], [200, 100, 150], [120, 60, 160], [230, 180, 200]];
  const expected = [[243.68, 222.71, 229.99], [187.96, 82.94, 160.59], [130.46, 60.38, 141.17], [216.42, 153.09, 198.03]];
  const r = await s.run({ tiles: new ort.Tensor('uint8', Uint8Array.from(inputs.flat()), [1, 1, 4, 3]) });
  const got = r.normalized!.data as Float32Array;
  expected.flat().forEach((e, i) => t.ok(Math.abs(got[i]! - e) < 0.01, `${got[i]} ~ ${e}`));
  await s.release();
});

t.test('models build command and ensureModels', async (t) => {
  const out = path.join(dir, 'built');
  const lines: string[] = [];
  t.equal(await modelsBuild(['--out', out], (l) => lines.push(l)), 0);
  t.match(lines.join('\n'), /demo-untrained/);
  const stain = path.join(out, 'stainnet.onnx');
  t.equal(metadata(readFileSync(stain)).weights, 'demo-untrained');
  const mtime = statSync(stain).mtimeMs;
  const paths = await ensureModels(out);
  t.same(paths, { stainnet: stain, efficientnet: path.join(out, 'efficientnet_b0.onnx') });
  t.equal(statSync(stain).mtimeMs, mtime, 'present models are not rebuilt');
  const ckpt = write('mine.pth', torchZip(specs(demoStainNetWeights(11).tensors)));
  t.equal(await modelsBuild(['--out', out, '--stainnet', ckpt], () => undefined), 0);
  t.equal(metadata(readFileSync(stain)).weights, 'mine.pth');
  t.equal(await modelsBuild([], (l) => lines.push(l)), 2, 'usage without --out');
  await t.rejects(modelsBuild(['--out', out, '--stainnet', path.join(dir, 'nope.pth')]), { code: 'E_WEIGHTS' });
});
