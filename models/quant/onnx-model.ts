/**
 * The decoded form of an ONNX model the quantization passes rewrite: nodes, initializers and graph inputs/outputs as
 * plain objects (protobufjs `toObject`, int64 as numbers), and the float32 / raw views of initializers.
 */
import { modelProtoType } from '../onnx-schema.js';
import { ModelError } from '../errors.js';

export interface OnnxAttr {
  name: string;
  type?: number;
  i?: number;
  f?: number;
  s?: Uint8Array;
  ints?: number[];
  floats?: number[];
}

export interface OnnxNode {
  input: string[];
  output: string[];
  name?: string;
  op_type: string;
  domain?: string;
  attribute?: OnnxAttr[];
}

export interface OnnxTensor {
  name: string;
  dims: number[];
  data_type: number;
  raw_data?: Uint8Array;
  float_data?: number[];
}

export interface OnnxValueInfo {
  name: string;
  type?: unknown;
}

export interface OnnxModel {
  ir_version?: number;
  opset_import?: Array<{ domain?: string; version: number }>;
  producer_name?: string;
  producer_version?: string;
  graph: {
    name?: string;
    node: OnnxNode[];
    initializer: OnnxTensor[];
    input: OnnxValueInfo[];
    output: OnnxValueInfo[];
    value_info?: OnnxValueInfo[];
  };
  metadata_props?: Array<{ key: string; value: string }>;
}

/** Decodes ONNX bytes (E_MODEL when they are not a model with a graph). */
export function decodeModel(bytes: Uint8Array, label: string): OnnxModel {
  const Model = modelProtoType();
  let m: OnnxModel;
  try {
    m = Model.toObject(Model.decode(bytes), { longs: Number, arrays: true, defaults: false }) as OnnxModel;
  } catch (cause) {
    throw new ModelError('E_MODEL', `${label}: not an ONNX model: ${String(cause)}`, { cause });
  }
  if (!m.graph) throw new ModelError('E_MODEL', `${label}: an ONNX model without a graph`);
  m.graph.node ??= [];
  m.graph.initializer ??= [];
  m.graph.input ??= [];
  m.graph.output ??= [];
  for (const n of m.graph.node) {
    n.input ??= [];
    n.output ??= [];
  }
  for (const t of m.graph.initializer) t.dims ??= [];
  return m;
}

/** Encodes a (rewritten) decoded model. */
export function encodeModel(m: OnnxModel): Uint8Array {
  const Model = modelProtoType();
  const err = Model.verify(m);
  if (err) throw new Error(`ONNX message invalid: ${err}`);
  return Model.encode(Model.fromObject(m)).finish();
}

/** An initializer's values as float32 (raw_data or float_data); throws unless it is a FLOAT tensor. */
export function floatData(t: OnnxTensor): Float32Array {
  if (t.data_type !== 1) throw new ModelError('E_MODEL', `initializer ${t.name}: data type ${t.data_type}, expected float`);
  if (t.raw_data && t.raw_data.length > 0) {
    // A copy: the decoded buffer's offset need not be 4-aligned.
    const bytes = Uint8Array.from(t.raw_data);
    return new Float32Array(bytes.buffer, 0, bytes.length / 4);
  }
  return Float32Array.from(t.float_data ?? []);
}

/** A tensor initializer from a typed array (little-endian raw data). */
export function tensorOf(name: string, dataType: number, dims: readonly number[], data: Float32Array | Int8Array | Uint8Array | Int32Array): OnnxTensor {
  return { name, dims: [...dims], data_type: dataType, raw_data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** A float tensor's value info with a shape of unnamed dims of the given rank (or none). */
export function floatValueInfo(name: string): OnnxValueInfo {
  return { name, type: { tensor_type: { elem_type: 1 } } };
}

/** A model's metadata as a map. */
export function metadataOf(m: OnnxModel): Map<string, string> {
  return new Map((m.metadata_props ?? []).map((p) => [p.key, p.value]));
}
