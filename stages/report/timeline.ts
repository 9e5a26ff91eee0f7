/**
 * The run's timeline as report.json keeps it and report.html draws it: which worker process ran which slide
 * when (one bar per slide attempt, or per worker that joined a running slide), how each attempt ended, when
 * each worker process started and exited, and two time series (tiles embedded, tiles in memory).
 *
 * Bounded memory, whatever the run's size: bars are kept up to TIMELINE_LIMITS.bars (then only the marked ones
 * — retried, failed, joins — up to TIMELINE_LIMITS.markedBars more; the others are counted in `bars_left_out`
 * and still counted in their lane's totals); the series are bucketed (buckets.ts: at most
 * TIMELINE_LIMITS.buckets values each, the bucket width doubling as the run goes on). Open bars are one per
 * worker process at most. A lane is a worker process, known by host and pid: in a run over several machines
 * (--queue) slides run on other hosts, whose pids may be the same as this machine's or each other's.
 */
import { Buckets, type BucketSeries } from './buckets.js';

export const TIMELINE_LIMITS = { bars: 4000, markedBars: 2000, buckets: 240, firstBucketMs: 250 } as const;

/** How a bar ended: the slide finished (ok), its attempt was retried, the slide failed, or the run stopped first. */
export type BarOutcome = 'ok' | 'retried' | 'failed' | 'running';

export interface TimelineLane {
  readonly pid: number;
  /** The machine of the worker process (runs on one machine: absent). */
  host?: string;
  /** When the process was taken into the run and when it exited, ms since the run started (null: not seen). */
  spawned_ms: number | null;
  exited_ms: number | null;
  /** How it exited; `during`: the slide whose attempt died with it (then retried or failed; not a worker let go). */
  exit?: { code: number | null; signal: string | null; during?: string };
  /** Bars on this lane (kept or left out) and their total length, ms. */
  bars: number;
  busy_ms: number;
}

export interface TimelineBar {
  /** Index into `lanes`. */
  readonly lane: number;
  readonly slide: string;
  readonly attempt: number;
  /** The worker joined the slide while another ran it (a share-join), rather than starting it. */
  readonly join: boolean;
  readonly start_ms: number;
  end_ms: number;
  outcome: BarOutcome;
}

/** A bar as report.json stores it (compact: a big run has thousands): the BAR_FIELDS in order, `join` as 1 or 0. */
export type TimelineBarRow = [lane: number, slide: string, attempt: number, join: 0 | 1, start_ms: number, end_ms: number, outcome: BarOutcome];
export const BAR_FIELDS = ['lane', 'slide', 'attempt', 'join', 'start_ms', 'end_ms', 'outcome'] as const;

/** The bars of a timeline as objects. */
export function barsOf(t: Pick<TimelineReport, 'bars'>): TimelineBar[] {
  return t.bars.map(([lane, slide, attempt, join, start_ms, end_ms, outcome]) => ({ lane, slide, attempt, join: join === 1, start_ms, end_ms, outcome }));
}

export interface TimelineReport {
  /** ms since the run started when the timeline was closed. */
  readonly end_ms: number;
  readonly lanes: TimelineLane[];
  /** The names of a bar row's columns (BAR_FIELDS). */
  readonly bar_fields: typeof BAR_FIELDS;
  readonly bars: TimelineBarRow[];
  /** Plain (ok, not joined) bars not kept: past TIMELINE_LIMITS.bars. */
  readonly bars_left_out: number;
  /** Slides taken from their checkpoints (no worker ran them: no bar). */
  readonly replayed: number;
  /** Tiles embedded per bucket (tiles per second = value / bucket_ms * 1000). */
  readonly tiles: BucketSeries;
  /** Tiles in memory across all processes: the most seen in each bucket (metrics snapshots). */
  readonly tiles_in_flight: BucketSeries;
}

/** An item event as the timeline needs it (engine/events.ts's ItemEvent fits). */
export type TimelineItemEvent =
  /** `host`: the machine of `pid` when it is not this one (--queue); a lane is a (host, pid) pair. */
  | { readonly type: 'started' | 'joined'; readonly key: string; readonly attempt: number; readonly pid: number; readonly host?: string }
  | { readonly type: 'retry' | 'failed'; readonly key: string; readonly attempt: number }
  | { readonly type: 'done'; readonly key: string; readonly attempt: number }
  | { readonly type: 'replayed'; readonly key: string }
  | { readonly type: 'progress' | 'remote-progress'; readonly key: string };

export type TimelineWorkerEvent =
  | { readonly type: 'spawn'; readonly pid: number }
  | { readonly type: 'exit'; readonly pid: number; readonly code: number | null; readonly signal: string | null };

interface OpenBar {
  readonly lane: number;
  readonly slide: string;
  readonly attempt: number;
  readonly join: boolean;
  readonly start: number;
  /** Set when the worker process exited before the attempt's outcome arrived. */
  end: number | undefined;
}

/** Collects the timeline from the engine's item, worker and metrics events. */
export class RunTimeline {
  private readonly t0: number;
  private readonly lanes: TimelineLane[] = [];
  /** The live lane of each worker process, by laneKey(host, pid) (a pid reused after its process exited gets a new lane). */
  private readonly laneOf = new Map<string, number>();
  /** The bar each worker process (laneKey) is on now, if any. */
  private readonly openOn = new Map<string, OpenBar>();
  private readonly bars: TimelineBar[] = [];
  private barsLeftOut = 0;
  private replayed = 0;
  private readonly tiles = new Buckets('sum', TIMELINE_LIMITS.firstBucketMs, TIMELINE_LIMITS.buckets);
  private readonly inFlight = new Buckets('max', TIMELINE_LIMITS.firstBucketMs, TIMELINE_LIMITS.buckets);

  constructor(private readonly now: () => number = () => performance.now()) {
    this.t0 = now();
  }

  private elapsed(): number {
    return Math.max(0, Math.round(this.now() - this.t0));
  }

  private lane(pid: number, host: string | undefined, t: number): number {
    const key = laneKey(pid, host);
    const known = this.laneOf.get(key);
    if (known !== undefined && this.lanes[known]!.exited_ms === null) return known;
    this.lanes.push({ pid, ...(host !== undefined && { host }), spawned_ms: t, exited_ms: null, bars: 0, busy_ms: 0 });
    this.laneOf.set(key, this.lanes.length - 1);
    return this.lanes.length - 1;
  }

  /** A worker process of this machine (worker events are local: no host). */
  onWorker(e: TimelineWorkerEvent): void {
    const t = this.elapsed();
    if (e.type === 'spawn') {
      this.lane(e.pid, undefined, t);
      return;
    }
    const key = laneKey(e.pid, undefined);
    const idx = this.laneOf.get(key);
    if (idx === undefined) return;
    Object.assign(this.lanes[idx]!, { exited_ms: t, exit: { code: e.code, signal: e.signal } });
    // Its bar ends here; the attempt's outcome comes as an item event (retried or failed: the process died with it).
    const open = this.openOn.get(key);
    if (open !== undefined) open.end ??= t;
  }

  onItem(e: TimelineItemEvent): void {
    const t = this.elapsed();
    if (e.type === 'started' || e.type === 'joined') {
      const key = laneKey(e.pid, e.host);
      const previous = this.openOn.get(key);
      // A worker that moves on to another slide has done its part of the one it was on.
      if (previous !== undefined) this.close(key, previous, previous.end ?? t, 'ok');
      this.openOn.set(key, { lane: this.lane(e.pid, e.host, t), slide: e.key, attempt: e.attempt, join: e.type === 'joined', start: t, end: undefined });
    } else if (e.type === 'retry' || e.type === 'failed' || e.type === 'done') {
      const outcome: BarOutcome = e.type === 'retry' ? 'retried' : e.type === 'failed' ? 'failed' : 'ok';
      for (const [key, bar] of this.openOn) if (bar.slide === e.key) this.close(key, bar, bar.end ?? t, outcome);
    } else if (e.type === 'replayed') {
      this.replayed++;
    }
  }

  /** `n` more tiles embedded now. */
  onTiles(n: number): void {
    this.tiles.add(this.elapsed(), n);
  }

  /** A metrics snapshot's count of tiles in memory. */
  onTilesInUse(inUse: number): void {
    this.inFlight.add(this.elapsed(), inUse);
  }

  private close(key: string, bar: OpenBar, end: number, outcome: BarOutcome): void {
    this.openOn.delete(key);
    const lane = this.lanes[bar.lane]!;
    // A process that exited on an attempt that then failed or was retried died with it (one let go once its part
    // of a slide was done, or at the run's end, did not).
    if (lane.exit !== undefined && bar.end !== undefined && (outcome === 'retried' || outcome === 'failed')) lane.exit.during = bar.slide;
    lane.bars++;
    lane.busy_ms += end - bar.start;
    const marked = outcome !== 'ok' || bar.join;
    const room = this.bars.length < TIMELINE_LIMITS.bars || (marked && this.bars.length < TIMELINE_LIMITS.bars + TIMELINE_LIMITS.markedBars);
    if (!room) {
      this.barsLeftOut++;
      return;
    }
    this.bars.push({ lane: bar.lane, slide: bar.slide, attempt: bar.attempt, join: bar.join, start_ms: bar.start, end_ms: end, outcome });
  }

  /** The timeline for the report; bars still open (the run stopped) end now, as 'running'. */
  report(): TimelineReport {
    const t = this.elapsed();
    for (const [key, bar] of [...this.openOn]) this.close(key, bar, bar.end ?? t, 'running');
    this.bars.sort((a, b) => a.lane - b.lane || a.start_ms - b.start_ms);
    const rows = this.bars.map((b): TimelineBarRow => [b.lane, b.slide, b.attempt, b.join ? 1 : 0, b.start_ms, b.end_ms, b.outcome]);
    return { end_ms: t, lanes: this.lanes, bar_fields: BAR_FIELDS, bars: rows, bars_left_out: this.barsLeftOut, replayed: this.replayed, tiles: this.tiles.series(), tiles_in_flight: this.inFlight.series() };
  }
}

/** A worker process's identity in the timeline: its host (none: this machine) and pid. */
function laneKey(pid: number, host: string | undefined): string {
  return host === undefined ? String(pid) : `${host}\u0000${pid}`;
}
