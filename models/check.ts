/**
 * Load-time checks for any ONNX file swapped in for ours: input/output names, ranks, dtypes (E_MODEL), and a
 * heuristic for whether a normalizer is per-pixel (so a 2^24-colour lookup table reproduces it exactly).
 */
import type { InferenceSession } from 'onnxruntime-node';
import { ModelError } from './errors.js';
import { int64ToNumber, modelProtoType } from './onnx-schema.js';

export type ModelKind = 'stainnet' | 'efficientnet';

interface Expect {
  readonly name: string;
  readonly types: readonly string[];
  /** Required dims: a number must match when the model gives a number; null = any (dynamic). */
  readonly dims: ReadonlyArray<number | null>;
}

const EXPECTED: Record<ModelKind, { inputs: Expect[]; outputs: Expect[] }> = {
  stainnet: {
    inputs: [{ name: 'tiles', types: ['uint8'], dims: [null, null, null, 3] }],
    outputs: [{ name: 'normalized', types: ['float32', 'uint8'], dims: [null, null, null, 3] }],
  },
  efficientnet: {
    inputs: [{ name: 'tiles', types: ['uint8'], dims: [null, null, null, 3] }],
    // Any named outputs, each float32 [N, width] (EfficientNet-B0: avg, max of 1280; a ViT: cls, mean): checked
    // by checkEmbedderOutputs, and per run.
    outputs: [],
  },
};

function describe(e: Expect): string {
  return `${e.name}: ${e.types.join('|')} [${e.dims.map((d) => (d === null ? '?' : d)).join(',')}]`;
}

function checkList(
  label: string,
  kind: ModelKind,
  where: 'input' | 'output',
  expected: readonly Expect[],
  found: readonly InferenceSession.ValueMetadata[],
): void {
  const fail = (what: string): never => {
    const got = found
      .map((m) => (m.isTensor ? `${m.name}: ${m.type} [${m.shape.join(',')}]` : `${m.name}: non-tensor`))
      .join('; ');
    throw new ModelError(
      'E_MODEL',
      `${label}: not a usable ${kind} model: ${what}. Expected ${where}s {${expected.map(describe).join('; ')}}, found {${got}}`,
    );
  };
  for (const e of expected) {
    const m = found.find((f) => f.name === e.name);
    if (!m) fail(`${where} '${e.name}' is missing`);
    else if (!m.isTensor) fail(`${where} '${e.name}' is not a tensor`);
    else {
      if (!e.types.includes(m.type)) fail(`${where} '${e.name}' has type ${m.type}`);
      if (m.shape.length !== e.dims.length) fail(`${where} '${e.name}' has rank ${m.shape.length}`);
      e.dims.forEach((d, i) => {
        const got = m.shape[i];
        if (d !== null && typeof got === 'number' && got !== d) fail(`${where} '${e.name}' has dim ${i} = ${got}`);
      });
    }
  }
}

/** Throws E_MODEL (naming `label`, usually the file) unless the session has the inputs/outputs `kind` needs. */
export function checkModel(session: InferenceSession, kind: ModelKind, label: string = kind): void {
  checkList(label, kind, 'input', EXPECTED[kind].inputs, session.inputMetadata);
  checkList(label, kind, 'output', EXPECTED[kind].outputs, session.outputMetadata);
  if (kind === 'efficientnet') {
    checkEmbedderOutputs(session, label);
    const width = (name: string): number | string | undefined => {
      const m = session.outputMetadata.find((f) => f.name === name);
      return m?.isTensor ? m.shape[1] : undefined;
    };
    const [a, m] = [width('avg'), width('max')];
    if (typeof a === 'number' && typeof m === 'number' && a !== m) {
      throw new ModelError('E_MODEL', `${label}: not a usable embedder: outputs 'avg' and 'max' have different widths (${a} and ${m})`);
    }
  }
}

/** An output name that can name a record feature (`<name>_embedding`, stages/tfrecord/example.ts). */
export const EMBEDDER_OUTPUT_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

/** An embedder's outputs: at least one, each float32 of rank 2 ([N, width]), named so that a feature can take the name. */
function checkEmbedderOutputs(session: InferenceSession, label: string): void {
  const found = session.outputMetadata;
  const got = found.map((m) => (m.isTensor ? `${m.name}: ${m.type} [${m.shape.join(',')}]` : `${m.name}: non-tensor`)).join('; ');
  const fail = (what: string): never => {
    throw new ModelError('E_MODEL', `${label}: not a usable embedder: ${what}. Expected outputs float32 [N, width] (e.g. {avg; max} or {cls; mean}), found {${got}}`);
  };
  if (found.length === 0) fail('it has no outputs');
  for (const m of found) {
    if (!m.isTensor) fail(`output '${m.name}' is not a tensor`);
    else if (m.type !== 'float32') fail(`output '${m.name}' has type ${m.type}`);
    else if (m.shape.length !== 2) fail(`output '${m.name}' has rank ${m.shape.length}`);
    if (!EMBEDDER_OUTPUT_NAME.test(m.name)) fail(`output '${m.name}' cannot name a record feature (a letter, then letters, digits or _)`);
  }
}

/** Ops that act on each pixel's channels alone (Conv only when 1x1, stride 1, unpadded). */
const PIXELWISE_OPS = new Set([
  'Cast', 'Transpose', 'Conv', 'MatMul', 'Add', 'Sub', 'Mul', 'Div', 'Relu', 'LeakyRelu', 'PRelu', 'Sigmoid',
  'Tanh', 'Clip', 'Min', 'Max', 'Round', 'Floor', 'Ceil', 'Identity', 'Exp', 'Log', 'Pow', 'Sqrt', 'Abs', 'Neg',
  'Softplus', 'Elu', 'Selu', 'HardSigmoid', 'Constant',
]);

interface DecodedAttr { name: string; ints?: unknown[] }
interface DecodedNode { op_type: string; input: string[]; attribute?: DecodedAttr[] }
interface DecodedModel {
  metadata_props?: Array<{ key: string; value: string }>;
  graph?: { node?: DecodedNode[]; initializer?: Array<{ name: string; dims?: unknown[] }> };
}

/**
 * True when the model is per-pixel: built by us (metadata pixelwise=true), or made only of element-wise ops and
 * 1x1 stride-1 unpadded convolutions. A heuristic: force `mode: 'onnx'` for anything exotic.
 */
export function isPixelwiseModel(bytes: Uint8Array): boolean {
  const Model = modelProtoType();
  const m = Model.toObject(Model.decode(bytes), { defaults: false }) as DecodedModel;
  if (m.metadata_props?.some((p) => p.key === 'pixelwise' && p.value === 'true')) return true;
  const dims = new Map((m.graph?.initializer ?? []).map((t) => [t.name, (t.dims ?? []).map(int64ToNumber)]));
  for (const n of m.graph?.node ?? []) {
    if (!PIXELWISE_OPS.has(n.op_type)) return false;
    if (n.op_type !== 'Conv') continue;
    const attr = (name: string): number[] | undefined =>
      n.attribute?.find((a) => a.name === name)?.ints?.map(int64ToNumber);
    const kernel = attr('kernel_shape') ?? dims.get(n.input[1] ?? '')?.slice(2);
    if (!kernel || kernel.some((k) => k !== 1)) return false;
    if ((attr('strides') ?? []).some((s) => s !== 1) || (attr('pads') ?? []).some((p) => p !== 0)) return false;
  }
  return true;
}
