/**
 * A slide's format facts for report.html's slide table (report.json carries them as fields): format, reader
 * backend, levels used, stated scale, and the channel mapping of a slide forced through --allow-non-rgb.
 */
import type { SlideReport } from './report.js';

/** 'svs, sharp; levels 0 + 2 of 3; 0.499 µm/px, 20x (aperio)' and the mapping, HTML-escaped by `escape`. */
export function formatCell(s: SlideReport, escape: (text: string) => string): string {
  if (s.format === undefined) return '';
  const parts = [`${s.format}, ${s.backend ?? '?'}`];
  if (s.levels !== undefined) parts.push(`levels ${s.tile_level ?? 0}${s.thumbnail_level !== undefined && s.thumbnail_level !== s.tile_level ? ` + ${s.thumbnail_level}` : ''} of ${s.levels.length}`);
  const scale = [s.mpp_x !== undefined ? `${s.mpp_x.toPrecision(3)}${s.mpp_y !== undefined && Math.abs(s.mpp_y - s.mpp_x) > 1e-6 * s.mpp_x ? `×${s.mpp_y.toPrecision(3)}` : ''} µm/px` : '', s.magnification !== undefined ? `${s.magnification}x` : ''].filter((v) => v !== '');
  if (scale.length > 0) parts.push(`${scale.join(', ')}${s.scale_source !== undefined ? ` (${s.scale_source})` : ''}`);
  const text = escape(parts.join('; '));
  return s.channel_mapping === undefined ? text : `${text}<br><em>not brightfield, mapped: ${escape(s.channel_mapping)}</em>`;
}
