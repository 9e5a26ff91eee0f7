/**
 * A small ONNX graph builder: nodes, float/int64 initializers, typed inputs/outputs, serialized with protobufjs.
 */
import { modelProtoType } from './onnx-schema.js';

/** ONNX TensorProto.DataType values used here. */
export const DT = { FLOAT: 1, UINT8: 2, INT8: 3, INT64: 7 } as const;
export type ElemType = (typeof DT)[keyof typeof DT];

/** An attribute value, tagged with its ONNX type. */
export type Attr =
  | { readonly i: number }
  | { readonly f: number }
  | { readonly s: string }
  | { readonly ints: readonly number[] }
  | { readonly floats: readonly number[] };

interface NodeMsg {
  input: string[];
  output: string[];
  name: string;
  op_type: string;
  attribute: object[];
}

interface TensorMsg {
  name: string;
  dims: number[];
  data_type: number;
  raw_data: Uint8Array;
}

interface ValueInfoMsg {
  name: string;
  type: { tensor_type: { elem_type: number; shape: { dim: Array<{ dim_value: number } | { dim_param: string }> } } };
}

function attrMsg(name: string, a: Attr): object {
  if ('i' in a) return { name, type: 2, i: a.i };
  if ('f' in a) return { name, type: 1, f: a.f };
  if ('s' in a) return { name, type: 3, s: Buffer.from(a.s, 'utf8') };
  if ('ints' in a) return { name, type: 7, ints: [...a.ints] };
  return { name, type: 6, floats: [...a.floats] };
}

function bytesOf(a: Float32Array | BigInt64Array): Uint8Array {
  // ONNX raw_data is little-endian; Node on x86/arm64 is little-endian too.
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Accumulates one graph; `toBytes` serializes it as a ModelProto. */
export class GraphBuilder {
  private readonly nodes: NodeMsg[] = [];
  private readonly inits: TensorMsg[] = [];
  private readonly inputs: ValueInfoMsg[] = [];
  private readonly outputs: ValueInfoMsg[] = [];
  private counter = 0;

  /** A fresh value name with a readable prefix. */
  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  /** Adds a float32 initializer and returns its name. */
  float(name: string, dims: readonly number[], data: Float32Array | readonly number[]): string {
    const arr = data instanceof Float32Array ? data : Float32Array.from(data);
    const count = dims.reduce((a, b) => a * b, 1);
    if (arr.length !== count) throw new Error(`initializer ${name}: ${arr.length} values for dims [${dims.join(',')}]`);
    this.inits.push({ name, dims: [...dims], data_type: DT.FLOAT, raw_data: bytesOf(arr) });
    return name;
  }

  /** Adds an int8 initializer (quantized weights) and returns its name. */
  int8(name: string, dims: readonly number[], data: Int8Array): string {
    if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`initializer ${name}: ${data.length} values for dims [${dims.join(',')}]`);
    this.inits.push({ name, dims: [...dims], data_type: DT.INT8, raw_data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    return name;
  }

  /** Adds an int64 initializer and returns its name. */
  int64(name: string, values: readonly number[]): string {
    const arr = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.inits.push({ name, dims: [values.length], data_type: DT.INT64, raw_data: bytesOf(arr) });
    return name;
  }

  /** Adds a node with one output and returns the output's name. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, Attr> = {}, output?: string): string {
    const out = output ?? this.fresh(opType.toLowerCase());
    this.nodes.push({
      input: [...inputs],
      output: [out],
      name: `${opType}_${this.nodes.length}`,
      op_type: opType,
      attribute: Object.entries(attrs).map(([k, v]) => attrMsg(k, v)),
    });
    return out;
  }

  /** Adds a node with several outputs (named by the caller). */
  opMulti(opType: string, inputs: readonly string[], outputs: readonly string[], attrs: Record<string, Attr> = {}): void {
    this.nodes.push({
      input: [...inputs],
      output: [...outputs],
      name: `${opType}_${this.nodes.length}`,
      op_type: opType,
      attribute: Object.entries(attrs).map(([k, v]) => attrMsg(k, v)),
    });
  }

  /** Declares a graph input; string dims are symbolic (dynamic). */
  input(name: string, elemType: ElemType, dims: ReadonlyArray<number | string>): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Declares a graph output (the value must be produced by a node). */
  output(name: string, elemType: ElemType, dims: ReadonlyArray<number | string>): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** Serializes the model (IR version 8, default-domain opset `opset`). */
  toBytes(graphName: string, metadata: Record<string, string>, opset = 17): Uint8Array {
    const Model = modelProtoType();
    const msg = {
      ir_version: 8,
      opset_import: [{ domain: '', version: opset }],
      producer_name: 'wsi-dataset-engine',
      producer_version: '0.1.0',
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: this.inits,
        input: this.inputs,
        output: this.outputs,
      },
      metadata_props: Object.entries(metadata).map(([key, value]) => ({ key, value })),
    };
    const err = Model.verify(msg);
    if (err) throw new Error(`ONNX message invalid: ${err}`);
    return Model.encode(Model.fromObject(msg)).finish();
  }
}

function valueInfo(name: string, elemType: ElemType, dims: ReadonlyArray<number | string>): ValueInfoMsg {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) },
      },
    },
  };
}
