/**
 * Progress display: on a terminal an overall bar plus one bar per slide in progress (tiles/s, ETA),
 * drawn by cli-progress; otherwise one plain line per finished slide (log-friendly). With --queue the overall bar
 * (or, in lines, a `queue: ...` line each time they change) shows this run's jobs as the queue counts them
 * (queue-progress.ts), and the per-slide bars follow the jobs' progress on whichever machine runs them.
 */
import type { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import type { QueueCounts } from '../../engine/queue/counts.js';
import { countsText, finishedOf } from './queue-progress.js';

export type ProgressMode = 'bars' | 'lines' | 'none';

export interface Progress {
  slideStarted(imageId: string): void;
  /** The number of kept tiles became known (after tile selection). */
  slideTotal(imageId: string, tiles: number): void;
  /** `n` more tiles of this slide were embedded. */
  slideTiles(imageId: string, n: number): void;
  slideDone(imageId: string, tiles: number, seconds: number, resumed: boolean): void;
  slideFailed(imageId: string, error: string): void;
  /** --queue: this run's jobs as the queue holds them (every refresh, then once more with `final`). */
  queueCounts(counts: QueueCounts): void;
  stop(): void;
}

const FORMAT = ' {bar} {percentage}% | {value}/{total} {unit} | {rate}/s | ETA {eta_formatted} | {name}';

class BarsProgress implements Progress {
  private readonly multibar: cliProgress.MultiBar;
  private readonly overall: cliProgress.SingleBar;
  private readonly bars = new Map<string, { bar: cliProgress.SingleBar; value: number; started: number }>();
  private done = 0;
  private readonly started = Date.now();
  private tilesDone = 0;
  /** Set once the queue's counts came: the overall bar follows them, not the slides seen here. */
  private fromQueue = false;

  /** `stream`: where to draw (default stderr, a terminal; tests pass one and draw to it although it is not). */
  constructor(totalSlides: number, stream?: Writable) {
    this.multibar = new cliProgress.MultiBar(
      { format: FORMAT, hideCursor: true, clearOnComplete: false, stopOnComplete: false, etaBuffer: 50, fps: 5, ...(stream !== undefined && { stream: stream as NodeJS.WriteStream, noTTYOutput: true }) },
      cliProgress.Presets.shades_grey,
    );
    this.overall = this.multibar.create(totalSlides, 0, { name: 'all slides', unit: 'slides', rate: '0.0' });
  }

  queueCounts(c: QueueCounts): void {
    this.fromQueue = true;
    this.overall.update(finishedOf(c), { name: countsText(c) });
  }

  slideStarted(imageId: string): void {
    const retried = this.bars.get(imageId);
    if (retried) {
      // A new attempt after a worker crash: the first attempt's tiles were discarded, count afresh.
      this.tilesDone -= retried.value;
      retried.value = 0;
      retried.started = Date.now();
      retried.bar.update(0);
      return;
    }
    const bar = this.multibar.create(1, 0, { name: imageId, unit: 'tiles', rate: '0.0' });
    this.bars.set(imageId, { bar, value: 0, started: Date.now() });
  }

  slideTotal(imageId: string, tiles: number): void {
    this.bars.get(imageId)?.bar.setTotal(Math.max(1, tiles));
  }

  slideTiles(imageId: string, n: number): void {
    const entry = this.bars.get(imageId);
    this.tilesDone += n;
    if (!entry) return;
    entry.value += n;
    const rate = entry.value / Math.max(0.001, (Date.now() - entry.started) / 1000);
    entry.bar.update(entry.value, { rate: rate.toFixed(1) });
  }

  private finish(imageId: string, line: string): void {
    const entry = this.bars.get(imageId);
    if (entry) {
      this.multibar.remove(entry.bar);
      this.bars.delete(imageId);
    }
    this.done += 1;
    const rate = this.tilesDone / Math.max(0.001, (Date.now() - this.started) / 1000);
    if (this.fromQueue) this.overall.update({ rate: `${rate.toFixed(1)} tiles` });
    else this.overall.update(this.done, { rate: `${rate.toFixed(1)} tiles` });
    this.multibar.log(`${line}\n`);
  }

  slideDone(imageId: string, tiles: number, seconds: number, resumed: boolean): void {
    this.finish(imageId, `ok     ${imageId}: ${tiles} tiles${resumed ? ' (from checkpoint)' : ` in ${seconds.toFixed(1)} s`}`);
  }

  slideFailed(imageId: string, error: string): void {
    this.finish(imageId, `FAILED ${imageId}: ${error}`);
  }

  stop(): void {
    this.multibar.stop();
  }
}

class LinesProgress implements Progress {
  private done = 0;
  private lastCounts = '';
  constructor(private readonly totalSlides: number, private readonly write: (line: string) => void) {}
  /** A line when the counts changed (at most one per refresh of them); the last one is the final state. */
  queueCounts(c: QueueCounts): void {
    const line = countsText(c);
    if (line === this.lastCounts) return;
    this.lastCounts = line;
    this.write(`${line} [${finishedOf(c)}/${this.totalSlides}]`);
  }
  slideStarted(): void {}
  slideTotal(): void {}
  slideTiles(): void {}
  slideDone(imageId: string, tiles: number, seconds: number, resumed: boolean): void {
    this.done += 1;
    this.write(`[${this.done}/${this.totalSlides}] ok ${imageId}: ${tiles} tiles${resumed ? ' (from checkpoint)' : ` in ${seconds.toFixed(1)} s`}`);
  }
  slideFailed(imageId: string, error: string): void {
    this.done += 1;
    this.write(`[${this.done}/${this.totalSlides}] FAILED ${imageId}: ${error}`);
  }
  stop(): void {}
}

/** Creates the display for `mode` ('auto': bars when stdout is a terminal). */
export function createProgress(mode: ProgressMode | 'auto', totalSlides: number, write: (line: string) => void = (l) => console.log(l), barsStream?: Writable): Progress {
  const resolved = mode === 'auto' ? (process.stdout.isTTY ? 'bars' : 'lines') : mode;
  if (resolved === 'bars') return new BarsProgress(totalSlides, barsStream);
  if (resolved === 'lines') return new LinesProgress(totalSlides, write);
  return new LinesProgress(totalSlides, () => undefined);
}
