/**
 * Headless Chromium for the report's rendering tests: a screenshot of a page at a given width, and a layout
 * probe (what sticks out past the page's right edge). Chromium's window is at least 500 px wide, so the page is
 * shown in an iframe of the wanted width inside a small harness page next to it; nothing is fetched from the
 * network (file:// only). The report itself has no script: the probe's script is added to a test copy.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The Chromium binary ($CHROMIUM, else the usual names), or undefined. */
export function chromiumPath(): string | undefined {
  const candidates = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
  return candidates.find((c): c is string => c !== undefined && c !== '' && existsSync(c));
}

function flags(width: number, height: number): string[] {
  const f = ['--headless', '--disable-gpu', '--no-first-run', '--no-default-browser-check', '--hide-scrollbars', '--disable-extensions', '--disable-background-networking', `--window-size=${Math.max(width, 600)},${height}`];
  // As root, Chromium refuses to start with its sandbox.
  if (process.getuid?.() === 0) f.push('--no-sandbox');
  return f;
}

/** A harness page beside `page` showing it in an iframe `width` x `height`, that copies any message it posts into #result. */
async function harness(page: string, width: number, height: number, tag: string): Promise<string> {
  const file = join(dirname(page), `.harness-${tag}-${width}.html`);
  await writeFile(file, `<!doctype html><html><head><meta charset="utf-8"><style>html,body{margin:0;background:#fff}iframe{border:0;display:block}</style></head><body>
<iframe src="${basename(page)}" width="${width}" height="${height}"></iframe><pre id="result"></pre>
<script>addEventListener('message', (e) => { document.getElementById('result').textContent = String(e.data); });</script>
</body></html>\n`);
  return file;
}

/** A PNG screenshot of `page` laid out `width` CSS px wide (the iframe occupies x 0..width-1 of the picture). */
export async function screenshot(chromium: string, page: string, width: number, height: number, out: string): Promise<void> {
  const h = await harness(page, width, height, 'shot');
  await run(chromium, [...flags(width, height), `--screenshot=${out}`, '--virtual-time-budget=5000', pathToFileURL(h).href], { timeout: 120_000 });
  if (!existsSync(out)) throw new Error(`chromium wrote no screenshot ${out}`);
}

/** What the layout probe reports: the page's width, how wide its content is, and the elements sticking out. */
export interface LayoutProbe {
  readonly clientWidth: number;
  readonly scrollWidth: number;
  /** Elements whose right edge is past the page's (those inside a scrolling box excepted: they scroll by design). */
  readonly overflowing: string[];
  /** Rendered width of each chart (svg.chart), CSS px. */
  readonly charts: number[];
}

const PROBE = `<script>
(() => {
  const vw = document.documentElement.clientWidth;
  const overflowing = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.tagName === 'SCRIPT' || (el.parentElement && el.parentElement.closest('.scroll'))) continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 0.5) overflowing.push(el.tagName.toLowerCase() + '.' + (el.getAttribute('class') || '') + ' right=' + Math.round(r.right));
  }
  const charts = [...document.querySelectorAll('svg.chart')].map((s) => Math.round(s.getBoundingClientRect().width));
  parent.postMessage(JSON.stringify({ clientWidth: vw, scrollWidth: document.documentElement.scrollWidth, overflowing: overflowing.slice(0, 20), charts }), '*');
})();
</script>`;

/** Lays `html` (a report's text, shown as if it were `page`) out `width` px wide and reports what sticks out. */
export async function probeLayout(chromium: string, page: string, html: string, width: number): Promise<LayoutProbe> {
  const copy = join(dirname(page), `.probe-${width}.html`);
  await writeFile(copy, html.replace('</body>', `${PROBE}</body>`));
  const h = await harness(copy, width, 2000, 'probe');
  const { stdout } = await run(chromium, [...flags(width, 2000), '--virtual-time-budget=5000', '--dump-dom', pathToFileURL(h).href], { timeout: 120_000, maxBuffer: 64 * 2 ** 20 });
  const m = /<pre id="result">([^<]*)<\/pre>/.exec(stdout);
  if (m === null || m[1] === '') throw new Error(`the layout probe reported nothing (chromium's DOM: ${stdout.slice(0, 300)})`);
  return JSON.parse(m[1]!.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')) as LayoutProbe;
}
