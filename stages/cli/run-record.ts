/**
 * What the run report collects while the graph runs: each slide's status and tile selection, the pictures
 * for report.html, the patients dropped, the shards written; it also drives the progress display. Fed by the
 * pipeline's hooks (`hooks`) and the graph's item events (`onItem`).
 */
import type { ItemEvent, WorkerEvent } from '../../engine/index.js';
import type { PipelineHooks } from '../../graph.js';
import type { CsvRow, SlideResult, SlideSummary } from '../types.js';
import type { WriteSummary } from '../write-tfrecords.js';
import { slidePicture, type RunReport, type SlidePictures, type SlideReport } from '../report/report.js';
import { errorFacts, FIRST_FAILURES, FIRST_MESSAGES, groupFailures, PRINTED_MESSAGES, type FailureGroup } from '../report/failures.js';
import type { Progress } from './progress.js';
import { RunTimeline } from '../report/timeline.js';

/** The error of a slide the run never finished (interrupted, or stopped by another failure). */
export const NOT_PROCESSED = 'not processed';
export const E_NOT_PROCESSED = 'E_NOT_PROCESSED';

export class RunRecord {
  readonly slides: Map<string, SlideReport>;
  readonly pictures: SlidePictures = new Map();
  readonly dropped: RunReport['patients']['dropped'] = [];
  written: WriteSummary | undefined;
  readonly hooks: PipelineHooks;
  /** Which worker ran which slide when, tiles over time (report.json's `timeline`, report.html's charts). */
  readonly timeline = new RunTimeline();
  /** The full error message of the first few failures of each code (the slides keep a short one). */
  private readonly fullErrors = new Map<string, string>();
  private readonly fullPerCode = new Map<string, number>();
  /** Per code, the trailing note of its first failure's message (see withoutCommonNote). */
  private readonly notes = new Map<string, string>();
  /** The slide each worker process runs (or last ran), from the 'started' and 'joined' events: whom its stderr lines are about. */
  private readonly runningOn = new Map<number, string>();
  /** Tiles each slide on another machine had done at its last progress (--queue: progress comes as totals). */
  private readonly remoteTiles = new Map<string, number>();

  constructor(
    private readonly rows: readonly CsvRow[],
    private readonly tileSize: number,
    readonly progress: Progress,
  ) {
    this.slides = new Map(
      rows.map((r) => [r.image_id, { image_id: r.image_id, patient_id: r.patient_id, status: 'failed', error: NOT_PROCESSED, code: E_NOT_PROCESSED, width: null, height: null, tiles_total: null, tiles_kept: null, seconds: null }]),
    );
    this.hooks = {
      onSummary: (s) => this.onSummary(s),
      onDropped: (patient_id, reason) => {
        const failedSlides = this.rows.filter((r) => r.patient_id === patient_id && this.slides.get(r.image_id)?.status === 'failed');
        this.dropped.push({ patient_id, reason: failedSlides.length > 0 ? `${reason}: slide(s) failed: ${failedSlides.map((r) => r.image_id).join(', ')}` : `${reason}: no tissue tiles` });
      },
      onWritten: (summary) => {
        this.written = summary;
      },
    };
  }

  private onSummary(s: SlideSummary): void {
    const r = this.slides.get(s.image_id)!;
    Object.assign(r, { width: s.width, height: s.height, tiles_total: s.tiles_total, tiles_kept: s.tiles_kept, backend: s.backend, levels: s.levels, thumbnail_level: s.thumbnailLevel, ...formatFacts(s) });
    if (s.channelMapping !== undefined) console.error(`slide ${s.image_id}: not brightfield, processed under --allow-non-rgb: ${s.channelMapping}`);
    // Shrunk now, while the other slides run; a failure surfaces when the report is written.
    const picture = slidePicture({ width: s.width, height: s.height, positions: s.positions, thumbnailPng: s.thumbnailPng, maskPng: s.maskPng, tileSize: this.tileSize });
    picture.catch(() => undefined);
    this.pictures.set(s.image_id, picture);
  }

  /** A fan-out item event: slide started, joined, progressed, done, replayed from its checkpoint, or failed. */
  onItem(e: ItemEvent): void {
    const r = this.slides.get(e.key);
    if (!r) return;
    this.timeline.onItem(e);
    if (e.type === 'started') {
      this.progress.slideStarted(e.key);
      r.workers = 1;
      r.attempts = e.attempt;
      this.remoteTiles.delete(e.key); // a new attempt counts afresh
      if (e.host !== undefined) r.host = e.host;
      else this.runningOn.set(e.pid, e.key); // another machine's pid names none of this machine's processes
    } else if (e.type === 'joined') {
      r.workers = (r.workers ?? 1) + 1;
      this.runningOn.set(e.pid, e.key);
    } else if (e.type === 'retry') {
      // The job retries only attempts whose worker process died (errorRetries 0): the engine's error has no code then.
      const f = errorFacts(e.error, 'E_WORKER_CRASH');
      (r.failed_attempts ??= []).push({ attempt: e.attempt, code: f.code, error: f.message });
    } else if (e.type === 'progress') {
      // Results stream in while the slide is processed: the summary first (tiles to come), then the embeddings, a group of tiles at a time.
      const value = e.value as SlideResult;
      if (value.kind === 'summary') this.progress.slideTotal(e.key, value.tiles_kept);
      else if (value.kind === 'embeddings') {
        this.progress.slideTiles(e.key, value.x.length);
        this.timeline.onTiles(value.x.length);
      }
    } else if (e.type === 'remote-progress') {
      // A slide on another machine (--queue): its job's progress, cumulative.
      if (e.total !== undefined) this.progress.slideTotal(e.key, e.total);
      const seen = this.remoteTiles.get(e.key) ?? 0;
      if (e.tiles > seen) {
        this.progress.slideTiles(e.key, e.tiles - seen);
        this.timeline.onTiles(e.tiles - seen);
      }
      this.remoteTiles.set(e.key, e.tiles);
    } else if (e.type === 'done' || e.type === 'replayed') {
      if (e.type === 'done') queueFacts(r, e);
      Object.assign(r, { status: 'ok', error: null, seconds: e.type === 'done' ? e.durationMs / 1000 : 0, resumed: e.type === 'replayed' });
      delete r.code;
      this.progress.slideDone(e.key, r.tiles_kept ?? 0, r.seconds ?? 0, e.type === 'replayed');
    } else if (e.type === 'failed') {
      queueFacts(r, e);
      const f = errorFacts(e.error);
      Object.assign(r, { status: 'failed', error: this.withoutCommonNote(f.code, f.message), code: f.code });
      const stored = this.fullPerCode.get(f.code) ?? 0;
      if (stored < FIRST_FAILURES) {
        this.fullPerCode.set(f.code, stored + 1);
        this.fullErrors.set(e.key, f.full);
      }
      this.progress.slideFailed(e.key, `${f.code}: ${f.message}`);
    }
  }

  /** A worker process taken into the run or gone (the timeline's lanes). */
  onWorker(e: WorkerEvent): void {
    this.timeline.onWorker(e);
  }

  /**
   * A line a worker process printed on stderr (libvips or another library's warning, say): counted for the slide
   * that worker runs and printed naming it (the first few per slide; all are counted in report.json).
   */
  onWorkerLine(pid: number, line: string): void {
    const key = this.runningOn.get(pid);
    const r = key === undefined ? undefined : this.slides.get(key);
    if (r === undefined) {
      console.error(`worker ${pid}: ${line}`);
      return;
    }
    const w = (r.warnings ??= { count: 0, first: [] });
    w.count++;
    if (w.first.length < FIRST_MESSAGES) w.first.push(line);
    if (w.count <= PRINTED_MESSAGES) console.error(`slide ${r.image_id} (worker ${pid}): ${line}`);
    else if (w.count === PRINTED_MESSAGES + 1) console.error(`slide ${r.image_id} (worker ${pid}): more messages; counted in report.json`);
  }

  /**
   * A short message without its trailing parenthesised note when that note is the one the code's first failure had
   * (e.g. the extensions tried for a missing slide): said once, in report.json's `failures`, not once per slide.
   */
  private withoutCommonNote(code: string, message: string): string {
    const m = /^(.*\S) (\([^()]{30,}\))$/.exec(message);
    if (m === null) return message;
    const first = this.notes.get(code);
    if (first === undefined) this.notes.set(code, m[2]!);
    return first === undefined || first === m[2] ? m[1]! : message;
  }

  /** Failed slides by code, the first few of each in full. */
  failureGroups(): FailureGroup[] {
    return groupFailures(this.slides.values(), this.fullErrors);
  }

  failed(): SlideReport[] {
    return [...this.slides.values()].filter((s) => s.status === 'failed');
  }

  tilesWritten(): number {
    return [...this.slides.values()].reduce((n, s) => n + (s.status === 'ok' ? s.tiles_kept ?? 0 : 0), 0);
  }
}

/** The summary's format facts as report.json fields (only those the slide has). */
function formatFacts(s: SlideSummary): Partial<SlideReport> {
  return {
    format: s.format,
    tile_level: s.tileLevel,
    ...(s.mppX !== undefined && { mpp_x: s.mppX }),
    ...(s.mppY !== undefined && { mpp_y: s.mppY }),
    ...(s.magnification !== undefined && { magnification: s.magnification }),
    ...(s.scaleSource !== undefined && { scale_source: s.scaleSource }),
    ...(s.channelMapping !== undefined && { channel_mapping: s.channelMapping }),
  };
}

/** With --queue: the machine that ran the slide, its attempts and stalls. */
function queueFacts(r: SlideReport, e: { readonly attempt: number; readonly host?: string; readonly stalls?: number }): void {
  if (e.host === undefined) return;
  r.host = e.host;
  r.stalls = e.stalls ?? 0;
  if (e.attempt > 0) r.attempts = e.attempt;
}
