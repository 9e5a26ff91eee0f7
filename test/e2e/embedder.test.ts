/**
 * `--embedder FILE.pth|.safetensors` through the compiled CLI: a (tiny) ResNet trunk state dict is recognised,
 * built into the work folder and used, and the records carry its width; a (tiny) ViT runs end to end with named
 * features and widths in the records; a bad --embedder-arch and a state dict of no supported embedder are refused
 * at start with exit code 2, before any shard is written.
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

  const vit = join(cwd, 'vit.safetensors');
  await writeFile(vit, safetensors(tinyVit({ dim: 64, depth: 1, patch: 16, grid: 2, registers: 0, noEmbedClass: false, hidden: 64, mlp: ['gelu'], layerScale: false }, 2)));

  t.test('a ViT .safetensors as --embedder: records carry cls_embedding and mean_embedding with their names and widths; inspect reads them', async (t) => {
    const out = join(cwd, 'out-vit');
    const r = await runCli([...common, '--out', out, '--embedder', vit], cwd);
    t.equal(r.code, 0, r.stderr);
    const [ex] = await readExamples(out);
    const n = expectedPositions(SLIDE).length;
    t.ok(n > 0, `${n} tiles expected`);
    t.same(ex?.bytes['embedding_outputs']?.map(String), ['cls', 'mean']);
    t.same(ex?.ints['embedding_dims'], [64, 64]);
    for (const name of ['cls_embedding', 'mean_embedding']) {
      t.equal(ex?.floats[name]?.length, n * 64, `${name}: ${n} x 64`);
      t.ok(ex?.floats[name]?.every(Number.isFinite), `${name}: finite`);
    }
    t.notOk(ex?.names.includes('avg_embedding') || ex?.names.includes('max_embedding'), 'no avg/max features');
    t.notSame(ex?.floats['cls_embedding'], ex?.floats['mean_embedding'], 'the class token and the patch-token mean differ');
    const i = await runCli(['inspect', out], cwd);
    t.equal(i.code, 0, i.stdout + i.stderr);
    t.match(i.stdout, new RegExp(`p0: tiles ${n}, label 1, center 0, images 1, embeddings cls 64, mean 64`));

    // Named as H-optimus-0 (its own mean/std): another model, so another checkpoint key and other values.
    const named = join(cwd, 'out-vit-hoptimus');
    const h = await runCli([...common, '--out', named, '--embedder', vit, '--embedder-arch', 'h_optimus_0'], cwd);
    t.equal(h.code, 0, h.stderr);
    const [hx] = await readExamples(named);
    t.equal(hx?.floats['cls_embedding']?.length, n * 64);
    t.notSame(hx?.floats['cls_embedding'], ex?.floats['cls_embedding'], 'the normalisation is part of the model');
  });

  t.test('--embedder-arch errors: unknown name, without --embedder, with an ONNX file, not matching the weights (exit 2, nothing written)', async (t) => {
    const cases: Array<[string[], RegExp]> = [
      [['--embedder', vit, '--embedder-arch', 'vit_huge_plus'], /unknown --embedder-arch 'vit_huge_plus': expected one of .*resnet50_trunc, vit, h_optimus_0/s],
      [['--embedder-arch', 'vit'], /--embedder-arch without --embedder/],
      [['--embedder', join(cwd, 'model.onnx'), '--embedder-arch', 'vit'], /--embedder-arch vit with an ONNX file .*model\.onnx/],
      [['--embedder', vit, '--embedder-arch', 'resnet50_trunc'], /vit\.safetensors/],
    ];
    for (const [flags, re] of cases) {
      const out = join(cwd, `out-arch-${flags.length}-${flags.at(-1)}`);
      const r = await runCli([...common, '--out', out, ...flags], cwd);
      t.equal(r.code, 2, flags.join(' '));
      t.match(r.stderr + r.stdout, re, flags.join(' '));
      t.same(await shardFiles(out), [], 'no shard');
    }
  });

  t.test('an unknown state dict as --embedder: exit 2 at start, nothing written', async (t) => {
    const other = join(cwd, 'other.safetensors');
    await writeFile(other, safetensors(new Map([['encoder.weight', { shape: [2, 2], data: new Float32Array(4) }]])));
    const out = join(cwd, 'out-other');
    const r = await runCli([...common, '--out', out, '--embedder', other], cwd);
    t.equal(r.code, 2);
    t.match(r.stderr + r.stdout, /error: .*other\.safetensors: not a state dict of a supported embedder \(1 tensors: encoder\.weight \[2,2\]\)/s);
    t.same(await shardFiles(out), [], 'no shard');
  });
}
