/** The engine's public API. */
export * from './types.js';
export { Graph, Node, toEngineError, type GraphOptions, type PipeOptions, type RunResult, type GraphEvents } from './graph.js';
export { Channel, ChannelCancelled } from './channel.js';
export { Budget, ScopedBudget } from './budget.js';
export { batchStage, realClock, type BatchOptions, type Clock } from './batch.js';
export { compareKeys } from './combine.js';
export type { JoinOutput } from './join.js';
export type { FanOutOptions } from './fanout.js';
export type { FanOutRunner } from './fanout/runner.js';
export { onWorkerStderr, prestartWorkers, stopPrestarted, type StderrSink } from './worker-proc.js';
export type { ItemFn } from './worker.js';
export type { ItemEvent, WorkerEvent, ItemFailure } from './events.js';
export type { MetricsSnapshot } from './metrics.js';
export { chain } from './chain.js';
