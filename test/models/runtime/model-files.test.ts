import t from 'tap';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NamedTensor } from '../../../models/tensor.js';
import { demoStainNetWeights } from '../../../models/build.js';
import { prepareModel } from '../../../models/runtime/model-files.js';
import { builtModels } from '../../helpers/models-ctx.js';
import { torchZip, type TensorSpec } from '../../helpers/torch-writer.js';

const models = builtModels();
const dir = mkdtempSync(path.join(os.tmpdir(), 'model-files-'));
t.teardown(() => {
  models.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const specs = (tensors: ReadonlyMap<string, NamedTensor>): Map<string, TensorSpec> =>
  new Map([...tensors].map(([k, v]) => [k, { shape: v.shape, storage: [...v.data] }]));

t.test('nothing given: the demo model; an .onnx of the right kind: used as is', async (t) => {
  t.equal(await prepareModel(undefined, 'stainnet', models.stainnet, dir), models.stainnet);
  t.equal(await prepareModel(models.efficientnet, 'efficientnet', '/unused', dir), models.efficientnet);
});

t.test('a weights file is imported and built once into the build folder', async (t) => {
  const pth = path.join(dir, 'StainNet.pth');
  writeFileSync(pth, torchZip(specs(demoStainNetWeights(5).tensors)));
  const buildDir = path.join(dir, 'built');
  const onnx = await prepareModel(pth, 'stainnet', '/unused', buildDir);
  t.match(path.basename(onnx), /^stainnet-[0-9a-f]{16}\.onnx$/, 'named after the weights');
  t.equal(await prepareModel(pth, 'stainnet', '/unused', buildDir), onnx, 'reused on the next run');
  t.same(readdirSync(buildDir), [path.basename(onnx)], 'one file, no temporary left');
});

t.test('errors: missing file, wrong kind of model, not a model, unknown extension (E_MODEL naming the file)', async (t) => {
  await t.rejects(prepareModel(path.join(dir, 'nope.onnx'), 'stainnet', '/unused', dir), { code: 'E_MODEL', message: /not found: .*nope\.onnx/ });
  await t.rejects(prepareModel(models.stainnet, 'efficientnet', '/unused', dir), { code: 'E_MODEL', message: /stainnet\.onnx/ }, 'a StainNet given as the embedder');
  const text = path.join(dir, 'fake.onnx');
  writeFileSync(text, 'not a model');
  await t.rejects(prepareModel(text, 'efficientnet', '/unused', dir), { code: 'E_MODEL', message: /fake\.onnx: not a loadable ONNX model/ });
  const odd = path.join(dir, 'weights.h5');
  writeFileSync(odd, 'x');
  await t.rejects(prepareModel(odd, 'stainnet', '/unused', dir), { code: 'E_MODEL', message: /weights\.h5: expected an \.onnx model or a weights file/ });
});
