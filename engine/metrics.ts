/** Creating and snapshotting StageMetrics, and the snapshot the graph emits as its 'metrics' event. */
import type { StageMetrics } from './types.js';

export function newMetrics(name: string): StageMetrics {
  return { name, elementsIn: 0, elementsOut: 0, busyMs: 0, blockedMs: 0, queueDepth: 0, maxQueueDepth: 0, custom: {} };
}

/** A copy that later updates do not change. */
export function copyMetrics(m: StageMetrics): StageMetrics {
  return { ...m, busyMs: Math.round(m.busyMs * 10) / 10, blockedMs: Math.round(m.blockedMs * 10) / 10, custom: { ...m.custom } };
}

/** Adds `from`'s counts into `into` (same stage run several times, e.g. once per slide in each worker). */
export function addMetrics(into: StageMetrics, from: StageMetrics): void {
  into.elementsIn += from.elementsIn;
  into.elementsOut += from.elementsOut;
  into.busyMs += from.busyMs;
  into.blockedMs += from.blockedMs;
  into.maxQueueDepth = Math.max(into.maxQueueDepth, from.maxQueueDepth);
  for (const [k, v] of Object.entries(from.custom)) into.custom[k] = (into.custom[k] ?? 0) + v;
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
