/**
 * `--embedder FILE.pth|.safetensors` through the compiled CLI: a (tiny) ResNet trunk state dict is recognised,
 * built into the work folder and used, and the records carry its width; a ViT state dict (outputs cls/mean) and
 * a state dict of no supported embedder are refused at start with exit code 2, before any shard is written.
 */
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NamedTensor } from '../../models/tensor.js';
import { e2eUnavailable, expectedPositions, makeSlides, readExamples, runCli, shardFiles, tempDir, TILE, TILE_FLAGS, writeCsv, type SlideSpec } from '../helpers/e2e.js';
import { tinyResNet, tinyVit } from '../helpers/tiny-embedders.js';
import { safetensors, torchZip, type TensorSpec } from '../helpers/torch-writer.js';

const T = TILE.tileSize;
const SLIDE: SlideSpec = { image_id: 'e0', width: 1024, height: 1024, seed: 31, tissue: [{ kind: 'rect', x: T, y: T, w: 2 * T, h: T }] };

const specs = (tensors: ReadonlyMap<string, NamedTensor>): Map<string, TensorSpec> =>
  new Map([...tensors].map(([k, v]) => [k, { shape: v.shape, storage: [...v.data] }]));

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'e2e-embedder-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, [SLIDE]);
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, [{ image_id: SLIDE.image_id, center_id: 0, patient_id: 'p0', image_num: 0, label: '1' }], true);
  const common = ['--csv', csv, '--slides', slidesDir, ...TILE_FLAGS, '--normalizer', 'none', '--workers', '1', '--progress', 'none'];

  t.test('a ResNet trunk .pth as --embedder: recognised, built, records n x 16 avg/max', async (t) => {
    const pth = join(cwd, 'tiny-resnet.pth');
    await writeFile(pth, torchZip(specs(tinyResNet(11))));
    const out = join(cwd, 'out-resnet');
    const r = await runCli([...common, '--out', out, '--embedder', pth], cwd);
    t.equal(r.code, 0, r.stderr);
    const [ex] = await readExamples(out);
    const n = expectedPositions(SLIDE).length;
    t.ok(n > 0, `${n} tiles expected`);
    for (const name of ['avg_embedding', 'max_embedding']) t.equal(ex?.floats[name]?.length, n * 16, `${name}: ${n} x 16`);
  });

  t.test('a ViT or an unknown state dict as --embedder: exit 2 at start, nothing written', async (t) => {
    const vit = join(cwd, 'vit.safetensors');
    await writeFile(vit, safetensors(tinyVit({ dim: 64, depth: 1, patch: 16, grid: 2, registers: 0, noEmbedClass: false, hidden: 64, mlp: ['gelu'], layerScale: false }, 2)));
    const other = join(cwd, 'other.safetensors');
    await writeFile(other, safetensors(new Map([['encoder.weight', { shape: [2, 2], data: new Float32Array(4) }]])));
    for (const [file, re] of [
      [vit, /error: .*vit\.safetensors: a vit embedder has outputs cls, mean; the run's record takes embedders with outputs avg and max only/s],
      [other, /error: .*other\.safetensors: not a state dict of a supported embedder \(1 tensors: encoder\.weight \[2,2\]\)/s],
    ] as const) {
      const out = join(cwd, `out-${file.length}`);
      const r = await runCli([...common, '--out', out, '--embedder', file], cwd);
      t.equal(r.code, 2, file);
      t.match(r.stderr + r.stdout, re);
      t.same(await shardFiles(out), [], 'no shard');
    }
  });
}
