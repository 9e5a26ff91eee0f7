/**
 * The QDQ int8 graph's structure (every Conv, Sigmoid, Mul, Add and global pool of the body reads dequantized
 * uint8 activations; Conv weights int8 per output channel, biases int32; the input stage and the tail stay float),
 * what onnxruntime fuses it into (its optimized model: QLinear ops only in the body), the fallback's float tensors,
 * and int8 vs fp32 on torchvision-initialised random weights with randomized BN statistics.
 */
import t from 'tap';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { buildEfficientNetB0 } from '../../../models/build.js';
import { decodeModel, encodeModel, type OnnxModel } from '../../../models/quant/onnx-model.js';
import { quantizableTensors, quantizeModel, u8Params, QUANTIZED_OPS } from '../../../models/quant/qdq.js';
import { calibrate, buildGated } from '../../../models/quant/int8-embedder.js';
import { passes } from '../../../models/quant/gate.js';
import { randomEffNetWeights, structuredTiles } from '../../helpers/effnet-random.js';

const fp32 = buildEfficientNetB0(randomEffNetWeights(7));
const m = decodeModel(fp32, 'test');
const S = 64;
const calTiles = structuredTiles(8, S, 1);
const heldTiles = structuredTiles(8, S, 2);

async function* chunked(tiles: Uint8Array[]): AsyncIterable<Uint8Array[]> {
  for (let i = 0; i < tiles.length; i += 8) yield tiles.slice(i, i + 8);
}

const ranges = await calibrate(fp32, S, chunked(calTiles), { method: 'percentile', batch: 4 });

function producerOf(q: OnnxModel): Map<string, (typeof q.graph.node)[number]> {
  return new Map(q.graph.node.flatMap((n) => n.output.map((o) => [o, n] as const)));
}

t.test('u8 parameters: the range widened to hold 0, 255 steps', async (t) => {
  const a = u8Params({ min: 0, max: 2.55 });
  t.ok(Math.abs(a.scale - 0.01) < 1e-12 && a.zeroPoint === 0);
  const p = u8Params({ min: -0.3, max: 5.1 });
  t.ok(Math.abs(p.scale - 5.4 / 255) < 1e-12);
  t.equal(p.zeroPoint, Math.round(0.3 / p.scale));
  t.same(u8Params({ min: 0.5, max: 1 }).zeroPoint, 0, 'a positive range starts at 0');
  t.same(u8Params({ min: 0, max: 0 }), { scale: 1, zeroPoint: 0 }, 'an all-zero tensor gets a usable scale');
});

t.test('every op of the body that must be quantized is, and the input stage and tail are not', async (t) => {
  const q = quantizeModel(m, { ranges, keepFloat: new Set() });
  const prod = producerOf(q);
  const inits = new Map(q.graph.initializer.map((i) => [i.name, i]));
  const counts: Record<string, number> = {};
  for (const n of q.graph.node) {
    if (!QUANTIZED_OPS.has(n.op_type)) continue;
    const acts = n.op_type === 'Conv' ? [n.input[0]!] : n.input.filter((i) => !inits.has(i));
    if (n.op_type !== 'Conv' && acts.length < n.input.length) continue; // the input stage's Mul/Add by constants
    counts[n.op_type] = (counts[n.op_type] ?? 0) + 1;
    for (const a of acts) {
      const d = prod.get(a);
      t.equal(d?.op_type, 'DequantizeLinear', `${n.op_type} ${n.name} reads ${a} through DequantizeLinear`);
      t.equal(prod.get(d!.input[0]!)?.op_type, 'QuantizeLinear', `${a} comes from a QuantizeLinear`);
      t.equal(inits.get(d!.input[2]!)?.data_type, 2, 'uint8 zero point');
    }
    if (n.op_type === 'Conv') {
      const w = prod.get(n.input[1]!)!;
      t.equal(w.op_type, 'DequantizeLinear');
      t.equal(inits.get(w.input[0]!)?.data_type, 3, 'int8 weights');
      t.equal(inits.get(w.input[1]!)?.dims[0], inits.get(w.input[0]!)?.dims[0], 'one weight scale per output channel');
      t.same(w.attribute?.map((a) => [a.name, a.i]), [['axis', 0]]);
      const b = prod.get(n.input[2]!)!;
      t.equal(inits.get(b.input[0]!)?.data_type, 6, 'int32 bias');
      // Every body op's output that a body op reads is quantized right after it.
      t.ok(q.graph.node.some((x) => x.op_type === 'QuantizeLinear' && x.input[0] === n.output[0]), `${n.name} output quantized`);
    }
  }
  t.same(counts, { Conv: 81, Sigmoid: 65, Mul: 65, Add: 9, GlobalAveragePool: 17, GlobalMaxPool: 1 }, 'the whole EfficientNet-B0 body');
  const first = q.graph.node.find((n) => n.op_type === 'QuantizeLinear')!;
  t.equal(prod.get(first.input[0]!)?.op_type, 'Add', 'the first quantized tensor is the input stage output (mean/std)');
  for (const out of ['avg', 'max']) t.equal(prod.get(out)?.op_type, 'Flatten', `${out} is a float Flatten of a float pool`);
  t.same(q.graph.initializer.filter((i) => i.data_type === 1 && i.dims.length === 4).map((i) => i.name).sort(), ['in_scale', 'in_shift'], 'no float conv weights left (only the input stage constants)');
});

t.test("onnxruntime fuses the body into QLinear ops (its optimized model)", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'qdq-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'opt.onnx');
  const s = await ort.InferenceSession.create(encodeModel(quantizeModel(m, { ranges, keepFloat: new Set() })), { graphOptimizationLevel: 'all', optimizedModelFilePath: file, intraOpNumThreads: 1 });
  await s.release();
  const ops: Record<string, number> = {};
  for (const n of decodeModel(await readFile(file), 'opt').graph.node) ops[n.op_type] = (ops[n.op_type] ?? 0) + 1;
  t.comment(`optimized: ${JSON.stringify(ops)}`);
  t.equal(ops.QLinearConv, 81);
  t.equal(ops.QLinearSigmoid, 65);
  t.equal(ops.QLinearMul, 65);
  t.equal(ops.QLinearAdd, 9);
  t.equal(ops.QLinearGlobalAveragePool, 16, 'the 16 squeeze-excite pools (the final pools stay float)');
  for (const f of ['Conv', 'Sigmoid', 'QuickGelu', 'FusedConv']) t.notOk(ops[f], `no float ${f} left`);
  t.equal(ops.Mul, 1, 'one float Mul: the input stage');
  t.equal(ops.QuantizeLinear, 1, 'one QuantizeLinear: the network input');
});

t.test('keepFloat: a tensor kept in float has no Q/DQ, and its convs keep float weights', async (t) => {
  const tensors = quantizableTensors(m);
  t.equal(tensors.length, Object.keys(ranges).length, 'calibration exposes every quantizable tensor');
  const keep = tensors[0]!; // the stem conv's input
  const q = quantizeModel(m, { ranges, keepFloat: new Set([keep]) });
  t.notOk(q.graph.node.some((n) => n.op_type === 'QuantizeLinear' && n.input[0] === keep));
  const stem = q.graph.node.find((n) => n.op_type === 'Conv')!;
  t.equal(stem.input[0], keep, 'the stem conv reads the float tensor');
  t.equal(q.graph.initializer.find((i) => i.name === stem.input[1])?.data_type, 1, 'with its float weight');
  t.throws(() => quantizeModel(m, { ranges: {}, keepFloat: new Set() }), { code: 'E_MODEL' }, 'a tensor without a range is an error');
});

t.test('int8 vs fp32: torchvision-initialised random weights with randomized BN statistics, and the demo weights', async (t) => {
  const gate = { mean: 0.99, p1: 0.97 };
  // torchvision's init (kaiming fan_out) with random BN statistics is untrained: activations grow through the 16
  // blocks (embedding values in the hundreds) and heavy tails make int8 err more than on trained weights.
  const random = await buildGated(fp32, ranges, { size: S, pixels: heldTiles }, { gate, maxFallback: 0 });
  const demoFp32 = buildEfficientNetB0();
  const demoRanges = await calibrate(demoFp32, S, chunked(calTiles), { method: 'percentile', batch: 4 });
  const demo = await buildGated(demoFp32, demoRanges, { size: S, pixels: heldTiles }, { gate, maxFallback: 0 });
  for (const [name, g] of [['torchvision-init random, random BN', random], ['demo (He-scaled, BN near identity)', demo]] as const) {
    const f = g.figures;
    t.comment(`${name}, 8 held-out tiles S=${S}: mean cosine ${f.mean_cosine.toFixed(5)}, p1 ${f.p1_cosine.toFixed(5)}, max abs error ${f.max_abs_error.toPrecision(3)}`);
    t.ok(f.max_abs_error > 0, `${name}: int8 is not fp32 (the comparison measures something)`);
    t.ok(f.mean_cosine <= 1 + 1e-6 && f.p1_cosine <= f.mean_cosine + 1e-9);
    t.equal(g.worst.length, 5);
    t.ok(g.worst[0]!.error >= g.worst[4]!.error, 'worst tensors ranked');
    t.match(g.worst[0]!.label, /output after (features\.|the input stage)/);
  }
  t.ok(random.figures.mean_cosine > 0.9, `random: int8 still close to fp32 (${random.figures.mean_cosine})`);
  t.ok(demo.figures.mean_cosine > 0.999 && demo.passed, `demo: passes the gate (${demo.figures.mean_cosine})`);
  t.equal(random.passed, passes(random.figures, gate), 'passed is the gate on the figures');
});
