import t from 'tap';
import ort from 'onnxruntime-node';
import { buildEfficientNetB0, buildStainNet, demoEffNetWeights, demoStainNetWeights } from '../../models/build.js';
import { randomBytesSeeded, onnxMetadata as metadata } from '../helpers/models-ctx.js';

t.test('StainNet builds deterministically and runs with uint8 NHWC in, float32 0..255 out', async (t) => {
  const bytes = buildStainNet();
  t.same(buildStainNet(), bytes, 'same bytes twice (seeded demo weights)');
  t.equal(metadata(bytes).weights, 'demo-untrained');
  t.equal(metadata(bytes).pixelwise, 'true');
  const s = await ort.InferenceSession.create(bytes);
  const x = randomBytesSeeded(2 * 64 * 64 * 3, 7);
  const r = await s.run({ tiles: new ort.Tensor('uint8', x, [2, 64, 64, 3]) });
  t.same(r.normalized!.dims, [2, 64, 64, 3]);
  t.equal(r.normalized!.type, 'float32');
  const d = r.normalized!.data as Float32Array;
  t.ok(d.every((v) => v >= 0 && v <= 255), 'clamped to 0..255');
  t.ok(new Set(d).size > 100, 'not constant');
  await s.release();
});

t.test('StainNet arithmetic matches a JS evaluation of the weights', async (t) => {
  const w = demoStainNetWeights(5);
  const s = await ort.InferenceSession.create(buildStainNet(w));
  const px = [0, 0, 0, 255, 255, 255, 200, 100, 150];
  const r = await s.run({ tiles: new ort.Tensor('uint8', Uint8Array.from(px), [1, 1, 3, 3]) });
  const got = r.normalized!.data as Float32Array;
  const layer = (x: number[], l: number, relu: boolean): number[] => {
    const W = w.tensors.get(`rgb_trans.${l}.weight`)!;
    const b = w.tensors.get(`rgb_trans.${l}.bias`)!.data;
    const out = W.shape[0]!;
    return Array.from({ length: out }, (_, o) => {
      let acc = b[o]!;
      x.forEach((v, i) => (acc += W.data[o * x.length + i]! * v));
      return relu ? Math.max(0, acc) : acc;
    });
  };
  for (let p = 0; p < 3; p++) {
    const x = px.slice(p * 3, p * 3 + 3).map((v) => (v / 255 - 0.5) / 0.5);
    const y = layer(layer(layer(x, 0, true), 2, true), 4, false).map((v) => Math.min(1, Math.max(0, v * 0.5 + 0.5)) * 255);
    for (let c = 0; c < 3; c++) t.ok(Math.abs(got[p * 3 + c]! - y[c]!) < 1e-3, `pixel ${p} channel ${c}: ${got[p * 3 + c]} ~ ${y[c]}`);
  }
  await s.release();
});

t.test('EfficientNet-B0 builds and gives finite [N,1280] avg/max at S=64 and S=448', async (t) => {
  const bytes = buildEfficientNetB0();
  t.equal(metadata(bytes).weights, 'demo-untrained');
  t.equal(metadata(bytes).kind, 'efficientnet_b0');
  const s = await ort.InferenceSession.create(bytes);
  for (const [n, size] of [[3, 64], [1, 448]] as const) {
    const x = randomBytesSeeded(n * size * size * 3, size);
    const r = await s.run({ tiles: new ort.Tensor('uint8', x, [n, size, size, 3]) });
    for (const name of ['avg', 'max']) {
      const o = r[name]!;
      t.same(o.dims, [n, 1280], `${name} shape at S=${size}`);
      const d = o.data as Float32Array;
      t.ok(d.every(Number.isFinite), `${name} finite at S=${size}`);
      t.ok(d.some((v) => Math.abs(v) > 1e-3), `${name} not all zero at S=${size}`);
    }
    const avg = r.avg!.data as Float32Array;
    const max = r.max!.data as Float32Array;
    t.ok(avg.every((v, i) => v <= max[i]! + 1e-5), 'avg <= max everywhere');
  }
  await s.release();
});

t.test('demo weights differ by seed and have torchvision key names', async (t) => {
  const a = demoEffNetWeights(1);
  const b = demoEffNetWeights(2);
  t.ok(a.tensors.has('features.0.0.weight'));
  t.ok(a.tensors.has('features.1.0.block.1.fc1.weight'), 'stage 1 has no expand conv: SE is block.1');
  t.ok(a.tensors.has('features.2.0.block.3.1.running_var'));
  t.ok(a.tensors.has('features.8.1.weight'));
  t.same(a.tensors.get('features.8.0.weight')!.shape, [1280, 320, 1, 1]);
  t.same(a.tensors.get('features.6.0.block.2.fc1.weight')!.shape, [28, 672, 1, 1], 'squeeze = in_channels // 4');
  t.not(a.tensors.get('features.0.0.weight')!.data[0], b.tensors.get('features.0.0.weight')!.data[0]);
});
