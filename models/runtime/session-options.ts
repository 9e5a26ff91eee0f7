/**
 * The onnxruntime session options every stage uses, kept apart from the session cache (session.ts) so that a bench
 * child can apply them to another onnxruntime-node copy loaded by path (bench/embed-cost.ts) without loading this
 * project's own copy too. Types only: importing this file loads no native code.
 */
import type { InferenceSession } from 'onnxruntime-node';

/** The session options every stage uses. */
export function sessionOptions(threads: number): InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // The arena stays on: without it every batch maps and faults in its activations afresh (bench/RESULTS.md:
    // 88 vs 36 CPU ms per tile at batch 4, for 8% less peak RSS). Memory is bounded by the batch size instead.
    enableCpuMemArena: true,
    // Idle pool threads sleep instead of spinning: on a shared or fully subscribed machine spinning threads steal
    // the cores the other workers need (measured 2.3x faster with 2 threads at load average 8 on 2 cores).
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}
