/**
 * report.html's precision section: the embedder's precision (fp32 or int8) and, for int8, what report.json's
 * `params.precision` records: the int8 model and its sha256 (and the fp32 model it was made from), the calibration
 * and held-out samples (size, slides, identity), the accuracy gate (thresholds and figures) and the tensors kept in
 * fp32 by the fallback (models/README.md "int8 embedder").
 */
import type { PrecisionRecord } from '../cli/precision.js';

/** The section as HTML, every value escaped by `escape`; a report without a precision record reads as fp32 (the default). */
export function precisionSection(params: Readonly<Record<string, unknown>>, escape: (text: string) => string): string {
  const record = params.precision as PrecisionRecord | undefined;
  const q = record?.int8;
  if (record === undefined || record.precision !== 'int8' || q === undefined) {
    return '<h2>Precision</h2>\n<p class="precision" data-precision="fp32">Embedder precision: <b>fp32</b> (no quantization).</p>';
  }
  const f = q.figures;
  const cos = (v: number): string => v.toFixed(5);
  const sample = (tiles: number, sha: string, slides?: number): string => `${tiles} tiles${slides === undefined ? '' : ` from ${slides} slide(s)`}; identity sha256 <code>${escape(sha)}</code>`;
  const rows: Array<[string, string]> = [
    ['int8 model', `${escape(q.model)}<br>sha256 <code>${escape(q.sha256)}</code>${q.reused ? ' (cached: built by an earlier run)' : ''}`],
    ['made from (fp32)', `sha256 <code>${escape(q.fp32_sha256)}</code>`],
    ['calibration sample', `${sample(q.calibration.tiles, q.calibration.sample_sha256, q.calibration.slides)}; ranges by ${escape(q.calibration.method)}${q.calibration.reused ? ' (cached)' : ''}`],
    ['held-out sample', sample(q.held_out.tiles, q.held_out.sample_sha256)],
    ['gate', `mean cosine &ge; ${q.gate.mean}, 1st percentile &ge; ${q.gate.p1}`],
    ['figures', `on ${f.tiles} held-out tiles: mean cosine <b>${cos(f.mean_cosine)}</b>, 1st percentile <b>${cos(f.p1_cosine)}</b>, min ${cos(f.min_cosine)}, max abs error ${f.max_abs_error.toPrecision(3)}`],
    ['kept in fp32', keptFloat(q, cos, escape)],
  ];
  const table = rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join('\n');
  return `<h2>Precision</h2>
<p class="precision" data-precision="int8">Embedder precision: <b>int8</b> (static QDQ, ${q.quantized_tensors} tensors quantized), gated against fp32 on this run's own tiles.</p>
<div class="scroll"><table class="precision">
${table}</table></div>`;
}

/** The tensors the fallback kept in float (with their errors) and the figures before it, or 'none'. */
function keptFloat(q: NonNullable<PrecisionRecord['int8']>, cos: (v: number) => string, escape: (text: string) => string): string {
  if (q.kept_float.length === 0) return 'none';
  const list = q.kept_float.map((k) => `${escape(k.label)} (${escape(k.tensor)}; relative error ${k.error.toFixed(4)})`).join('<br>');
  const first = q.first_figures;
  return `${q.kept_float.length} tensor(s):<br>${list}<br>with every tensor quantized: mean cosine ${cos(first.mean_cosine)}, 1st percentile ${cos(first.p1_cosine)}`;
}
