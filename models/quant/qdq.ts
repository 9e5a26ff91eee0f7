/**
 * Static int8 quantization of an fp32 embedder graph in QDQ form (the form onnxruntime fuses into QLinear ops):
 * every activation tensor around Conv, Sigmoid, Mul, Add and the global pools gets one QuantizeLinear (uint8,
 * asymmetric, from its calibrated range) and one DequantizeLinear per consumer; Conv weights become int8
 * symmetric per output channel, their biases int32 at scale input_scale x weight_scale. The input stage (Cast,
 * Transpose, Resize, mean/std: Mul and Add by constants) and the final Flatten stay float.
 * Tensors named in `keepFloat` get no Q/DQ: the ops around them run in float (the accuracy gate's fallback).
 */
import { ModelError } from '../errors.js';
import { floatData, tensorOf, type OnnxModel, type OnnxNode, type OnnxTensor } from './onnx-model.js';

/** ONNX TensorProto data types used here. */
const FLOAT = 1;
const UINT8 = 2;
const INT8 = 3;
const INT32 = 6;
/** Weights use -127..127 (symmetric: zero point 0). */
const WMAX = 127;

/** The ops whose activation inputs and outputs are quantized. */
export const QUANTIZED_OPS: ReadonlySet<string> = new Set(['Conv', 'Sigmoid', 'Mul', 'Add', 'GlobalAveragePool', 'GlobalMaxPool']);

/** A calibrated activation range (before widening to include 0). */
export interface TensorRange {
  readonly min: number;
  readonly max: number;
}

/** uint8 quantization parameters of a range: the range widened to include 0, 255 steps. */
export function u8Params(r: TensorRange): { scale: number; zeroPoint: number } {
  const lo = Math.min(r.min, 0);
  const hi = Math.max(r.max, 0);
  const scale = hi > lo ? (hi - lo) / 255 : 1;
  return { scale, zeroPoint: Math.max(0, Math.min(255, Math.round(-lo / scale))) };
}

/** True for a node of the network's body: a quantized op on activations only (the input stage's Mul/Add by constants are not). */
function isBodyNode(n: OnnxNode, inits: ReadonlyMap<string, OnnxTensor>): boolean {
  if (!QUANTIZED_OPS.has(n.op_type)) return false;
  if (n.op_type === 'Mul' || n.op_type === 'Add') return n.input.every((i) => !inits.has(i));
  return !inits.has(n.input[0] ?? '');
}

/** The activation tensors to calibrate, in graph order: the activation inputs of the body's quantized ops. */
export function quantizableTensors(m: OnnxModel): string[] {
  const inits = new Map(m.graph.initializer.map((t) => [t.name, t]));
  const inputs = new Set<string>();
  for (const n of m.graph.node) {
    if (!isBodyNode(n, inits)) continue;
    for (const t of n.op_type === 'Conv' ? [n.input[0]!] : n.input) inputs.add(t);
  }
  // In graph order: a tensor is quantized when a body op reads it. Outputs only the tail reads (the final pools,
  // read by Flatten) stay float: there a Q/DQ pair would only round the embedding itself.
  const order: string[] = [];
  for (const i of m.graph.input) if (inputs.has(i.name)) order.push(i.name);
  for (const n of m.graph.node) for (const o of n.output) if (inputs.has(o)) order.push(o);
  return order;
}

/** The quantized model's identity parts: ranges per tensor and the tensors kept in float. */
export interface QuantPlan {
  readonly ranges: Readonly<Record<string, TensorRange>>;
  readonly keepFloat: ReadonlySet<string>;
}

/**
 * Rewrites the decoded fp32 model `m` (not modified) into its QDQ int8 form. Every quantizable tensor not in
 * `plan.keepFloat` needs a range (E_MODEL otherwise).
 */
export function quantizeModel(m: OnnxModel, plan: QuantPlan): OnnxModel {
  const inits = new Map(m.graph.initializer.map((t) => [t.name, t]));
  const quantized = new Set(quantizableTensors(m).filter((t) => !plan.keepFloat.has(t)));
  for (const t of quantized) {
    if (plan.ranges[t] === undefined) throw new ModelError('E_MODEL', `quantization: no calibrated range for tensor '${t}'`);
  }
  const newInits: OnnxTensor[] = [];
  const params = new Map<string, { scale: number; zeroPoint: number }>();
  for (const t of quantized) {
    const p = u8Params(plan.ranges[t]!);
    params.set(t, p);
    newInits.push(tensorOf(`${t}.q_scale`, FLOAT, [], Float32Array.of(p.scale)));
    newInits.push(tensorOf(`${t}.q_zero`, UINT8, [], Uint8Array.of(p.zeroPoint)));
  }
  const nodes: OnnxNode[] = [];
  const dq = (t: string, consumer: number): string => {
    const out = `${t}.dq${consumer}`;
    nodes.push({ op_type: 'DequantizeLinear', input: [`${t}.q`, `${t}.q_scale`, `${t}.q_zero`], output: [out], name: `DQ_${out}` });
    return out;
  };
  // Graph inputs that are quantized (none in our graphs, but a body could start at one) are quantized first.
  for (const i of m.graph.input) if (quantized.has(i.name)) nodes.push(qNode(i.name));
  const dropped = new Set<string>();
  m.graph.node.forEach((n, k) => {
    const body = isBodyNode(n, inits);
    const input = n.input.map((t) => (quantized.has(t) ? dq(t, k) : t));
    if (body && n.op_type === 'Conv' && quantized.has(n.input[0]!)) {
      const w = quantizeConvWeights(n, inits, params.get(n.input[0]!)!.scale, k);
      newInits.push(...w.tensors);
      for (const d of w.nodes) nodes.push(d);
      input[1] = w.weight;
      if (w.bias !== undefined) input[2] = w.bias;
      dropped.add(n.input[1]!);
      if (n.input[2]) dropped.add(n.input[2]);
    }
    nodes.push({ ...n, input });
    for (const o of n.output) if (quantized.has(o)) nodes.push(qNode(o));
  });
  // A float weight still used elsewhere (shared initializers) is kept.
  const used = new Set(nodes.flatMap((n) => n.input));
  const initializer = [...m.graph.initializer.filter((t) => !dropped.has(t.name) || used.has(t.name)), ...newInits];
  return { ...m, graph: { ...m.graph, node: nodes, initializer } };
}

function qNode(t: string): OnnxNode {
  return { op_type: 'QuantizeLinear', input: [t, `${t}.q_scale`, `${t}.q_zero`], output: [`${t}.q`], name: `Q_${t}` };
}

/**
 * A Conv's weights as int8 symmetric per output channel (scale max|w|/127) and its bias as int32 at
 * input_scale x weight_scale (zero points 0), each behind a DequantizeLinear on axis 0.
 */
function quantizeConvWeights(n: OnnxNode, inits: ReadonlyMap<string, OnnxTensor>, inputScale: number, k: number): { tensors: OnnxTensor[]; nodes: OnnxNode[]; weight: string; bias?: string } {
  const wt = inits.get(n.input[1] ?? '');
  if (wt === undefined) throw new ModelError('E_MODEL', `quantization: Conv ${n.name ?? k} has no initializer weight`);
  const w = floatData(wt);
  const cout = wt.dims[0]!;
  const per = w.length / cout;
  const wq = new Int8Array(w.length);
  const ws = new Float32Array(cout);
  for (let o = 0; o < cout; o++) {
    let amax = 0;
    for (let i = 0; i < per; i++) amax = Math.max(amax, Math.abs(w[o * per + i]!));
    const s = amax > 0 ? amax / WMAX : 1;
    ws[o] = s;
    for (let i = 0; i < per; i++) wq[o * per + i] = Math.max(-WMAX, Math.min(WMAX, Math.round(w[o * per + i]! / s)));
  }
  const base = `${wt.name}.k${k}`;
  const tensors = [
    tensorOf(`${base}.wq`, INT8, wt.dims, wq),
    tensorOf(`${base}.w_scale`, FLOAT, [cout], ws),
    tensorOf(`${base}.w_zero`, INT8, [cout], new Int8Array(cout)),
  ];
  const axis = [{ name: 'axis', type: 2, i: 0 }];
  const nodes: OnnxNode[] = [{ op_type: 'DequantizeLinear', input: [`${base}.wq`, `${base}.w_scale`, `${base}.w_zero`], output: [`${base}.w`], name: `DQ_${base}.w`, attribute: axis }];
  const bt = n.input[2] ? inits.get(n.input[2]) : undefined;
  if (bt === undefined) return { tensors, nodes, weight: `${base}.w` };
  const b = floatData(bt);
  const bq = new Int32Array(cout);
  const bs = new Float32Array(cout);
  for (let o = 0; o < cout; o++) {
    bs[o] = inputScale * ws[o]!;
    bq[o] = Math.max(-(2 ** 31) + 1, Math.min(2 ** 31 - 1, Math.round(b[o]! / bs[o]!)));
  }
  tensors.push(tensorOf(`${base}.bq`, INT32, [cout], bq), tensorOf(`${base}.b_scale`, FLOAT, [cout], bs), tensorOf(`${base}.b_zero`, INT32, [cout], new Int32Array(cout)));
  nodes.push({ op_type: 'DequantizeLinear', input: [`${base}.bq`, `${base}.b_scale`, `${base}.b_zero`], output: [`${base}.b`], name: `DQ_${base}.b`, attribute: axis });
  return { tensors, nodes, weight: `${base}.w`, bias: `${base}.b` };
}
