/**
 * What a running node's body gets from the graph besides its StageContext (engine-internal). Its own file:
 * the graph provides it and the stages it runs (fan-out among them) use it, and neither owns the other.
 */
import type { ItemEvent, WorkerEvent } from './events.js';
import type { FanOutRunner } from './fanout/runner.js';
import type { StageMetrics, TileBudget } from './types.js';

/** What a node's body gets besides its StageContext (engine-internal). */
export interface RunEnv {
  readonly tmpDir: string;
  readonly budget: TileBudget;
  item(event: ItemEvent): void;
  worker(event: WorkerEvent): void;
  /** Metrics of the stages a fan-out stage's workers ran, added up per stage name. */
  subMetrics(parent: string, stages: readonly StageMetrics[]): void;
  /** Runs fan-out stages' items elsewhere than the local pool (GraphOptions `fanOutRunner`). */
  readonly fanOutRunner?: FanOutRunner;
}
