/**
 * The calibration variant of an fp32 embedder: the same graph with every quantizable activation tensor (qdq.ts)
 * added as a graph output, so one run gives the tensors' values (their ranges, and on held-out tiles the error
 * each tensor's quantization alone makes) next to the embeddings.
 */
import { floatValueInfo, type OnnxModel } from './onnx-model.js';
import { quantizableTensors } from './qdq.js';

/** The variant (a new object; `m` is not modified) and the exposed tensors' names, in graph order. */
export function calibrationModel(m: OnnxModel): { model: OnnxModel; tensors: string[] } {
  const outputs = new Set(m.graph.output.map((o) => o.name));
  const tensors = quantizableTensors(m);
  const extra = tensors.filter((t) => !outputs.has(t)).map(floatValueInfo);
  return { model: { ...m, graph: { ...m.graph, output: [...m.graph.output, ...extra] } }, tensors };
}
