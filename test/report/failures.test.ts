/**
 * stages/report/failures.ts: errors as code + short message, failures grouped by code, the stderr summaries;
 * and report.html's caps for big runs (stages/report/report.ts).
 */
import t from 'tap';
import { EngineError } from '../../engine/types.js';
import { SlideError } from '../../stages/slides/errors.js';
import { attentionSummary, errorFacts, failureSummary, FIRST_FAILURES, groupFailures } from '../../stages/report/failures.js';
import { HTML_LIMITS, renderHtml, reportJsonText, type RunReport, type SlideReport } from '../../stages/report/report.js';

/** An error as the job's fan-out hands it over: the worker's error crossed the wire (code kept), wrapped twice. */
function asFailed(inner: Error & { code?: string }, key: string): EngineError {
  const wire = Object.assign(new Error(`[ProduceTiles key=${key}] ${inner.message}`), { code: inner.code });
  return new EngineError('E_WORKER_ITEM', 'PerSlide', key, `item failed after 1 attempt(s): ${wire.message}`, { cause: wire });
}

t.test('errorFacts: the innermost code, a short message, the full one without wrappers', async (t) => {
  const slide = new SlideError('E_SLIDE_READ', 'c0', '/data/slides/c0.tif', 'truncated TIFF: tile 3 of page 0 is cut short');
  const f = errorFacts(asFailed(slide, 'c0'));
  t.equal(f.code, 'E_SLIDE_READ', 'the slide\'s own code, not the fan-out\'s');
  t.equal(f.message, 'c0.tif: truncated TIFF: tile 3 of page 0 is cut short');
  t.equal(f.full, 'E_SLIDE_READ: slide "c0" (/data/slides/c0.tif): truncated TIFF: tile 3 of page 0 is cut short');
  const crash = errorFacts(new Error('worker process 12 died (code null, signal SIGKILL)'), 'E_WORKER_CRASH');
  t.same([crash.code, crash.message], ['E_WORKER_CRASH', 'worker process 12 died (code null, signal SIGKILL)'], 'no code: the fallback');
  t.equal(errorFacts('a string').code, 'E_UNKNOWN');
});

function failedSlide(i: number, code: string, error: string): SlideReport {
  return { image_id: `s${i}`, patient_id: `p${i}`, status: 'failed', error, code, width: null, height: null, tiles_total: null, tiles_kept: null, seconds: null };
}

t.test('groupFailures and failureSummary: counts by code, the first few in full, then how many more', async (t) => {
  const slides = [
    ...Array.from({ length: 12 }, (_, i) => failedSlide(i, 'E_SLIDE_MISSING', `s${i}: no slide file`)),
    failedSlide(12, 'E_SLIDE_READ', 's12.tif: truncated'),
    { ...failedSlide(13, 'x', ''), status: 'ok' as const, error: null },
  ];
  const full = new Map([['s3', 'E_SLIDE_MISSING: slide "s3" (/x/s3): no slide file (tried .svs)'], ['s12', 'E_SLIDE_READ: slide "s12" (/x/s12.tif): truncated']]);
  const groups = groupFailures(slides, full);
  t.same(groups.map((g) => [g.code, g.count, g.first.length]), [['E_SLIDE_MISSING', 12, FIRST_FAILURES], ['E_SLIDE_READ', 1, 1]], 'largest group first; ok slides left out');
  t.equal(groups[0]!.first[0]!.error, full.get('s3'), 'failures known in full come first');
  t.equal(groups[0]!.first[1]!.error, 'E_SLIDE_MISSING: s0: no slide file', 'then others, with code and short message');
  const lines = failureSummary(groups, '/out/report.json');
  t.equal(lines[0], '13 slide(s) failed: 12 E_SLIDE_MISSING, 1 E_SLIDE_READ');
  t.equal(lines.filter((l) => l.startsWith('  slide ')).length, FIRST_FAILURES + 1);
  t.ok(lines.includes(`  ... and ${12 - FIRST_FAILURES} more E_SLIDE_MISSING; see /out/report.json`));
  t.same(failureSummary(groupFailures([failedSlide(1, 'E_SLIDE_READ', 'x')], new Map()), 'r')[0], '1 slide(s) failed:', 'every failure listed: no counts line');
  t.same(failureSummary([], 'r'), []);
});

t.test('attentionSummary: retried slides and worker messages, at most `limit` lines', async (t) => {
  const ok = (i: number): SlideReport => ({ ...failedSlide(i, 'x', ''), status: 'ok', error: null });
  const slides: SlideReport[] = [
    { ...ok(0), attempts: 2, failed_attempts: [{ attempt: 1, code: 'E_WORKER_CRASH', error: 'worker process 5 died (code null, signal SIGKILL)' }] },
    { ...ok(1), warnings: { count: 7, first: ['VipsJpeg: Corrupt JPEG data: premature end of data segment'] } },
    ok(2),
    ...Array.from({ length: 3 }, (_, i) => ({ ...ok(3 + i), warnings: { count: 1, first: ['w'] } })),
  ];
  const lines = attentionSummary(slides, 3);
  t.equal(lines[0], 'slide s0: ok after 2 attempt(s) (attempt 1: E_WORKER_CRASH worker process 5 died (code null, signal SIGKILL))');
  t.equal(lines[1], 'slide s1: 7 worker message(s) while it ran, e.g. "VipsJpeg: Corrupt JPEG data: premature end of data segment"');
  t.equal(lines.length, 4);
  t.equal(lines[3], '... and 2 more slide(s) with retries or worker messages; see report.json');
});

t.test('report.html for a big run: failures by code, a capped slide table (slides to look at first), capped lists', async (t) => {
  const n = 2000;
  const slides = Array.from({ length: n }, (_, i) => failedSlide(i, 'E_SLIDE_MISSING', `s${i}: no slide file`));
  slides.push({ ...failedSlide(n, 'x', ''), status: 'ok', error: null, attempts: 2, failed_attempts: [{ attempt: 1, code: 'E_WORKER_CRASH', error: 'died' }] });
  const report: RunReport = {
    started_at: 'now', elapsed_s: 1, exit_code: 1, params: {}, models: {}, slides,
    patients: { written: 1, dropped: Array.from({ length: n }, (_, i) => ({ patient_id: `p${i}`, reason: `no-embeddings: slide(s) failed: s${i}` })) },
    shards: [], stages: [], peak_rss_mb: 1, max_tiles_in_flight: 1, tile_budget: 1, tiles_written: 0,
    failures: groupFailures(slides, new Map()), warnings: ['--workers 9 is more than the 2 core(s)'],
  };
  const html = await renderHtml(report, new Map());
  t.match(html, `<h3>E_SLIDE_MISSING: ${n} slide(s)</h3>`);
  t.match(html, `<li>... and ${n - FIRST_FAILURES} more (report.json)</li>`);
  t.equal(html.match(/<tr class="(ok|failed)">/g)?.length, HTML_LIMITS.slideRows, 'the table is capped');
  t.match(html, `${n + 1 - HTML_LIMITS.slideRows} more slide(s) not listed`);
  t.match(html, '<td>s2000</td>', 'a retried slide is listed although it comes last');
  t.match(html, 'attempt 1 failed: E_WORKER_CRASH: died');
  t.match(html, `... and ${n - HTML_LIMITS.dropped} more (report.json)`);
  t.match(html, '<h2>Warnings</h2><ul><li>--workers 9 is more than the 2 core(s)</li></ul>');
  t.ok(html.length < 200_000, `bounded: ${html.length} characters for ${n} slides`);
  const json = reportJsonText(report);
  t.same(JSON.parse(json), JSON.parse(JSON.stringify(report)), 'report.json text: the same content');
  t.equal(json.split('\n').filter((l) => l.startsWith('    {"image_id":')).length, n + 1, 'one line per slide');
});
