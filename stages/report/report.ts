/**
 * The run report: `report.json` (machine-readable) and `report.html` (per slide: thumbnail, background
 * mask and kept-tile grid; per stage: timings). Both are written atomically (temp file, fsync, then rename).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import type { SlideSummary } from '../types.js';
import { naming, writeDurable } from '../dataset/io.js';

export interface SlideReport {
  image_id: string;
  patient_id: string;
  status: 'ok' | 'failed';
  error: string | null;
  /** A failed slide's E_ code (failureCode): the slide's own (E_SLIDE_FORMAT...), else the engine's (E_WORKER_CRASH...). */
  code?: string;
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
}

/**
 * The code a failed slide is reported with: that of the error the slide's worker threw (the engine error's
 * cause: E_SLIDE_FORMAT, E_SLIDE_READ...) when it has one, else the engine's own (E_WORKER_CRASH when the
 * worker died, E_WORKER_ITEM for an error without a code).
 */
export function failureCode(err: Error): string {
  const own = (err.cause as { code?: unknown } | undefined)?.code;
  if (typeof own === 'string' && own.startsWith('E_')) return own;
  const engine = (err as { code?: unknown }).code;
  return typeof engine === 'string' && engine.startsWith('E_') ? engine : 'E_UNKNOWN';
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

export async function renderHtml(report: RunReport, pictures: SlidePictures): Promise<string> {
  const rows = report.slides
    .map(
      (s) => `<tr class="${s.status}"><td>${escapeHtml(s.image_id)}</td><td>${escapeHtml(s.patient_id)}</td><td>${s.status}</td>` +
        `<td>${s.width ?? ''}&times;${s.height ?? ''}</td><td>${s.tiles_kept ?? ''} / ${s.tiles_total ?? ''}</td>` +
        `<td>${s.seconds?.toFixed(1) ?? ''}</td><td>${s.workers ?? ''}</td><td>${escapeHtml(s.error ?? '')}</td></tr>`,
    )
    .join('\n');
  const stages = report.stages
    .map(
      (s) => `<tr><td>${escapeHtml(s.name)}</td><td>${s.elements_in}</td><td>${s.elements_out}</td><td>${(s.busy_ms / 1000).toFixed(2)}</td>` +
        `<td>${(s.blocked_ms / 1000).toFixed(2)}</td><td>${s.max_queue_depth}</td><td>${s.throughput_per_s.toFixed(1)}</td></tr>`,
    )
    .join('\n');
  const figures: string[] = [];
  for (const slide of report.slides) {
    const picture = pictures.get(slide.image_id);
    if (!picture) continue;
    // A picture that could not be made costs the report its figure, not the report.
    const drawn = await picture.then((p) => slideFigure(slide, p), (err: Error) => `<figcaption>${escapeHtml(slide.image_id)}: no picture (${escapeHtml(err.message)})</figcaption>`);
    figures.push(`<figure>${drawn}</figure>`);
  }
  const dropped = report.patients.dropped.map((d) => `<li>${escapeHtml(d.patient_id)}: ${escapeHtml(d.reason)}</li>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WSI dataset run report</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}tr.failed td{background:#fee}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}figcaption{font-size:12px}
svg.slide{border:1px solid #999;background:#fff}
</style></head><body>
<h1>Run report</h1>
<p>Started ${escapeHtml(report.started_at)}; ${report.elapsed_s.toFixed(1)} s; exit code ${report.exit_code};
${report.tiles_written} tiles written for ${report.patients.written} patients; peak RSS (all processes) ${report.peak_rss_mb.toFixed(0)} MB;
max tiles in flight ${report.max_tiles_in_flight} (budget ${report.tile_budget}).</p>
<h2>Slides</h2>
<table><tr><th>image_id</th><th>patient</th><th>status</th><th>size</th><th>kept / grid</th><th>s</th><th>workers</th><th>error</th></tr>
${rows}</table>
${dropped ? `<h2>Dropped patients</h2><ul>${dropped}</ul>` : ''}
<h2>Stages</h2>
<table><tr><th>stage</th><th>in</th><th>out</th><th>busy s</th><th>blocked s</th><th>max queue</th><th>out/busy s</th></tr>
${stages}</table>
<h2>Tile selection</h2>
<p>Blue: background on the thumbnail; green: kept tiles.</p>
${figures.join('\n')}
</body></html>
`;
}

/**
 * Writes report.json and report.html into `outDir`; returns their paths. A file-system error is one E_OUTPUT_IO
 * line naming the path and the errno; no temporary file stays behind (stages/dataset/io.ts).
 */
export async function writeReport(outDir: string, report: RunReport, pictures: SlidePictures): Promise<{ json: string; html: string }> {
  await naming('create', outDir, () => mkdir(outDir, { recursive: true }));
  const json = join(outDir, 'report.json');
  const html = join(outDir, 'report.html');
  await writeDurable(json, JSON.stringify(report, null, 2) + '\n');
  await writeDurable(html, await renderHtml(report, pictures));
  return { json, html };
}
