/** Creating and snapshotting StageMetrics, and the snapshot the graph emits as its 'metrics' event. */
import type { StageMetrics } from './types.js';

export function newMetrics(name: string): StageMetrics {
  return { name, elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} };
}

/** A copy that later updates do not change. */
export function copyMetrics(m: StageMetrics): StageMetrics {
  return { ...m, busyMs: Math.round(m.busyMs * 10) / 10, blockedMs: Math.round(m.blockedMs * 10) / 10, custom: { ...m.custom } };
}

/** What the graph emits every `metricsIntervalMs` and once at the end (`final: true`). */
export interface MetricsSnapshot {
  readonly graph: string;
  readonly elapsedMs: number;
  readonly stages: readonly StageMetrics[];
  /** Global tiles in memory (this process plus what workers report), the maximum seen, the limit. */
  readonly tiles: { readonly inUse: number; readonly maxInUse: number; readonly limit: number };
  readonly final: boolean;
}
