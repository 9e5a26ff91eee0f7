/**
 * report.html's pictures of the run: the per-worker timeline, tiles per second over time, and where the time
 * went per stage, each with a line saying how to read it.
 */
import type { RunReport } from './report.js';
import { CHART_COLOURS, coarser, stagesChart, throughputSvg, THROUGHPUT_POINTS } from './charts-svg.js';
import { num } from './svg.js';
import { barsOf } from './timeline.js';
import { barKind, timelineLegend, timelineSvg, type BarKind } from './timeline-svg.js';

/** The legend names the kinds of bars the timeline has (ok and join always, to say what they would look like). */
function kindsIn(report: RunReport): BarKind[] {
  const seen = new Set<BarKind>(['ok', 'join']);
  for (const b of barsOf(report.timeline ?? { bars: [] })) seen.add(barKind(b));
  return (['ok', 'join', 'retried', 'failed', 'running'] as const).filter((k) => seen.has(k));
}

export function runCharts(report: RunReport): string {
  const t = report.timeline;
  if (t === undefined) return '';
  const leftOut = t.bars_left_out > 0 ? ` ${t.bars_left_out} attempt(s) of this big run are not kept one by one (report.json keeps ${t.bars.length} bars, the retried, failed and joins first; the lanes' totals count all).` : '';
  const replayed = t.replayed > 0 ? ` ${t.replayed} slide(s) came from their checkpoints (no bar).` : '';
  const swatch = (colour: string): string => `<span class="swatch" style="background:${colour}"></span>`;
  return `<h2>Timeline</h2>
<p>One lane per worker process (its pid), one bar per slide attempt; hover a bar for the slide.${replayed}${leftOut}</p>
${timelineLegend(kindsIn(report))}
${timelineSvg(t)}
<h2>Tiles per second</h2>
<p>${swatch(CHART_COLOURS.tiles)}tiles embedded per second (${num(coarser(t.tiles, THROUGHPUT_POINTS, 'sum').bucket_ms / 1000, 2)} s buckets) &nbsp;
<span class="swatch life" style="background:${CHART_COLOURS.inFlight}"></span>tiles in memory, all processes (right-hand scale; dashed: the budget, ${report.tile_budget})</p>
${throughputSvg(t, report.tile_budget)}
<h2>Where the time went</h2>
<p>${swatch(CHART_COLOURS.busy)}busy (in the stage's own code) ${swatch(CHART_COLOURS.blocked)}blocked (waiting for the next stage to take its output); a worker stage's time is summed over the worker processes.</p>
${stagesChart(report.stages)}`;
}
