/**
 * report.html's two other charts: tiles per second over time (with the tiles in memory against the budget), and
 * where the time went per stage (busy / blocked, from the engine's stage metrics). Their size depends on the
 * bucketed series (at most TIMELINE_LIMITS.buckets points) and the number of stages, not on the run's length.
 */
import type { BucketSeries } from './buckets.js';
import type { TimelineReport } from './timeline.js';
import { escapeXml, niceStep, num, timeAxis } from './svg.js';

export const CHART_COLOURS = { tiles: '#1f9d55', inFlight: '#5b6170', budget: '#c0392b', busy: '#2f6fd6', blocked: '#f2a65a' } as const;

const W = 800;
const LEFT = 56;
const RIGHT = 56;

/** A step line through a bucketed series, as path data; `y` maps a bucket's value. */
function stepPath(s: BucketSeries, x: (ms: number) => number, y: (v: number) => number): string {
  let d = '';
  s.values.forEach((v, i) => {
    const yv = num(y(v));
    d += `${i === 0 ? 'M' : 'L'}${num(x(i * s.bucket_ms))} ${yv}L${num(x((i + 1) * s.bucket_ms))} ${yv}`;
  });
  return d;
}

/** Points the throughput chart draws at most: tiles arrive a group at a time, so finer buckets only draw the groups. */
export const THROUGHPUT_POINTS = 60;

/** A series with every `k` neighbouring buckets merged (summed or the largest), k chosen for at most `most` buckets. */
export function coarser(s: BucketSeries, most: number, mode: 'sum' | 'max'): BucketSeries {
  const k = Math.max(1, Math.ceil(s.values.length / most));
  if (k === 1) return s;
  const values: number[] = [];
  for (let i = 0; i < s.values.length; i += k) {
    const part = s.values.slice(i, i + k);
    values.push(mode === 'sum' ? part.reduce((a, v) => a + v, 0) : Math.max(...part));
  }
  return { bucket_ms: s.bucket_ms * k, values };
}

/** Tiles per second over the run (area), and the tiles in memory (line, right-hand scale) against the tile budget. */
export function throughputSvg(t: TimelineReport, tileBudget: number): string {
  const tiles = coarser(t.tiles, THROUGHPUT_POINTS, 'sum');
  const inFlight = coarser(t.tiles_in_flight, THROUGHPUT_POINTS * 2, 'max');
  if (tiles.values.length === 0) return '<p class="note">No tile was embedded in this run.</p>';
  const H = 180;
  const top = 10;
  const bottom = H - 26;
  const endMs = Math.max(t.end_ms, tiles.values.length * tiles.bucket_ms, 1);
  const x = (ms: number): number => LEFT + ((W - LEFT - RIGHT) * Math.min(ms, endMs)) / endMs;
  const rates = tiles.values.map((v) => (v * 1000) / tiles.bucket_ms);
  const maxRate = Math.max(...rates);
  const rateStep = niceStep(maxRate, 4);
  const rateTop = Math.ceil(maxRate / rateStep) * rateStep || 1;
  const yRate = (v: number): number => bottom - ((bottom - top) * v) / rateTop;
  const memTop = Math.max(tileBudget, ...inFlight.values, 1);
  const yMem = (v: number): number => bottom - ((bottom - top) * v) / memTop;
  const rateSeries: BucketSeries = { bucket_ms: tiles.bucket_ms, values: rates };
  const area = `${stepPath(rateSeries, x, yRate)}L${num(x(rates.length * tiles.bucket_ms))} ${bottom}L${num(x(0))} ${bottom}Z`;
  const grid: string[] = [];
  for (let v = 0; v <= rateTop + 1e-9; v += rateStep) grid.push(`<line class="grid" x1="${LEFT}" y1="${num(yRate(v))}" x2="${W - RIGHT}" y2="${num(yRate(v))}"/><text class="tick" x="${LEFT - 4}" y="${num(yRate(v) + 4)}" text-anchor="end">${num(v)}</text>`);
  const mem = inFlight.values.length > 0 ? `<path class="in-flight" d="${stepPath(inFlight, x, yMem)}" fill="none" stroke="${CHART_COLOURS.inFlight}"/>` : '';
  const budget = `<line class="budget" x1="${LEFT}" y1="${num(yMem(tileBudget))}" x2="${W - RIGHT}" y2="${num(yMem(tileBudget))}" stroke="${CHART_COLOURS.budget}"/><text class="tick" x="${W - RIGHT + 4}" y="${num(yMem(tileBudget) + 4)}">${tileBudget}</text>`;
  return `<svg class="chart throughput" viewBox="0 0 ${W} ${H}" width="100%" preserveAspectRatio="xMinYMin meet" role="img" aria-label="tiles per second over time">
${grid.join('')}
<path class="tiles" d="${area}" fill="${CHART_COLOURS.tiles}" fill-opacity="0.75"><title>tiles embedded per second, in ${num(tiles.bucket_ms / 1000, 2)} s buckets; at most ${num(maxRate)}/s</title></path>
${mem}${budget}
${timeAxis(endMs, LEFT, W - RIGHT, bottom, top)}
</svg>`;
}

/** A stage whose time is under this share of the biggest stage's is counted, not drawn. */
const STAGE_FLOOR = 0.005;

/** One stage's row as the chart needs it (report.json's StageReport fits). */
export interface StageTime {
  readonly name: string;
  readonly busy_ms: number;
  readonly blocked_ms: number;
}

/**
 * Where the time went: per stage (the biggest first), busy and blocked seconds as a stacked bar. Each row is the
 * stage's name as HTML text and its bar as a small SVG scaled to the row (a grid: it reads at phone width too).
 */
export function stagesChart(stages: readonly StageTime[]): string {
  const sorted = stages.filter((s) => s.busy_ms + s.blocked_ms > 0).sort((a, b) => b.busy_ms + b.blocked_ms - (a.busy_ms + a.blocked_ms));
  if (sorted.length === 0) return '<p class="note">No stage metrics (the run stopped before its graph ran).</p>';
  const maxMs = sorted[0]!.busy_ms + sorted[0]!.blocked_ms;
  // Stages under 0.5% of the biggest would be empty bars: counted instead (the stage table lists them all).
  const shown = sorted.filter((s) => s.busy_ms + s.blocked_ms >= maxMs * STAGE_FLOOR);
  const rest = sorted.length - shown.length;
  const more = rest > 0 ? `<p class="note">${rest} more stage(s) took under ${num((maxMs * STAGE_FLOOR) / 1000, 2)} s each (the stage table lists them).</p>` : '';
  const rows = shown.map((s) => {
    const busy = (1000 * s.busy_ms) / maxMs;
    const blocked = (1000 * s.blocked_ms) / maxMs;
    const title = `${s.name}: busy ${num(s.busy_ms / 1000, 2)} s, blocked ${num(s.blocked_ms / 1000, 2)} s`;
    return `<div class="stage-row"><span class="stage-name">${escapeXml(s.name)}</span>` +
      `<svg class="chart-bar" viewBox="0 0 1000 10" preserveAspectRatio="none" role="img" aria-label="${escapeXml(title)}"><title>${escapeXml(title)}</title>` +
      `<rect class="busy" x="0" y="0" width="${num(busy)}" height="10" fill="${CHART_COLOURS.busy}"/>` +
      `<rect class="blocked" x="${num(busy)}" y="0" width="${num(blocked)}" height="10" fill="${CHART_COLOURS.blocked}"/></svg>` +
      `<span class="stage-s">${num(s.busy_ms / 1000)} + ${num(s.blocked_ms / 1000)} s</span></div>`;
  });
  return `<div class="stages-chart">${rows.join('\n')}</div>${more}`;
}
