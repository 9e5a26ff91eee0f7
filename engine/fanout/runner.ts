/**
 * A second way of running a fan-out's items (Beam's runner idea): chosen by how the graph is run (GraphOptions
 * `fanOutRunner`), not by the pipeline's declaration. Without one, items run on the local pool (engine/fanout.ts);
 * with one (e.g. engine/queue/coordinator.ts, through BullMQ on Redis), the runner takes the stage's whole input and
 * yields the same results, so everything downstream is unchanged.
 */
import type { RunEnv } from '../run-env.js';
import type { StageContext } from '../types.js';
import type { FanOutSettings } from './options.js';

export interface FanOutRunner {
  /** Runs every item of `source` as the fan-out stage `ctx.name` would (same events, same results) and yields the results. */
  run<I, O>(source: AsyncIterable<I>, ctx: StageContext, env: RunEnv, settings: FanOutSettings<I>): AsyncGenerator<O>;
}
