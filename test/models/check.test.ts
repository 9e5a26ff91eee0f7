import t from 'tap';
import ort from 'onnxruntime-node';
import { buildEfficientNetB0, buildStainNet } from '../../models/build.js';
import { checkModel, isPixelwiseModel } from '../../models/check.js';
import { DT, GraphBuilder, type ElemType } from '../../models/onnx-builder.js';

/** A one-node model: `inName` -> Cast -> `outName`, with the given declared types and shapes. */
function tiny(inName: string, inType: ElemType, inDims: Array<number | string>, outName: string, outType: ElemType, outDims: Array<number | string>): Uint8Array {
  const g = new GraphBuilder();
  g.op('Cast', [g.input(inName, inType, inDims)], { to: { i: outType } }, outName);
  g.output(outName, outType, outDims);
  return g.toBytes('tiny', {});
}

t.test('our models pass their own checks', async (t) => {
  const s = await ort.InferenceSession.create(buildStainNet());
  t.doesNotThrow(() => checkModel(s, 'stainnet'));
  const e = await ort.InferenceSession.create(buildEfficientNetB0());
  t.doesNotThrow(() => checkModel(e, 'efficientnet'));
  t.throws(() => checkModel(s, 'efficientnet', 'stainnet.onnx'), { code: 'E_MODEL', message: /^stainnet\.onnx: not a usable embedder: output 'normalized' has rank 4\. Expected outputs float32 \[N, width\]/ });
  t.throws(() => checkModel(e, 'stainnet'), { code: 'E_MODEL', message: /output 'normalized' is missing.*found \{avg: float32 \[N,1280\]; max: float32 \[N,1280\]\}/ });
  await s.release();
  await e.release();
});

t.test('wrong names, dtypes, ranks and dims are E_MODEL saying expected and found', async (t) => {
  const cases: Array<[Uint8Array, RegExp]> = [
    [tiny('image', DT.UINT8, ['N', 'H', 'W', 3], 'normalized', DT.FLOAT, ['N', 'H', 'W', 3]), /input 'tiles' is missing.*Expected inputs \{tiles: uint8 \[\?,\?,\?,3\]\}, found \{image: uint8/],
    [tiny('tiles', DT.FLOAT, ['N', 'H', 'W', 3], 'normalized', DT.FLOAT, ['N', 'H', 'W', 3]), /input 'tiles' has type float32/],
    [tiny('tiles', DT.UINT8, ['N', 3, 448, 448], 'normalized', DT.FLOAT, ['N', 3, 448, 448]), /input 'tiles' has dim 3 = 448/],
    [tiny('tiles', DT.UINT8, ['N', 'H', 3], 'normalized', DT.FLOAT, ['N', 'H', 3]), /input 'tiles' has rank 3/],
    [tiny('tiles', DT.UINT8, ['N', 'H', 'W', 3], 'normalized', DT.INT64, ['N', 'H', 'W', 3]), /output 'normalized' has type int64/],
  ];
  for (const [bytes, re] of cases) {
    const s = await ort.InferenceSession.create(bytes);
    t.throws(() => checkModel(s, 'stainnet', 'user.onnx'), { code: 'E_MODEL', message: re });
    await s.release();
  }
  const ok = await ort.InferenceSession.create(tiny('tiles', DT.UINT8, ['N', 'H', 'W', 3], 'normalized', DT.UINT8, ['N', 'H', 'W', 3]));
  t.doesNotThrow(() => checkModel(ok, 'stainnet'), 'a uint8-output normalizer is accepted');
  await ok.release();
});

t.test('isPixelwiseModel: ours by metadata, 1x1 convs yes, 3x3 convs and pooling no', async (t) => {
  t.ok(isPixelwiseModel(buildStainNet()));
  t.notOk(isPixelwiseModel(buildEfficientNetB0()));
  const conv = (k: number): Uint8Array => {
    const g = new GraphBuilder();
    const x = g.input('tiles', DT.FLOAT, [1, 3, 8, 8]);
    g.op('Relu', [g.op('Conv', [x, g.float('w', [3, 3, k, k], new Float32Array(9 * k * k))])], {}, 'normalized');
    g.output('normalized', DT.FLOAT, [1, 3, 8, 8]);
    return g.toBytes('c', {});
  };
  t.ok(isPixelwiseModel(conv(1)), '1x1 conv (kernel from the weight shape)');
  t.notOk(isPixelwiseModel(conv(3)), '3x3 conv');
});

t.test('an embedder of any width passes; avg and max of different widths are E_MODEL', async (t) => {
  const twoOut = (a: number, m: number): Uint8Array => {
    const g = new GraphBuilder();
    const x = g.op('Cast', [g.input('tiles', DT.UINT8, ['N', 'S', 'S', 3])], { to: { i: DT.FLOAT } });
    g.op('ReduceMean', [x], { axes: { ints: [1, 2] }, keepdims: { i: 0 } }, 'avg');
    const mx = g.op('ReduceMax', [x], { axes: { ints: [1, 2] }, keepdims: { i: 0 } });
    // m = 4: one more column (the first again), so the inferred width really differs.
    if (m === a) g.op('Identity', [mx], {}, 'max');
    else g.op('Concat', [mx, g.op('Slice', [mx, g.int64('b', [0]), g.int64('e', [1]), g.int64('ax', [1])])], { axis: { i: 1 } }, 'max');
    g.output('avg', DT.FLOAT, ['N', a]);
    g.output('max', DT.FLOAT, ['N', m]);
    return g.toBytes('two', {});
  };
  const ok = await ort.InferenceSession.create(twoOut(3, 3));
  t.doesNotThrow(() => checkModel(ok, 'efficientnet', 'narrow.onnx'));
  await ok.release();
  const bad = await ort.InferenceSession.create(twoOut(3, 4));
  t.throws(() => checkModel(bad, 'efficientnet', 'odd.onnx'), { code: 'E_MODEL', message: /^odd\.onnx: not a usable embedder: outputs 'avg' and 'max' have different widths \(3 and 4\)/ });
  await bad.release();
});

t.test('an embedder with any named float32 [N, width] outputs passes (a ViT: cls, mean); bad types, ranks, names are E_MODEL', async (t) => {
  const outs = (outputs: Array<[string, ElemType, Array<number | string>]>): Uint8Array => {
    const g = new GraphBuilder();
    const x = g.op('ReduceMean', [g.op('Cast', [g.input('tiles', DT.UINT8, ['N', 'S', 'S', 3])], { to: { i: DT.FLOAT } })], { axes: { ints: [1, 2] }, keepdims: { i: 0 } });
    for (const [name, type, dims] of outputs) {
      if (dims.length === 2) g.op('Cast', [x], { to: { i: type } }, name);
      else g.op('Cast', [g.op('Unsqueeze', [x, g.int64(`ax_${name}`, [2])])], { to: { i: type } }, name);
      g.output(name, type, dims);
    }
    return g.toBytes('outs', {});
  };
  const ok = await ort.InferenceSession.create(outs([['cls', DT.FLOAT, ['N', 3]], ['mean', DT.FLOAT, ['N', 3]]]));
  t.doesNotThrow(() => checkModel(ok, 'efficientnet', 'vit.onnx'));
  await ok.release();
  const cases: Array<[Array<[string, ElemType, Array<number | string>]>, RegExp]> = [
    [[['cls', DT.INT64, ['N', 3]]], /^bad\.onnx: not a usable embedder: output 'cls' has type int64\. Expected outputs float32 \[N, width\].*found \{cls: int64 \[N,3\]\}/],
    [[['cls', DT.FLOAT, ['N', 3, 1]]], /output 'cls' has rank 3/],
    [[['cls', DT.FLOAT, ['N', 3]], ['bad-name', DT.FLOAT, ['N', 3]]], /output 'bad-name' cannot name a record feature/],
  ];
  for (const [spec, re] of cases) {
    const s = await ort.InferenceSession.create(outs(spec));
    t.throws(() => checkModel(s, 'efficientnet', 'bad.onnx'), { code: 'E_MODEL', message: re });
    await s.release();
  }
});
