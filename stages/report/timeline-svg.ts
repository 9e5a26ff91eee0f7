/**
 * report.html's per-worker timeline: one lane per worker process, one bar per slide attempt (or per worker that
 * joined a running slide), coloured by how it ended, with the process's life as a thin line and a cross where
 * it died while running a slide (killed or crashed; not the workers stopped at the run's end). Each bar's <title> names the slide (a tooltip, no script). For big runs the SVG's size is
 * bounded by a resolution, not the run's length: past TIMELINE_SVG.bars bars, neighbouring bars of one kind in a
 * lane less than 1/200 of the run apart are drawn as one block (its title says how many): at most about 200
 * blocks per lane and kind.
 */
import { barsOf, type TimelineBar, type TimelineLane, type TimelineReport } from './timeline.js';
import { escapeXml, num, timeAxis, timeLabel } from './svg.js';

/** Geometry of the chart (viewBox units) and the bar count past which ok bars are merged. */
export const TIMELINE_SVG = { width: 800, left: 76, right: 12, top: 8, lane: 26, bar: 17, axis: 26, bars: 400, minBar: 4, mergeColumns: 200 } as const;

/** Fill colour of each kind of bar (the legend and the screenshot test use the same table). */
export const BAR_COLOURS = { ok: '#2f6fd6', join: '#9b3fd1', retried: '#f08c00', failed: '#d7263d', running: '#8a8f98' } as const;
export type BarKind = keyof typeof BAR_COLOURS;

export const BAR_LABELS: Record<BarKind, string> = {
  ok: 'slide attempt, ok',
  join: 'joined a running slide',
  retried: 'attempt retried (its worker died)',
  failed: 'slide failed',
  running: 'still running when the run stopped',
};

export function barKind(b: TimelineBar): BarKind {
  if (b.outcome === 'ok') return b.join ? 'join' : 'ok';
  return b.outcome;
}

/** What is drawn: single bars, and merged blocks of neighbouring ok bars. */
interface Drawn {
  readonly lane: number;
  readonly start: number;
  readonly end: number;
  readonly kind: BarKind;
  readonly title: string;
  readonly slides: number;
}

/** A bar's tooltip, short (the lane says the worker): slide, attempt or join, outcome, when. */
function barTitle(b: TimelineBar): string {
  const what = b.join ? `joined attempt ${b.attempt}` : `attempt ${b.attempt}`;
  return `${b.slide}: ${what}, ${b.outcome}, ${timeLabel(b.start_ms / 1000)} to ${timeLabel(b.end_ms / 1000)} (${num((b.end_ms - b.start_ms) / 1000)} s)`;
}

/**
 * The bars as drawn: each one, or (big runs) neighbouring bars of one kind in a lane, less than `gapMs` apart,
 * merged into blocks (a thousand slides failing at once is one red block per lane, its title saying how many).
 */
function drawnBars(t: TimelineReport, gapMs: number): Drawn[] {
  const one = (b: TimelineBar): Drawn => ({ lane: b.lane, start: b.start_ms, end: b.end_ms, kind: barKind(b), title: barTitle(b), slides: 1 });
  const bars = barsOf(t);
  if (bars.length <= TIMELINE_SVG.bars) return bars.map(one);
  const out: Drawn[] = [];
  // The open block of each kind in the current lane (bars come sorted by lane, then start).
  const open = new Map<BarKind, { lane: number; start: number; end: number; slides: number; first: TimelineBar }>();
  const flush = (kind: BarKind): void => {
    const b = open.get(kind);
    if (b === undefined) return;
    open.delete(kind);
    const title = `${b.slides} bar(s): ${BAR_LABELS[kind]}; worker ${workerName(t.lanes[b.lane]!)}; ${timeLabel(b.start / 1000)} to ${timeLabel(b.end / 1000)}`;
    out.push(b.slides === 1 ? one(b.first) : { lane: b.lane, start: b.start, end: b.end, kind, title, slides: b.slides });
  };
  for (const b of bars) {
    const kind = barKind(b);
    const block = open.get(kind);
    if (block !== undefined && block.lane === b.lane && b.start_ms - block.end <= gapMs) {
      block.end = Math.max(block.end, b.end_ms);
      block.slides++;
      continue;
    }
    if (block !== undefined && block.lane !== b.lane) for (const k of [...open.keys()]) flush(k);
    flush(kind);
    open.set(kind, { lane: b.lane, start: b.start_ms, end: b.end_ms, slides: 1, first: b });
  }
  for (const k of [...open.keys()]) flush(k);
  return out;
}

/** The legend, as HTML (it stays readable at phone width, where the chart's own text gets small). */
export function timelineLegend(kinds: readonly BarKind[] = ['ok', 'join', 'retried', 'failed', 'running']): string {
  const items = kinds.map((k) => `<li><span class="swatch" style="background:${BAR_COLOURS[k]}"></span>${escapeXml(BAR_LABELS[k])}</li>`);
  items.push('<li><span class="swatch life"></span>worker process alive</li><li><span class="swatch killed">&#10005;</span>worker process died while running a slide</li>');
  return `<ul class="legend">${items.join('')}</ul>`;
}

/** A worker process as titles name it: its pid, after its host in a run over several machines. */
function workerName(l: TimelineLane): string {
  return l.host === undefined ? String(l.pid) : `${l.host} ${l.pid}`;
}

/** Characters of a host name a lane's label shows (the margin holds about 11 with the pid; the title has it whole). */
const LABEL_HOST = 8;

/** A lane's label: the pid, after the host's first name part (cut to LABEL_HOST characters) when it has one. */
function laneLabel(l: TimelineLane): string {
  if (l.host === undefined) return String(l.pid);
  const short = l.host.split('.')[0] ?? l.host;
  return `${short.length > LABEL_HOST ? `${short.slice(0, LABEL_HOST - 1)}\u2026` : short} ${l.pid}`;
}

/** The lanes' labels and the processes' lives (a thin line; a cross where a process died of a signal). */
function laneParts(t: TimelineReport, x: (ms: number) => number, laneY: (lane: number) => number): string[] {
  const { left, lane } = TIMELINE_SVG;
  return t.lanes.map((l, i) => {
    const y = laneY(i);
    const mid = num(y + lane / 2);
    const from = x(l.spawned_ms ?? 0);
    const to = x(l.exited_ms ?? t.end_ms);
    const name = workerName(l);
    const label = `<text class="lane" x="${left - 6}" y="${num(y + lane / 2 + 4)}" text-anchor="end">${escapeXml(laneLabel(l))}<title>${escapeXml(`worker ${name}`)}</title></text>`;
    const life = `<line class="life" x1="${num(from)}" y1="${mid}" x2="${num(to)}" y2="${mid}"><title>${escapeXml(`worker ${name}: ${l.bars} bar(s), busy ${num(l.busy_ms / 1000)} s`)}</title></line>`;
    const how = l.exit?.signal ? `killed by ${l.exit.signal}` : `exit code ${l.exit?.code}`;
    const killed = l.exit?.during !== undefined ? `<path class="killed" d="M${num(to - 4)} ${num(y + 3)}l8 ${lane - 6}m0 -${lane - 6}l-8 ${lane - 6}"><title>${escapeXml(`worker ${name} died while running ${l.exit.during} (${how})`)}</title></path>` : '';
    const host = l.host === undefined ? '' : ` data-host="${escapeXml(l.host)}"`;
    return `<g class="lane" data-pid="${l.pid}"${host}>${label}${life}${killed}</g>`;
  });
}

/** The timeline chart (an <svg>), or a sentence when no worker ran a slide. */
export function timelineSvg(t: TimelineReport): string {
  const { width, left, right, top, lane, bar, axis } = TIMELINE_SVG;
  if (t.lanes.length === 0) return '<p class="note">No worker process ran a slide in this run (all slides came from their checkpoints, or none could start).</p>';
  const endMs = Math.max(t.end_ms, 1);
  const plot = width - left - right;
  const x = (ms: number): number => left + (plot * Math.min(Math.max(ms, 0), endMs)) / endMs;
  const laneY = (i: number): number => top + i * lane;
  const height = top + t.lanes.length * lane + axis;
  const bars = drawnBars(t, endMs / TIMELINE_SVG.mergeColumns).map((d) => {
    const x0 = x(d.start);
    const w = Math.max(TIMELINE_SVG.minBar, x(d.end) - x0); // an instant's bar (a slide that fails at once) still shows
    const y = laneY(d.lane) + (lane - bar) / 2;
    const slides = d.slides > 1 ? ` data-slides="${d.slides}"` : '';
    return `<rect class="bar ${d.kind}" x="${num(x0)}" y="${num(y)}" width="${num(w)}" height="${bar}" fill="${BAR_COLOURS[d.kind]}"${slides}><title>${escapeXml(d.title)}</title></rect>`;
  });
  const axisY = top + t.lanes.length * lane + 2;
  return `<svg class="chart timeline" viewBox="0 0 ${width} ${height}" width="100%" preserveAspectRatio="xMinYMin meet" role="img" aria-label="per-worker timeline of slides">
${timeAxis(t.end_ms, left, width - right, axisY, top)}
${laneParts(t, x, laneY).join('\n')}
${bars.join('\n')}
</svg>`;
}
