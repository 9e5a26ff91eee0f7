/**
 * What the report and the terminal say about failed slides, retried attempts and worker messages, in a form that
 * stays small for big runs: each error as a code and a short message (the wrappers each layer adds — stage,
 * key, "item failed after N attempt(s)", the slide's name and path — are already in the slide's own fields),
 * failures grouped by code with the first few in full, and caps on what is printed.
 */
import { basename } from 'node:path';
import type { SlideReport } from './report.js';

/** Failures listed in full per code (stderr, report.json's `failures`, report.html). */
export const FIRST_FAILURES = 5;
/** Worker messages kept per slide in report.json, and printed per slide on stderr. */
export const FIRST_MESSAGES = 5;
export const PRINTED_MESSAGES = 3;

/** An error as the report keeps it: its code, the short message, and the full message of the innermost error. */
export interface ErrorFacts {
  readonly code: string;
  readonly message: string;
  readonly full: string;
}

/** Failures of one code: how many slides, and the first few in full. */
export interface FailureGroup {
  code: string;
  count: number;
  first: Array<{ image_id: string; patient_id: string; error: string }>;
}

/** The innermost error of a cause chain that still carries a code (the slide's own error), and the outer code. */
function innermost(err: unknown): { error: unknown; code: string | undefined } {
  let code: string | undefined;
  let error = err;
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 16; e = e.cause, depth++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string' && c.startsWith('E_')) code = c; // an errno code (ENOENT...) is a cause's detail, not ours
    error = e;
  }
  return { error, code };
}

/**
 * The code a failed slide is reported with: the innermost E_ code of the error and its causes (the slide's own,
 * E_SLIDE_FORMAT, rather than the fan-out's E_WORKER_ITEM; E_WORKER_CRASH when the worker died), else E_UNKNOWN.
 */
export function failureCode(err: unknown): string {
  return innermost(err).code ?? 'E_UNKNOWN';
}

/**
 * The code (the innermost one: E_SLIDE_MISSING rather than the fan-out's E_WORKER_ITEM) and the short message
 * of an error: without `[Stage key=...]` prefixes, "item failed after N attempt(s): " and the code itself, and
 * `slide "id" (/slides/c0.tif): ` shortened to `c0.tif: `.
 */
export function errorFacts(err: unknown, fallbackCode = 'E_UNKNOWN'): ErrorFacts {
  const { error, code } = innermost(err);
  // One line each: a libvips error comes as several lines (its message, then the decoder's).
  const full = (error instanceof Error ? error.message : String(error)).trim().replace(/\s*\n\s*/g, ' / ');
  let message = full;
  for (let again = true; again; ) {
    const before = message;
    message = message
      .replace(/^\[[^\]]*\]\s*/, '')
      .replace(/^item failed after \d+ attempt\(s\):\s*/, '')
      .replace(/^E_[A-Z0-9_]+:\s*/, '')
      .replace(/^slide "(?:[^"\\]|\\.)*" \(([^)]*)\):\s*/, (_m, path: string) => `${basename(path)}: `);
    again = message !== before;
  }
  return { code: code ?? fallbackCode, message: message === '' ? full : message, full: stripWrappers(full) };
}

/** A message without the leading `[Stage key=...]` and "item failed after N attempt(s): " wrappers. */
function stripWrappers(message: string): string {
  let m = message;
  for (let before = ''; before !== m; ) {
    before = m;
    m = m.replace(/^\[[^\]]*\]\s*/, '').replace(/^item failed after \d+ attempt\(s\):\s*/, '');
  }
  return m;
}

/**
 * Failed slides grouped by code, the largest group first. `fullErrors` holds the full message of some failures
 * (the first few of each code, see RunRecord): those are listed first, then others with their short message.
 */
export function groupFailures(slides: Iterable<SlideReport>, fullErrors: ReadonlyMap<string, string>): FailureGroup[] {
  const groups = new Map<string, FailureGroup>();
  const rest = new Map<string, SlideReport[]>();
  for (const s of slides) {
    if (s.status !== 'failed') continue;
    const code = s.code ?? 'E_UNKNOWN';
    let g = groups.get(code);
    if (g === undefined) groups.set(code, (g = { code, count: 0, first: [] }));
    g.count++;
    const full = fullErrors.get(s.image_id);
    if (full !== undefined && g.first.length < FIRST_FAILURES) g.first.push({ image_id: s.image_id, patient_id: s.patient_id, error: full });
    else if ((rest.get(code)?.length ?? 0) < FIRST_FAILURES) rest.set(code, [...(rest.get(code) ?? []), s]);
  }
  for (const g of groups.values()) {
    for (const s of rest.get(g.code) ?? []) {
      if (g.first.length >= FIRST_FAILURES) break;
      g.first.push({ image_id: s.image_id, patient_id: s.patient_id, error: `${g.code}: ${s.error ?? ''}` });
    }
  }
  return [...groups.values()].sort((a, b) => b.count - a.count || a.code.localeCompare(b.code));
}

/**
 * The failure summary for stderr: a line per code with its count, the first few failures in full, and how many
 * more there are (they are all in report.json).
 */
export function failureSummary(groups: readonly FailureGroup[], reportJson: string): string[] {
  const total = groups.reduce((n, g) => n + g.count, 0);
  if (total === 0) return [];
  // Counts by code when not every failure is listed below (or there are several codes).
  const listedAll = groups.length === 1 && groups[0]!.count === groups[0]!.first.length;
  const lines = [listedAll ? `${total} slide(s) failed:` : `${total} slide(s) failed: ${groups.map((g) => `${g.count} ${g.code}`).join(', ')}`];
  for (const g of groups) {
    for (const f of g.first) lines.push(`  slide ${f.image_id} (patient ${f.patient_id}) failed: ${f.error}`);
    if (g.count > g.first.length) lines.push(`  ... and ${g.count - g.first.length} more ${g.code}; see ${reportJson}`);
  }
  return lines;
}

/** Slides that were retried or printed messages: what stderr says about them (at most `limit` lines, then a count). */
export function attentionSummary(slides: Iterable<SlideReport>, limit = 10): string[] {
  const lines: string[] = [];
  let more = 0;
  for (const s of slides) {
    const notes: string[] = [];
    if ((s.failed_attempts?.length ?? 0) > 0) {
      const causes = s.failed_attempts!.map((a) => `attempt ${a.attempt}: ${a.code} ${a.error}`).join('; ');
      notes.push(`${s.status === 'ok' ? 'ok' : 'failed'} after ${s.attempts} attempt(s) (${causes})`);
    }
    if (s.warnings !== undefined) notes.push(`${s.warnings.count} worker message(s) while it ran, e.g. ${JSON.stringify(s.warnings.first[0])}`);
    if (notes.length === 0) continue;
    if (lines.length < limit) lines.push(`slide ${s.image_id}: ${notes.join('; ')}`);
    else more++;
  }
  if (more > 0) lines.push(`... and ${more} more slide(s) with retries or worker messages; see report.json`);
  return lines;
}
