/**
 * What the run report collects while the graph runs: each slide's status and tile selection, the pictures
 * for report.html, the patients dropped, the shards written; it also drives the progress display. Fed by the
 * pipeline's hooks (`hooks`) and the graph's item events (`onItem`).
 */
import type { ItemEvent } from '../../engine/index.js';
import type { PipelineHooks } from '../../graph.js';
import type { CsvRow, SlideResult, SlideSummary } from '../types.js';
import type { WriteSummary } from '../write-tfrecords.js';
import { failureCode, slidePicture, type RunReport, type SlidePictures, type SlideReport } from '../report/report.js';
import type { Progress } from './progress.js';

/** The error of a slide the run never finished (interrupted, or stopped by another failure). */
export const NOT_PROCESSED = 'not processed';

export class RunRecord {
  readonly slides: Map<string, SlideReport>;
  readonly pictures: SlidePictures = new Map();
  readonly dropped: RunReport['patients']['dropped'] = [];
  written: WriteSummary | undefined;
  readonly hooks: PipelineHooks;

  constructor(
    private readonly rows: readonly CsvRow[],
    private readonly tileSize: number,
    readonly progress: Progress,
  ) {
    this.slides = new Map(
      rows.map((r) => [r.image_id, { image_id: r.image_id, patient_id: r.patient_id, status: 'failed', error: NOT_PROCESSED, width: null, height: null, tiles_total: null, tiles_kept: null, seconds: null }]),
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
    Object.assign(r, { width: s.width, height: s.height, tiles_total: s.tiles_total, tiles_kept: s.tiles_kept, backend: s.backend, levels: s.levels, thumbnail_level: s.thumbnailLevel });
    // Shrunk now, while the other slides run; a failure surfaces when the report is written.
    const picture = slidePicture({ width: s.width, height: s.height, positions: s.positions, thumbnailPng: s.thumbnailPng, maskPng: s.maskPng, tileSize: this.tileSize });
    picture.catch(() => undefined);
    this.pictures.set(s.image_id, picture);
  }

  /** A fan-out item event: slide started, joined, progressed, done, replayed from its checkpoint, or failed. */
  onItem(e: ItemEvent): void {
    const r = this.slides.get(e.key);
    if (!r) return;
    if (e.type === 'started') {
      this.progress.slideStarted(e.key);
      r.workers = 1;
    } else if (e.type === 'joined') r.workers = (r.workers ?? 1) + 1;
    else if (e.type === 'progress') {
      // Results stream in while the slide is processed: the summary first (tiles to come), then the embeddings, a group of tiles at a time.
      const value = e.value as SlideResult;
      if (value.kind === 'summary') this.progress.slideTotal(e.key, value.tiles_kept);
      else if (value.kind === 'embeddings') this.progress.slideTiles(e.key, value.x.length);
    } else if (e.type === 'done' || e.type === 'replayed') {
      Object.assign(r, { status: 'ok', error: null, seconds: e.type === 'done' ? e.durationMs / 1000 : 0, resumed: e.type === 'replayed' });
      this.progress.slideDone(e.key, r.tiles_kept ?? 0, r.seconds ?? 0, e.type === 'replayed');
    } else if (e.type === 'failed') {
      Object.assign(r, { status: 'failed', error: e.error.message, code: failureCode(e.error) });
      this.progress.slideFailed(e.key, e.error.message);
    }
  }

  failed(): SlideReport[] {
    return [...this.slides.values()].filter((s) => s.status === 'failed');
  }

  tilesWritten(): number {
    return [...this.slides.values()].reduce((n, s) => n + (s.status === 'ok' ? s.tiles_kept ?? 0 : 0), 0);
  }
}
