/** A hand-written SVG line plot of peak RSS (MB) against slide side (px, log scale): no plotting dependency. */

export interface MemoryPoint {
  readonly side_px: number;
  readonly peak_rss_mb: number;
  readonly tiles: number;
}

/** 4096 -> 4k, 65536 -> 64k, 100000 -> 100k. */
const label = (side: number): string => (side % 1024 === 0 ? `${side / 1024}k` : side % 1000 === 0 ? `${side / 1000}k` : String(side));

export function svgPlot(points: readonly MemoryPoint[], title = 'Peak RSS of the whole job vs slide size'): string {
  const W = 640;
  const H = 400;
  const m = { l: 70, r: 30, t: 40, b: 60 };
  const xs = points.map((p) => Math.log2(p.side_px));
  const x0 = Math.min(...xs) - 0.5;
  const x1 = Math.max(...xs) + 0.5;
  const yMax = Math.max(1024, ...points.map((p) => p.peak_rss_mb)) * 1.1;
  const px = (v: number): number => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (v: number): number => H - m.b - (v / yMax) * (H - m.t - m.b);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${title}</text>`);
  // Axes and y grid every 256 MB.
  parts.push(`<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/>`);
  parts.push(`<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>`);
  for (let y = 0; y <= yMax; y += 256) {
    parts.push(`<line x1="${m.l}" y1="${py(y).toFixed(1)}" x2="${W - m.r}" y2="${py(y).toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`<text x="${m.l - 6}" y="${(py(y) + 4).toFixed(1)}" text-anchor="end">${y}</text>`);
  }
  // The 1 GiB target.
  parts.push(`<line x1="${m.l}" y1="${py(1024).toFixed(1)}" x2="${W - m.r}" y2="${py(1024).toFixed(1)}" stroke="#c33" stroke-dasharray="6 4"/>`);
  parts.push(`<text x="${W - m.r}" y="${(py(1024) - 6).toFixed(1)}" text-anchor="end" fill="#c33">1 GiB target</text>`);
  for (const p of points) {
    const x = px(Math.log2(p.side_px));
    parts.push(`<text x="${x.toFixed(1)}" y="${H - m.b + 18}" text-anchor="middle">${label(p.side_px)}</text>`);
  }
  parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 15}" text-anchor="middle">slide side (px, log scale)</text>`);
  parts.push(`<text x="18" y="${(m.t + H - m.b) / 2}" text-anchor="middle" transform="rotate(-90 18 ${(m.t + H - m.b) / 2})">peak RSS, MB</text>`);
  const path = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${px(Math.log2(p.side_px)).toFixed(1)},${py(p.peak_rss_mb).toFixed(1)}`).join(' ');
  parts.push(`<path d="${path}" fill="none" stroke="#2266bb" stroke-width="2"/>`);
  points.forEach((p, i) => {
    const x = px(Math.log2(p.side_px));
    const y = py(p.peak_rss_mb);
    parts.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="4" fill="#2266bb"/>`);
    // Labels alternate above and below the line: neighbouring points (64k, 100k) sit close on the log axis.
    const ly = i % 2 === 0 ? y - 10 : y + 20;
    parts.push(`<text x="${x.toFixed(1)}" y="${ly.toFixed(1)}" text-anchor="middle">${p.peak_rss_mb.toFixed(0)} MB (${p.tiles} tiles)</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
