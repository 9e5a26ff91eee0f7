/**
 * Progress display: on a terminal an overall bar plus one bar per slide in progress (tiles/s, ETA),
 * drawn by cli-progress; otherwise one plain line per finished slide (log-friendly).
 */
import cliProgress from 'cli-progress';

export type ProgressMode = 'bars' | 'lines' | 'none';

export interface Progress {
  slideStarted(imageId: string): void;
  /** The number of kept tiles became known (after tile selection). */
  slideTotal(imageId: string, tiles: number): void;
  /** `n` more tiles of this slide were embedded. */
  slideTiles(imageId: string, n: number): void;
  slideDone(imageId: string, tiles: number, seconds: number, resumed: boolean): void;
  slideFailed(imageId: string, error: string): void;
  stop(): void;
}

const FORMAT = ' {bar} {percentage}% | {value}/{total} {unit} | {rate}/s | ETA {eta_formatted} | {name}';

class BarsProgress implements Progress {
  private readonly multibar = new cliProgress.MultiBar(
    { format: FORMAT, hideCursor: true, clearOnComplete: false, stopOnComplete: false, etaBuffer: 50, fps: 5 },
    cliProgress.Presets.shades_grey,
  );
  private readonly overall: cliProgress.SingleBar;
  private readonly bars = new Map<string, { bar: cliProgress.SingleBar; value: number; started: number }>();
  private done = 0;
  private readonly started = Date.now();
  private tilesDone = 0;

  constructor(totalSlides: number) {
    this.overall = this.multibar.create(totalSlides, 0, { name: 'all slides', unit: 'slides', rate: '0.0' });
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
    this.overall.update(this.done, { rate: `${rate.toFixed(1)} tiles` });
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
  constructor(private readonly totalSlides: number, private readonly write: (line: string) => void) {}
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
export function createProgress(mode: ProgressMode | 'auto', totalSlides: number, write: (line: string) => void = (l) => console.log(l)): Progress {
  const resolved = mode === 'auto' ? (process.stdout.isTTY ? 'bars' : 'lines') : mode;
  if (resolved === 'bars') return new BarsProgress(totalSlides);
  if (resolved === 'lines') return new LinesProgress(totalSlides, write);
  return new LinesProgress(totalSlides, () => undefined);
}
