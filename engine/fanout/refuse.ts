/**
 * Items the parent already knows will fail (FanOutOptions.refuse: a slide with no file) fail here, before the local
 * pool sees them: no worker round trip. Each gets the 'failed' event and the error a worker's failure would give
 * (E_WORKER_ITEM, its cause the item's own error), with attempt 0; failFast stops the run. Another runner (the
 * queue) gets every item: there each is a job its queue counts and its worker reports.
 */
import type { RunEnv } from '../run-env.js';
import { EngineError, type StageContext } from '../types.js';
import type { FanOutSettings } from './options.js';

/** `source` without its refused items (those are reported failed as they pass). */
export async function* refuseKnown<I>(source: AsyncIterable<I>, ctx: StageContext, env: RunEnv, settings: FanOutSettings<I>): AsyncGenerator<I> {
  const { stage, opts } = settings;
  for await (const item of source) {
    const cause = opts.refuse?.(item);
    if (cause === undefined) {
      yield item;
      continue;
    }
    const key = opts.key(item);
    const err = new EngineError('E_WORKER_ITEM', stage, key, `item failed after 0 attempt(s): ${cause.message}`, { cause });
    const m = ctx.metrics.custom;
    m.items_failed = (typeof m.items_failed === 'number' ? m.items_failed : 0) + 1;
    env.item({ type: 'failed', stage, key, attempt: 0, error: err });
    if (opts.failFast) throw err;
  }
}
