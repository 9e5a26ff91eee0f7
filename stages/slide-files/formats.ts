/** The job's output formats (`--formats tfrecord,h5,geojson`) and what the per-slide writers are told. */

export const OUTPUT_FORMATS = ['tfrecord', 'h5', 'geojson'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/**
 * `--formats`: a comma list of OUTPUT_FORMATS, each once; tfrecord is required (the dataset's manifest, its
 * record counts and `inspect` are built on the shards). Returns the formats in OUTPUT_FORMATS order, or the
 * reason the value is refused.
 */
export function parseFormats(value: string): OutputFormat[] | { error: string } {
  const names = value.split(',').map((s) => s.trim());
  const unknown = names.filter((n) => !(OUTPUT_FORMATS as readonly string[]).includes(n));
  if (unknown.length > 0) return { error: `--formats: unknown format ${unknown.map((n) => JSON.stringify(n)).join(', ')} in "${value}" (known: ${OUTPUT_FORMATS.join(', ')})` };
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) return { error: `--formats: ${dup} is named twice in "${value}"` };
  if (!names.includes('tfrecord')) return { error: `--formats "${value}" must include tfrecord (the dataset's manifest and inspect are built on the shards)` };
  return OUTPUT_FORMATS.filter((f) => names.includes(f));
}

/** What the per-slide writers (h5, geojson) need from the job. */
export interface SlideFilesConfig {
  readonly formats: readonly OutputFormat[];
  /** The embedder: a name (its weights) and the ONNX file's sha256. */
  readonly encoder: { readonly name: string; readonly sha256: string };
  /** The embeddings' precision ('fp32' or 'int8', as --precision). */
  readonly precision: string;
}
