/**
 * Small SVG building blocks shared by the report's charts: escaping, time-axis ticks and labels. The charts are
 * plain inline SVG (no script, no external font): a viewBox and `width:100%`, so they scale to the page.
 */

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A number with at most `digits` decimals, no trailing zeros (SVG coordinates stay short). */
export function num(v: number, digits = 1): string {
  return String(Math.round(v * 10 ** digits) / 10 ** digits);
}

/** A tick step of 1, 2 or 5 times a power of ten that puts at most `most` ticks on [0, max]. */
export function niceStep(max: number, most: number): number {
  if (!(max > 0)) return 1;
  const raw = max / Math.max(1, most);
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

/** Seconds as `12 s`, `3:05` (minutes) or `1:02:03` (hours). */
export function timeLabel(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${num(seconds, seconds < 10 ? 1 : 0)} s`;
  const pad = (n: number): string => String(n).padStart(2, '0');
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** A time axis under a plot: tick marks, labels and a faint grid line up to `top`, for [0, endMs] drawn on [x0, x1]. */
export function timeAxis(endMs: number, x0: number, x1: number, y: number, top: number): string {
  const endS = Math.max(endMs / 1000, 1e-3);
  // Time steps of 1, 2, 5 s ... or whole minutes past a minute, so that labels read as round times.
  const step = endS >= 120 ? Math.max(60, Math.ceil(niceStep(endS, 6) / 60) * 60) : niceStep(endS, 6);
  const parts: string[] = [`<line class="axis" x1="${x0}" y1="${y}" x2="${x1}" y2="${y}"/>`];
  for (let s = 0; s <= endS + 1e-9; s += step) {
    const x = num(x0 + ((x1 - x0) * s) / endS);
    parts.push(`<line class="grid" x1="${x}" y1="${top}" x2="${x}" y2="${y}"/><text class="tick" x="${x}" y="${y + 14}" text-anchor="middle">${timeLabel(s)}</text>`);
  }
  return parts.join('');
}
