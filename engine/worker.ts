/**
 * Worker process entry (forked by the fan-out stage). Loads `module[exportName](config)` once, then
 * runs the returned per-item function for each item it is sent, streaming results back as frames on
 * fd 3. It sends a result only while it holds a credit (the parent grants credits as it takes results
 * out of its bounded buffer), so a slow parent stops production here. Exits when the parent goes away.
 */
import { Socket } from 'node:net';
import { Budget, ScopedBudget } from './budget.js';
import { encodeFrame } from './frames.js';
import { newMetrics } from './metrics.js';
import { DATA_FD, toWire, type DataFrame, type FromWorker, type ToWorker } from './protocol.js';
import type { ItemShare, StageContext, StageMetrics } from './types.js';

/** What a worker module's export returns: the per-item function. */
export type ItemFn<I, O> = (item: I, ctx: StageContext) => AsyncIterable<O>;

const parentPid = process.ppid;
// A prestarted worker is forked with its module's URL: the import starts now, and init's import of the same URL
// finds it under way (or done). A failure is init's to report.
if (process.argv[2] !== undefined) import(process.argv[2]).catch(() => undefined);
const out = new Socket({ fd: DATA_FD, readable: false, writable: true });
const controller = new AbortController();
let fn: ItemFn<unknown, unknown> | undefined;
let ctx: StageContext | undefined;
let budget: ReportingBudget | undefined;
let credits = 0;
let creditWaiter: (() => void) | undefined;
const queue: Array<{ id: number; item: unknown; participant: number | undefined }> = [];
/** Claims sent for each shared item, answered in order (the IPC channel keeps it). */
const claims = new Map<number, Array<(index: number) => void>>();
let busy = false;

function send(msg: FromWorker): void {
  process.send?.(msg);
}

/**
 * Leaves at once. Not process.exit(): with module loader threads (tap's TypeScript loader) exit can
 * block forever joining them, and an orphan must never linger. Nothing here needs flushing: results
 * not yet sent are discarded by the parent anyway.
 */
function leave(): never {
  controller.abort();
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}

// No child survives its parent: the IPC channel closes when the parent dies; the ppid check is a backstop.
process.on('disconnect', () => leave());
setInterval(() => {
  if (process.ppid !== parentPid) leave();
}, 500).unref();

/**
 * Results are held back (corked) until COALESCE_RESULTS of them are waiting or COALESCE_MS has passed, so that
 * several leave in one write: every write wakes the parent up, and on this VM a wake-up costs more than the frame
 * (bench/RESULTS.md, decision 23). Any other frame (metrics, end, error) sends everything at once.
 */
const COALESCE_RESULTS = 4;
const COALESCE_MS = 20;
let heldResults = 0;
let flushTimer: NodeJS.Timeout | undefined;

function flush(): void {
  clearTimeout(flushTimer);
  flushTimer = undefined;
  heldResults = 0;
  while (out.writableCorked > 0) out.uncork();
}

async function write(frame: DataFrame): Promise<void> {
  const [head, body] = encodeFrame(frame) as [Buffer, Buffer];
  out.cork();
  out.write(head);
  const room = out.write(body);
  if (frame.t === 'r' && ++heldResults < COALESCE_RESULTS) {
    flushTimer ??= setTimeout(flush, COALESCE_MS);
    return; // at most COALESCE_RESULTS frames wait in the socket's buffer
  }
  flush();
  if (!room) await new Promise<void>((resolve) => out.once('drain', resolve));
}

async function credit(): Promise<void> {
  while (credits <= 0) await new Promise<void>((resolve) => (creditWaiter = resolve));
  credits--;
}

/** A shared item's claims go to the parent, which keeps the item's one counter for all its participants. */
function itemShare(id: number, participant: number): ItemShare {
  return {
    participant,
    claim: (total) =>
      new Promise<number>((resolve) => {
        const waiting = claims.get(id) ?? [];
        waiting.push(resolve);
        claims.set(id, waiting);
        send({ type: 'claim', id, total });
      }),
  };
}

async function runItem(id: number, item: unknown, participant: number | undefined): Promise<void> {
  let n = 0;
  // Tiles the item still holds when it ends (an error mid-slide) go back, so the next item has the whole budget.
  const tiles = new ScopedBudget((ctx as StageContext).tiles);
  // Sub-graph metrics travel on the data pipe just before the item's `end`/`err` frame.
  const metrics: Array<readonly StageMetrics[]> = [];
  const flushMetrics = async (): Promise<void> => {
    for (const stages of metrics.splice(0)) await write({ t: 'm', id, stages });
  };
  const itemCtx: StageContext = { ...(ctx as StageContext), tiles, collect: (stages) => metrics.push(stages), ...(participant !== undefined && { share: itemShare(id, participant) }) };
  try {
    for await (const v of (fn as ItemFn<unknown, unknown>)(item, itemCtx)) {
      await credit();
      await write({ t: 'r', id, v });
      n++;
    }
    await flushMetrics();
    budget?.reportNow(); // the item's peak reaches the parent before its end
    await write({ t: 'end', id, n });
  } catch (e) {
    await flushMetrics();
    budget?.reportNow();
    await write({ t: 'err', id, error: toWire(e) });
  } finally {
    tiles.releaseAll();
    claims.delete(id);
  }
}

async function drain(): Promise<void> {
  if (busy) return;
  busy = true;
  try {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) await runItem(next.id, next.item, next.participant);
  } finally {
    busy = false;
  }
}

process.on('message', (msg: ToWorker) => {
  switch (msg.type) {
    case 'init':
      void init(msg);
      break;
    case 'item':
      queue.push({ id: msg.id, item: msg.item, participant: msg.participant });
      void drain();
      break;
    case 'claimed':
      claims.get(msg.id)?.shift()?.(msg.index);
      break;
    case 'credit':
      credits += msg.n;
      creditWaiter?.();
      creditWaiter = undefined;
      break;
  }
});

async function init(msg: Extract<ToWorker, { type: 'init' }>): Promise<void> {
  try {
    credits = msg.window;
    budget = new ReportingBudget(msg.tileLimit);
    ctx = { signal: controller.signal, name: msg.stage, metrics: newMetrics(msg.stage), tiles: budget };
    const mod = (await import(msg.module)) as Record<string, unknown>;
    const factory = mod[msg.exportName];
    if (typeof factory !== 'function') throw new Error(`${msg.module} has no function export ${msg.exportName}`);
    fn = (await (factory as (config: unknown) => unknown)(msg.config)) as ItemFn<unknown, unknown>;
    if (typeof fn !== 'function') throw new Error(`${msg.exportName}(config) did not return a function`);
    send({ type: 'ready' });
  } catch (e) {
    send({ type: 'init-error', error: toWire(e) });
  }
}

/** The child's budget; every change is reported to the parent (throttled to one message per 50 ms). */
class ReportingBudget extends Budget {
  private timer: NodeJS.Timeout | undefined;
  override async acquire(n: number, signal?: AbortSignal): Promise<void> {
    await super.acquire(n, signal);
    this.schedule();
  }
  override release(n: number): void {
    super.release(n);
    this.schedule();
  }
  /** Sends the current usage now (and drops a pending throttled report). */
  reportNow(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    send({ type: 'tiles', inUse: this.inUse, max: this.maxInUse });
  }
  private schedule(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => this.reportNow(), 50);
    this.timer.unref();
  }
}
