/**
 * Figure 4, memory: peak RSS of the job's whole process tree on one slide of 4k, 16k, 64k (100k with --full) px
 * (with the defaults both workers read it: the second joins the slide), the highest of --memory-repeat runs each;
 * and the ratio of the largest slide's peak to the 16k one's. results.svg plots these rows (bench/svg-plot.ts).
 */
import { join } from 'node:path';
import type { Figure } from './figure.js';
import { rectTissue, slide, writeCsv } from './inputs.js';
import { runJob, type JobResult } from './job.js';
import { SLIDES } from './options.js';
import { median, type BenchRecord } from './record.js';

export interface MemoryRow {
  side_px: number;
  tiles: number;
  /** The highest of the runs' peaks. */
  peak_rss_mb: number;
  peak_rss_runs_mb: number[];
  max_inflight_tiles: number;
  seconds: number;
}

/**
 * Same tile cap at every size: the 16k slide has ~460 kept tiles, so every run streams the same work and only the
 * slide size differs (thumbnail, selection, pyramid). 460 tiles fill the budget within seconds.
 */
const TILE_CAP = 460;
const DIR = join(SLIDES, 'memory');
const slideId = (side: number): string => `mem-${side}`;

/** The series on slides of `sides(full)` px (4k, 16k, 64k, and 100k with --full); 16384 must be one of them. */
export function memorySeriesFigure(sides = (full: boolean): number[] => [4096, 16384, 65536, ...(full ? [100000] : [])], cap = TILE_CAP): Figure {
  return {
    name: 'memory series',
    enabled: (opts) => opts.runs('memory'),
    async prepare({ opts }) {
      for (const n of sides(opts.full)) await slide(DIR, slideId(n), n, 7, rectTissue(n), false);
    },
    async measure({ opts, record }) {
      const memSides = sides(opts.full);
      // Each size memoryRepeat times, the sizes in turn (so the host's drift falls on all of them), keeping the highest
      // peak: sampled every 50 ms, one run can miss its true peak, and a low 16k peak alone moved the ratio by 0.1.
      const runs = new Map<number, JobResult[]>(memSides.map((n) => [n, []]));
      for (let r = 0; r < opts.memoryRepeat; r++) {
        for (const n of memSides) runs.get(n)!.push(await runJob(writeCsv([slideId(n)]), DIR, opts.jobArgs, ['--max-tiles', String(cap)]));
      }
      const rows = memSides.map((n) => memoryRow(record, n, runs.get(n)!));
      record.result.memory = rows;
      recordRatios(record, rows);
    },
  };
}

/** One slide size's row, shown as it is made. */
function memoryRow(record: BenchRecord, n: number, js: readonly JobResult[]): MemoryRow {
  const peaks = js.map((j) => j.peakRssMb);
  const row: MemoryRow = {
    side_px: n,
    tiles: js[0]!.tiles,
    peak_rss_mb: Math.max(...peaks),
    peak_rss_runs_mb: peaks,
    max_inflight_tiles: Math.max(...js.map((j) => j.maxInflight)),
    seconds: median(js.map((j) => j.wallS)),
  };
  record.show(`memory ${n} px (${row.tiles} tiles, 1 slide; the idle worker joins it)`, `peak RSS ${row.peak_rss_mb.toFixed(0)} MB (runs ${peaks.map((p) => p.toFixed(0)).join(' / ')}), max ${row.max_inflight_tiles} tiles in flight, ${row.seconds.toFixed(1)} s`);
  return row;
}

/** Peak RSS of the largest slide over the 16k one's (and of 64k, when the largest is another). */
function recordRatios(record: BenchRecord, rows: readonly MemoryRow[]): void {
  const { result, show } = record;
  const p16 = rows.find((r) => r.side_px === 16384)!.peak_rss_mb;
  const largest = rows[rows.length - 1]!;
  result.peak_rss_ratio = largest.peak_rss_mb / p16;
  show(`peak RSS ratio ${largest.side_px} / 16384`, (largest.peak_rss_mb / p16).toFixed(2));
  const p64 = rows.find((r) => r.side_px === 65536);
  if (largest.side_px !== 65536 && p64 !== undefined) {
    result.peak_rss_ratio_64k = p64.peak_rss_mb / p16;
    show('peak RSS ratio 65536 / 16384', (p64.peak_rss_mb / p16).toFixed(2));
  }
}
