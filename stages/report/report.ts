/**
 * The run report: `report.json` (machine-readable) and `report.html` (per slide: thumbnail, background
 * mask and kept-tile grid; per stage: timings). Both are written atomically (temp file, fsync, then rename).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { naming, writeDurable } from '../dataset/io.js';
import type { FailureGroup } from './failures.js';
import { formatCell } from './slide-format.js';
import { slideFigure, writePictureFiles, type SlidePicture, type SlidePictures } from './figures.js';
import type { TimelineReport } from './timeline.js';
import { runCharts } from './run-charts.js';
import { precisionSection } from './precision-section.js';

export { slidePicture, type SlidePicture, type SlidePictureInput, type SlidePictures } from './figures.js';

export interface SlideReport {
  image_id: string;
  patient_id: string;
  status: 'ok' | 'failed';
  error: string | null;
  width: number | null;
  height: number | null;
  tiles_total: number | null;
  tiles_kept: number | null;
  seconds: number | null;
  /** Extra facts, for reading the report: reader backend, pyramid levels, thumbnail level, resumed or not. */
  backend?: string;
  levels?: readonly number[];
  thumbnail_level?: number;
  /** Format facts (SlideSummary's, stages/types.ts): file format, tile level, stated scale (µm/px at level 0, objective power, where from), --allow-non-rgb mapping. */
  format?: string;
  tile_level?: number;
  mpp_x?: number;
  mpp_y?: number;
  magnification?: number;
  scale_source?: string;
  channel_mapping?: string;
  resumed?: boolean;
  /** Worker processes that read the slide's tiles: more than 1 when idle workers joined it (--no-share: always 1). */
  workers?: number;
  /** The error's code (the slide's own, e.g. E_SLIDE_MISSING; E_NOT_PROCESSED when the run stopped first); `error` is then its short message. */
  code?: string;
  /** Attempts the slide took (more than 1 when its worker process died and it was retried). */
  attempts?: number;
  /** With --queue: the machine that processed the slide (its last attempt), and how often its job was found stalled (a machine lost). */
  host?: string;
  stalls?: number;
  /** Why each attempt before the last one failed. */
  failed_attempts?: Array<{ attempt: number; code: string; error: string }>;
  /** Lines the worker process printed on stderr while it ran the slide (decoder warnings...): a count and the first few. */
  warnings?: { count: number; first: string[] };
}

export interface StageReport {
  name: string;
  elements_in: number;
  elements_out: number;
  busy_ms: number;
  blocked_ms: number;
  max_queue_depth: number;
  /** Elements out per second of busy time. */
  throughput_per_s: number;
}

export interface RunReport {
  started_at: string;
  elapsed_s: number;
  exit_code: number;
  params: Record<string, unknown>;
  models: Record<string, { path: string; sha256: string; weights: string }>;
  slides: SlideReport[];
  patients: { written: number; dropped: Array<{ patient_id: string; reason: string }> };
  shards: Array<{ file: string; records: number; bytes: number }>;
  stages: StageReport[];
  peak_rss_mb: number;
  max_tiles_in_flight: number;
  tile_budget: number;
  tiles_written: number;
  /** Failed slides by code, the largest group first, each with its first few failures in full. */
  failures?: FailureGroup[];
  /** Warnings about the run's options (e.g. more workers than cores), also printed when the run started. */
  warnings?: string[];
  /** Which worker ran which slide when, and tiles over time, bounded for big runs (timeline.ts). */
  timeline?: TimelineReport;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Caps that keep report.html usable for big runs (report.json always lists every slide). */
export const HTML_LIMITS = { slideRows: 500, figures: 100, dropped: 200 } as const;

/**
 * How much a slide needs looking at: 0 retried or its worker printed messages (nothing else says so), 1 failed
 * (not merely left unprocessed; the failures are also summarised by code), 2 the rest.
 */
function lookRank(s: SlideReport): number {
  if ((s.failed_attempts?.length ?? 0) > 0 || s.warnings !== undefined) return 0;
  return s.status === 'failed' && s.code !== 'E_NOT_PROCESSED' ? 1 : 2;
}

/** The slides to list or draw, at most `limit`: those that need looking at most first, each rank in report order. */
function firstSlides(slides: readonly SlideReport[], limit: number, keep: (s: SlideReport) => boolean = () => true): SlideReport[] {
  const out: SlideReport[] = [];
  for (let rank = 0; rank <= 2 && out.length < limit; rank++) {
    for (const s of slides) {
      if (out.length >= limit) break;
      if (lookRank(s) === rank && keep(s)) out.push(s);
    }
  }
  return out;
}

/** A slide's notes: failed attempts before the last one, and what its worker printed. */
function slideNotes(s: SlideReport): string {
  const notes: string[] = [];
  if (s.code !== undefined) notes.push(`${s.code}: ${s.error ?? ''}`);
  else if (s.error) notes.push(s.error);
  for (const a of s.failed_attempts ?? []) notes.push(`attempt ${a.attempt} failed: ${a.code}: ${a.error}`);
  if (s.warnings !== undefined) notes.push(`${s.warnings.count} worker message(s): ${s.warnings.first.join(' | ')}`);
  return escapeHtml(notes.join('; '));
}

function slideRows(report: RunReport): string {
  const shown = firstSlides(report.slides, HTML_LIMITS.slideRows);
  const rows = shown.map(
    (s) => `<tr class="${s.status}"><td>${escapeHtml(s.image_id)}</td><td>${escapeHtml(s.patient_id)}</td><td>${s.status}${s.warnings ? ' (messages)' : ''}</td>` +
      `<td>${s.width ?? ''}&times;${s.height ?? ''}</td><td>${formatCell(s, escapeHtml)}</td><td>${s.tiles_kept ?? ''} / ${s.tiles_total ?? ''}</td>` +
      `<td>${s.seconds?.toFixed(1) ?? ''}</td><td>${s.workers ?? ''}</td><td>${s.attempts ?? ''}</td><td>${slideNotes(s)}</td></tr>`,
  );
  const more = report.slides.length - shown.length;
  const note = more > 0 ? `<p class="note">${more} more slide(s) not listed (the table shows ${shown.length}: those that need looking at first); report.json lists every slide.</p>` : '';
  return `<div class="scroll"><table><tr><th>image_id</th><th>patient</th><th>status</th><th>size</th><th>format</th><th>kept / grid</th><th>s</th><th>workers</th><th>attempts</th><th>error / notes</th></tr>
${rows.join('\n')}</table></div>
${note}`;
}

/** Failed slides by code: how many, and the first few in full. */
function failureSection(report: RunReport): string {
  const groups = report.failures ?? [];
  if (groups.length === 0) return '';
  const items = groups.map((g) => {
    const first = g.first.map((f) => `<li>${escapeHtml(f.image_id)} (patient ${escapeHtml(f.patient_id)}): ${escapeHtml(f.error)}</li>`).join('');
    const more = g.count > g.first.length ? `<li>... and ${g.count - g.first.length} more (report.json)</li>` : '';
    return `<h3>${escapeHtml(g.code)}: ${g.count} slide(s)</h3><ul>${first}${more}</ul>`;
  });
  return `<h2>Failed slides</h2>\n${items.join('\n')}`;
}

/** The figures report.html draws (at most HTML_LIMITS.figures, slides that need looking at first), each with its picture or why it has none. */
async function drawnFigures(report: RunReport, pictures: SlidePictures): Promise<Array<{ slide: SlideReport; picture: SlidePicture | undefined; error: string | undefined }>> {
  const drawn = firstSlides(report.slides, HTML_LIMITS.figures, (s) => pictures.has(s.image_id));
  const out: Array<{ slide: SlideReport; picture: SlidePicture | undefined; error: string | undefined }> = [];
  for (const slide of drawn) {
    // A picture that could not be made costs the report its figure, not the report.
    const picture = await pictures.get(slide.image_id)!.then((p) => ({ p, e: undefined }), (err: Error) => ({ p: undefined, e: err.message }));
    out.push({ slide, picture: picture.p, error: picture.e });
  }
  return out;
}

async function figureSection(report: RunReport, pictures: SlidePictures): Promise<string> {
  const drawn = await drawnFigures(report, pictures);
  const figures = drawn.map(({ slide, picture, error }) => {
    const caption = `${escapeHtml(slide.image_id)} &mdash; ${slide.tiles_kept} of ${slide.tiles_total} tiles kept`;
    const figure = picture !== undefined ? slideFigure(slide.image_id, caption, picture) : `<figcaption>${escapeHtml(slide.image_id)}: no picture (${escapeHtml(error ?? '')})</figcaption>`;
    return `<figure>${figure}</figure>`;
  });
  let withPicture = 0;
  for (const s of report.slides) if (pictures.has(s.image_id)) withPicture++;
  const more = withPicture - drawn.length;
  const note = more > 0 ? `<p class="note">${more} more slide(s) have a tile selection that is not drawn here (at most ${HTML_LIMITS.figures} figures; slides that need looking at first).</p>` : '';
  return `${figures.join('\n')}\n${note}`;
}

function droppedSection(report: RunReport): string {
  const all = report.patients.dropped;
  if (all.length === 0) return '';
  const items = all.slice(0, HTML_LIMITS.dropped).map((d) => `<li>${escapeHtml(d.patient_id)}: ${escapeHtml(d.reason)}</li>`).join('');
  const more = all.length > HTML_LIMITS.dropped ? `<li>... and ${all.length - HTML_LIMITS.dropped} more (report.json)</li>` : '';
  return `<h2>Dropped patients (${all.length})</h2><ul>${items}${more}</ul>`;
}

/**
 * The page's style: it reads at 1400 px and at phone width (~390 px): charts scale with the page (viewBox,
 * width 100%), tables and long words scroll or wrap inside their box instead of widening the page.
 */
const REPORT_CSS = `*{box-sizing:border-box}
body{font:14px system-ui,sans-serif;margin:0 auto;padding:1em 2em;color:#222;max-width:1400px;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;overflow-wrap:normal}
td:first-child,th:first-child{text-align:left}table.precision td{text-align:left;white-space:normal;overflow-wrap:anywhere}td,th{white-space:nowrap}td:last-child{text-align:left;min-width:16em;white-space:normal}tr.failed td{background:#fee}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top;max-width:100%}figcaption{font-size:12px}
svg.slide{border:1px solid #999;background:#fff;max-width:100%;height:auto}.note{color:#555;font-style:italic}
svg.chart{display:block;width:100%;height:auto;max-width:1100px;margin:.5em 0 1em}
svg.chart text{font:11px system-ui,sans-serif;fill:#333}svg.chart .axis{stroke:#666}svg.chart .grid{stroke:#e3e3e3}
svg.chart .life{stroke:#c4c8cf;stroke-width:2}svg.chart .killed{stroke:#d7263d;stroke-width:2.5;fill:none}
svg.chart .in-flight{stroke-width:1.5}svg.chart .budget{stroke-dasharray:4 3}
ul.legend{list-style:none;padding:0;margin:.3em 0;display:flex;flex-wrap:wrap;gap:.3em 1.2em;font-size:13px}
.swatch{display:inline-block;width:1.1em;height:.8em;margin-right:.35em;vertical-align:-.05em;border-radius:2px}
.swatch.life{height:3px;background:#c4c8cf;vertical-align:.2em}.swatch.killed{color:#d7263d;font-weight:bold;width:auto;height:auto}
.stages-chart{display:grid;grid-template-columns:minmax(6em,max-content) minmax(60px,1fr) max-content;gap:3px .6em;align-items:center;max-width:1100px;font-size:13px}
.stage-row{display:contents}svg.chart-bar{width:100%;height:12px;display:block;background:#f4f4f4}.stage-s{font-variant-numeric:tabular-nums;white-space:nowrap}
@media (max-width:600px){body{padding:.6em}svg.chart text{font-size:22px}td:last-child{min-width:10em}}`;

export async function renderHtml(report: RunReport, pictures: SlidePictures): Promise<string> {
  const stages = report.stages
    .map(
      (s) => `<tr><td>${escapeHtml(s.name)}</td><td>${s.elements_in}</td><td>${s.elements_out}</td><td>${(s.busy_ms / 1000).toFixed(2)}</td>` +
        `<td>${(s.blocked_ms / 1000).toFixed(2)}</td><td>${s.max_queue_depth}</td><td>${s.throughput_per_s.toFixed(1)}</td></tr>`,
    )
    .join('\n');
  const warnings = (report.warnings ?? []).map((w) => `<li>${escapeHtml(w)}</li>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WSI dataset run report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
${REPORT_CSS}
</style></head><body>
<h1>Run report</h1>
<p>Started ${escapeHtml(report.started_at)}; ${report.elapsed_s.toFixed(1)} s; exit code ${report.exit_code};
${report.tiles_written} tiles written for ${report.patients.written} patients; peak RSS (all processes) ${report.peak_rss_mb.toFixed(0)} MB;
max tiles in flight ${report.max_tiles_in_flight} (budget ${report.tile_budget}).</p>
${warnings ? `<h2>Warnings</h2><ul>${warnings}</ul>` : ''}
${failureSection(report)}
${precisionSection(report.params, escapeHtml)}
${runCharts(report)}
<h2>Slides (${report.slides.length})</h2>
${slideRows(report)}
${droppedSection(report)}
<h2>Stages</h2>
<div class="scroll"><table><tr><th>stage</th><th>in</th><th>out</th><th>busy s</th><th>blocked s</th><th>max queue</th><th>out/busy s</th></tr>
${stages}</table></div>
<h2>Tile selection</h2>
<p>Blue: background on the thumbnail; green: kept tiles.</p>
${await figureSection(report, pictures)}
</body></html>
`;
}

/** Arrays whose rows print one per line in report.json: slides, dropped patients, the timeline's lanes and bars. */
const ROW_ARRAYS = new Set(['slides', 'dropped', 'lanes', 'bars']);

/** Marks a row to print on one line in report.json (a NUL never occurs in the report's own text). */
const ROW = '\u0000';

/**
 * report.json's text: indented, except that each slide, dropped patient, timeline lane and bar is one line, and each timeline series one line (a run of 100,000
 * slides is then ~250 bytes per slide rather than ~600, and still one slide per line for grep and diff).
 */
export function reportJsonText(report: RunReport): string {
  const text = JSON.stringify(report, (key, value: unknown) => {
    if (!Array.isArray(value)) return value;
    if (ROW_ARRAYS.has(key)) return value.map((row) => ROW + JSON.stringify(row) + ROW);
    return key === 'values' ? ROW + JSON.stringify(value) + ROW : value; // a timeline series: one line
  }, 2);
  return text.replace(/"\\u0000(?:[^"\\]|\\.)*\\u0000"/g, (literal) => (JSON.parse(literal) as string).slice(1, -1)) + '\n';
}

/**
 * Writes report.json, report.html and the figures' pictures (report-files/, figures.ts) into `outDir`; returns the reports' paths. A file-system error is one E_OUTPUT_IO
 * line naming the path and the errno; no temporary file stays behind (stages/dataset/io.ts).
 */
export async function writeReport(outDir: string, report: RunReport, pictures: SlidePictures): Promise<{ json: string; html: string }> {
  await naming('create', outDir, () => mkdir(outDir, { recursive: true }));
  const json = join(outDir, 'report.json');
  const html = join(outDir, 'report.html');
  await writeDurable(json, reportJsonText(report));
  await writeDurable(html, await renderHtml(report, pictures));
  // The pictures last: report.json and report.html first take the space there is.
  await writePictureFiles(outDir, (await drawnFigures(report, pictures)).flatMap(({ slide, picture }) => (picture === undefined ? [] : [{ imageId: slide.image_id, picture }])));
  return { json, html };
}
