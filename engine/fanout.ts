/**
 * Fan-out to worker processes: N slots, each pulls the next item, runs it on its worker process and
 * delivers the results. `staged` delivery (default) stages an attempt's results (memory, then a spill
 * file) and delivers them only once the attempt succeeded, so a crashed attempt's partial results are
 * never counted; with `checkpointDir` committed items are kept and replayed by later runs.
 * `stream` delivery hands results downstream as they arrive (a retried item may deliver twice).
 * With `share`, a worker left without items joins a running item (see ItemShare): the job's tail is finished
 * by every worker instead of one; the item's attempt succeeds when all its participants did.
 *
 * The parts, in engine/fanout/: options.ts (the options and their defaults), run.ts (what the slots share: input,
 * output, processes), slot.ts (one worker's loop: items, attempts, retries, joining), delivery.ts (a slot's
 * commits and deliveries, in item order), share.ts (shared attempts and the board idle slots pick from).
 * One AbortSignal per run (ctx.signal); the first error fails the output and kills every worker.
 */
import { mkdir, rm } from 'node:fs/promises';
import type { RunEnv } from './run-env.js';
import { removePartials } from './staging.js';
import type { StageContext } from './types.js';
import { fanOutSettings, type FanOutOptions } from './fanout/options.js';
import { refuseKnown } from './fanout/refuse.js';
import { FanOutRun } from './fanout/run.js';
import { Slot } from './fanout/slot.js';

export type { FanOutOptions } from './fanout/options.js';

/** Runs each item of `source` on a pool of worker processes (options: FanOutOptions) and yields their results. */
export async function* fanOutStage<I, O>(input: AsyncIterable<I>, ctx: StageContext, env: RunEnv, opts: FanOutOptions<I>): AsyncGenerator<O> {
  const settings = fanOutSettings(ctx.name, opts, env);
  if (env.fanOutRunner !== undefined) {
    // Every item goes to the other runner, refused ones too: there each item is a job that its queue counts and
    // whose worker reports it (the machines that run it decide what they can read).
    yield* env.fanOutRunner.run<I, O>(input, ctx, env, settings); // another runner (engine/fanout/runner.ts)
    return;
  }
  const source = opts.refuse === undefined ? input : refuseKnown(input, ctx, env, settings);
  await mkdir(settings.stageDir, { recursive: true });
  if (opts.checkpointDir !== undefined) await removePartials(settings.stageDir);
  const run = new FanOutRun<I, O>(source, ctx, env, settings);
  const onAbort = (): void => {
    run.board.notify();
    run.fail(ctx.signal.reason);
  };
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  const slots = Promise.all(Array.from({ length: Math.max(1, settings.workers) }, () => new Slot(run).work())).then(
    () => run.out.close(),
    (e: unknown) => run.fail(e),
  );
  try {
    yield* run.out;
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    await run.shutdown(slots);
    if (opts.checkpointDir === undefined) await rm(settings.stageDir, { recursive: true, force: true });
  }
}
