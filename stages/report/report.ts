/**
 * The run report: `report.json` (machine-readable) and `report.html` (per slide: thumbnail, background
 * mask and kept-tile grid; per stage: timings). Both are written atomically (temp file, fsync, then rename).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import type { SlideSummary } from '../types.js';
import { naming, writeDurable } from '../dataset/io.js';
import type { FailureGroup } from './failures.js';

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
}

/** What a slide's figure is drawn from: its summary's PNGs and kept-tile positions. */
export type SlidePictureInput = Pick<SlideSummary, 'width' | 'height' | 'positions' | 'thumbnailPng' | 'maskPng'> & { tileSize: number };

/** A slide's figure, ready to draw: small data-URI pictures (about 360 px wide) and the kept-tile positions. */
export interface SlidePicture {
  readonly width: number;
  readonly height: number;
  readonly positions: SlideSummary['positions'];
  readonly tileSize: number;
  readonly thumbUri: string;
  readonly maskUri: string;
}

/**
 * Pictures for report.html, keyed by image_id. Each is prepared (slidePicture) as its slide's summary arrives,
 * during the run, so that the report does not encode hundreds of pictures one after another at the end.
 */
export type SlidePictures = Map<string, Promise<SlidePicture>>;

const PICTURE_WIDTH = 360;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function smallPngDataUri(png: Uint8Array, width: number): Promise<string> {
  const small = await sharp(png).resize({ width, withoutEnlargement: true }).png().toBuffer();
  return `data:image/png;base64,${small.toString('base64')}`;
}

/**
 * The background mask (grey PNG, 255 = background) as a blue picture, transparent where there is tissue.
 * (Drawn as the grey mask itself, background was white over an off-white thumbnail: invisible.)
 */
async function blueMaskPng(maskPng: Uint8Array): Promise<Uint8Array> {
  const { data, info } = await sharp(maskPng).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  const rgba = Buffer.alloc(info.width * info.height * 4);
  for (let p = 0; p < info.width * info.height; p++) {
    rgba[p * 4 + 1] = 90;
    rgba[p * 4 + 2] = 255;
    rgba[p * 4 + 3] = data[p]! > 127 ? 255 : 0;
  }
  return sharp(rgba, { raw: { width: info.width, height: info.height, channels: 4 } }).png().toBuffer();
}

/** Shrinks a slide's thumbnail and mask for its figure (the full-size PNGs are not kept). */
export async function slidePicture(p: SlidePictureInput): Promise<SlidePicture> {
  const [thumbUri, maskUri] = await Promise.all([smallPngDataUri(p.thumbnailPng, PICTURE_WIDTH), blueMaskPng(p.maskPng).then((png) => smallPngDataUri(png, PICTURE_WIDTH))]);
  return { width: p.width, height: p.height, positions: p.positions, tileSize: p.tileSize, thumbUri, maskUri };
}

/** One slide's figure: thumbnail, mask drawn in translucent blue, kept tiles outlined in green. */
function slideFigure(slide: SlideReport, picture: SlidePicture): string {
  const thumb = picture.thumbUri;
  const mask = picture.maskUri;
  const rects = picture.positions
    .map(([x, y]) => `<rect x="${x}" y="${y}" width="${picture.tileSize}" height="${picture.tileSize}"/>`)
    .join('');
  const viewBox = `0 0 ${picture.width} ${picture.height}`;
  return `<svg class="slide" viewBox="${viewBox}" width="${PICTURE_WIDTH}" preserveAspectRatio="xMinYMin meet">
  <image href="${thumb}" x="0" y="0" width="${picture.width}" height="${picture.height}" preserveAspectRatio="none"/>
  <image href="${mask}" x="0" y="0" width="${picture.width}" height="${picture.height}" preserveAspectRatio="none" opacity="0.3"/>
  <g fill="none" stroke="#0a0" stroke-width="${Math.max(2, picture.width / 400)}">${rects}</g>
</svg>
<figcaption>${escapeHtml(slide.image_id)} &mdash; ${slide.tiles_kept} of ${slide.tiles_total} tiles kept</figcaption>`;
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
      `<td>${s.width ?? ''}&times;${s.height ?? ''}</td><td>${s.tiles_kept ?? ''} / ${s.tiles_total ?? ''}</td>` +
      `<td>${s.seconds?.toFixed(1) ?? ''}</td><td>${s.workers ?? ''}</td><td>${s.attempts ?? ''}</td><td>${slideNotes(s)}</td></tr>`,
  );
  const more = report.slides.length - shown.length;
  const note = more > 0 ? `<p class="note">${more} more slide(s) not listed (the table shows ${shown.length}: those that need looking at first); report.json lists every slide.</p>` : '';
  return `<table><tr><th>image_id</th><th>patient</th><th>status</th><th>size</th><th>kept / grid</th><th>s</th><th>workers</th><th>attempts</th><th>error / notes</th></tr>
${rows.join('\n')}</table>
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

async function figureSection(report: RunReport, pictures: SlidePictures): Promise<string> {
  const drawn = firstSlides(report.slides, HTML_LIMITS.figures, (s) => pictures.has(s.image_id));
  const figures: string[] = [];
  for (const slide of drawn) {
    // A picture that could not be made costs the report its figure, not the report.
    const figure = await pictures.get(slide.image_id)!.then((p) => slideFigure(slide, p), (err: Error) => `<figcaption>${escapeHtml(slide.image_id)}: no picture (${escapeHtml(err.message)})</figcaption>`);
    figures.push(`<figure>${figure}</figure>`);
  }
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
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}td:last-child{text-align:left}tr.failed td{background:#fee}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}figcaption{font-size:12px}
svg.slide{border:1px solid #999;background:#fff}.note{color:#555;font-style:italic}
</style></head><body>
<h1>Run report</h1>
<p>Started ${escapeHtml(report.started_at)}; ${report.elapsed_s.toFixed(1)} s; exit code ${report.exit_code};
${report.tiles_written} tiles written for ${report.patients.written} patients; peak RSS (all processes) ${report.peak_rss_mb.toFixed(0)} MB;
max tiles in flight ${report.max_tiles_in_flight} (budget ${report.tile_budget}).</p>
${warnings ? `<h2>Warnings</h2><ul>${warnings}</ul>` : ''}
${failureSection(report)}
<h2>Slides (${report.slides.length})</h2>
${slideRows(report)}
${droppedSection(report)}
<h2>Stages</h2>
<table><tr><th>stage</th><th>in</th><th>out</th><th>busy s</th><th>blocked s</th><th>max queue</th><th>out/busy s</th></tr>
${stages}</table>
<h2>Tile selection</h2>
<p>Blue: background on the thumbnail; green: kept tiles.</p>
${await figureSection(report, pictures)}
</body></html>
`;
}

/** Marks a row to print on one line in report.json (a NUL never occurs in the report's own text). */
const ROW = '\u0000';

/**
 * report.json's text: indented, except that each slide and each dropped patient is one line (a run of 100,000
 * slides is then ~250 bytes per slide rather than ~600, and still one slide per line for grep and diff).
 */
export function reportJsonText(report: RunReport): string {
  const text = JSON.stringify(report, (key, value: unknown) => ((key === 'slides' || key === 'dropped') && Array.isArray(value) ? value.map((row) => ROW + JSON.stringify(row) + ROW) : value), 2);
  return text.replace(/"\\u0000(?:[^"\\]|\\.)*\\u0000"/g, (literal) => (JSON.parse(literal) as string).slice(1, -1)) + '\n';
}

/**
 * Writes report.json and report.html into `outDir`; returns their paths. A file-system error is one E_OUTPUT_IO
 * line naming the path and the errno; no temporary file stays behind (stages/dataset/io.ts).
 */
export async function writeReport(outDir: string, report: RunReport, pictures: SlidePictures): Promise<{ json: string; html: string }> {
  await naming('create', outDir, () => mkdir(outDir, { recursive: true }));
  const json = join(outDir, 'report.json');
  const html = join(outDir, 'report.html');
  await writeDurable(json, reportJsonText(report));
  await writeDurable(html, await renderHtml(report, pictures));
  return { json, html };
}
