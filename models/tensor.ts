/** Named float32 tensors (a state dict) and the shape check every importer and builder shares. */
import { ModelError } from './errors.js';

export interface NamedTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** A set of weights keyed by the PyTorch state-dict names, and where they came from. */
export interface Weights {
  readonly tensors: ReadonlyMap<string, NamedTensor>;
  /** The file name the weights were read from, or 'demo-untrained'. */
  readonly origin: string;
  /** sha256 of the file (absent for demo weights). */
  readonly sha256?: string;
}

/** Throws E_WEIGHTS naming `origin` and the first missing or misshapen tensor. */
export function checkShapes(weights: Weights, expected: ReadonlyMap<string, readonly number[]>): void {
  for (const [key, shape] of expected) {
    const t = weights.tensors.get(key);
    if (!t) throw new ModelError('E_WEIGHTS', `${weights.origin}: missing tensor '${key}' (expected shape [${shape.join(',')}])`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelError(
        'E_WEIGHTS',
        `${weights.origin}: tensor '${key}' has shape [${t.shape.join(',')}], expected [${shape.join(',')}]`,
      );
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== count) {
      throw new ModelError('E_WEIGHTS', `${weights.origin}: tensor '${key}' holds ${t.data.length} values, expected ${count}`);
    }
  }
}

/** Metadata recorded in built models: which weights they carry. */
export function weightsMetadata(weights: Weights): Record<string, string> {
  const meta: Record<string, string> = { weights: weights.origin };
  if (weights.sha256) meta.weights_sha256 = weights.sha256;
  return meta;
}
