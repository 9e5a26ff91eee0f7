/** Messages between the fan-out stage (parent) and a worker process (engine/worker.ts). */
import type { StageMetrics } from './types.js';

/** Parent -> child, on the IPC channel. */
export type ToWorker =
  | { readonly type: 'init'; readonly module: string; readonly exportName: string; readonly config: unknown; readonly window: number; readonly tileLimit: number; readonly stage: string }
  /** `participant` is set when the item may be shared (ItemShare): 0 for its first worker, 1, 2... for joiners. */
  | { readonly type: 'item'; readonly id: number; readonly item: unknown; readonly participant?: number }
  /** The answer to a `claim`: the part index the worker may process. */
  | { readonly type: 'claimed'; readonly id: number; readonly index: number }
  | { readonly type: 'credit'; readonly n: number };

/** Child -> parent, on the IPC channel. */
export type FromWorker =
  | { readonly type: 'ready' }
  | { readonly type: 'init-error'; readonly error: WireError }
  | { readonly type: 'tiles'; readonly inUse: number; readonly max: number }
  /** A shared item's next part, please (ItemShare.claim). */
  | { readonly type: 'claim'; readonly id: number; readonly total: number };

/** Child -> parent, as frames on the data pipe (fd 3); ordered, so `end`/`error` follow the item's results. */
export type DataFrame =
  | { readonly t: 'r'; readonly id: number; readonly v: unknown }
  | { readonly t: 'end'; readonly id: number; readonly n: number }
  /** Final metrics of the item's sub-graph; sent before `end`/`err` so the parent has them when the item ends. */
  | { readonly t: 'm'; readonly id: number; readonly stages: readonly StageMetrics[] }
  | { readonly t: 'err'; readonly id: number; readonly error: WireError };

export interface WireError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly stack?: string;
}

export function toWire(e: unknown): WireError {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { name: e.name, message: e.message, stack: e.stack, ...(typeof code === 'string' ? { code } : {}) };
  }
  return { name: 'Error', message: String(e) };
}

export function fromWire(w: WireError): Error & { code?: string } {
  const e = new Error(w.message) as Error & { code?: string };
  e.name = w.name;
  if (w.code !== undefined) e.code = w.code;
  if (w.stack !== undefined) e.stack = w.stack;
  return e;
}

/** The data pipe's fd in the child. */
export const DATA_FD = 3;
