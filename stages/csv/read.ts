/**
 * The slide-list CSV: header-driven (`image_id, center_id, patient_id, image_num`, optional `label`;
 * other columns ignored but kept in `raw`), streamed with csv-parse (BOM, CRLF, quoted fields).
 */
import { open } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { parse } from 'csv-parse';
import type { CsvRow } from '../types.js';

export const REQUIRED_COLUMNS = ['image_id', 'center_id', 'patient_id', 'image_num'] as const;

export class CsvError extends Error {
  readonly code = 'E_CSV';
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`E_CSV: ${file}:${line}: ${message}`, options);
    this.name = 'CsvError';
  }
}

/**
 * Streams [line, fields] records; line is where the record starts (1-based). csv-parse's own line
 * counter miscounts quoted multi-line fields, so lines are found from byte offsets: a pass-through
 * transform records where each '\n' is, and a record starts where the previous one ended.
 */
async function* records(file: string, signal?: AbortSignal): AsyncGenerator<readonly [number, string[]]> {
  const fh = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new CsvError(file, 0, err.code === 'ENOENT' ? 'file not found' : `cannot open: ${err.message}`, { cause: err });
  });
  const newlines: number[] = [];
  let seen = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) newlines.push(seen + i);
      seen += chunk.length;
      done(null, chunk);
    },
  });
  const input = fh.createReadStream();
  const parser = parse({ bom: true, relax_column_count: true, info: true });
  input.on('error', (err) => parser.destroy(err));
  input.pipe(counter).pipe(parser);
  let start = 0; // byte offset where the next record starts
  let nl = 0; // newlines before `start`
  try {
    for await (const rec of parser as AsyncIterable<{ record: string[]; info: { bytes: number } }>) {
      signal?.throwIfAborted();
      while (nl < newlines.length && newlines[nl]! < start) nl++;
      const line = nl + 1;
      start = rec.info.bytes;
      if (rec.record.length === 1 && rec.record[0] === '') continue; // blank line
      yield [line, rec.record];
    }
  } catch (err) {
    if (err instanceof CsvError || (err as Error).name === 'AbortError') throw err;
    while (nl < newlines.length && newlines[nl]! < start) nl++;
    throw new CsvError(file, nl + 1, `cannot parse: ${(err as Error).message}`, { cause: err });
  } finally {
    parser.destroy();
    input.destroy();
    await fh.close();
  }
}

/** Column positions from the header; throws naming a missing required column. */
function columns(file: string, header: readonly string[]): { idx: Record<(typeof REQUIRED_COLUMNS)[number], number>; label: number } {
  const names = header.map((h) => h.trim());
  const idx = {} as Record<(typeof REQUIRED_COLUMNS)[number], number>;
  for (const c of REQUIRED_COLUMNS) {
    const i = names.indexOf(c);
    if (i < 0) throw new CsvError(file, 1, `missing required column "${c}" (header: ${names.join(',')})`);
    idx[c] = i;
  }
  return { idx, label: names.indexOf('label') };
}

const INTEGER = /^-?\d+$/;

/** Streams validated rows. Errors (code E_CSV) name the file and line. */
export async function* csvRows(file: string, signal?: AbortSignal): AsyncGenerator<CsvRow> {
  let cols: ReturnType<typeof columns> | undefined;
  let width = 0;
  const seen = new Map<string, number>();
  for await (const [line, fields] of records(file, signal)) {
    if (cols === undefined) {
      cols = columns(file, fields);
      width = fields.length;
      continue;
    }
    if (fields.length !== width) throw new CsvError(file, line, `${fields.length} fields, the header has ${width}`);
    const get = (i: number): string => (fields[i] ?? '').trim();
    const image_id = get(cols.idx.image_id);
    const patient_id = get(cols.idx.patient_id);
    if (image_id === '') throw new CsvError(file, line, 'empty image_id');
    if (patient_id === '') throw new CsvError(file, line, `empty patient_id (image_id ${image_id})`);
    if (/[/\\\0]/.test(image_id) || image_id.startsWith('..') || image_id === '.') {
      throw new CsvError(file, line, `image_id ${JSON.stringify(image_id)} is not a plain file name`);
    }
    const center = get(cols.idx.center_id);
    const num = get(cols.idx.image_num);
    if (!INTEGER.test(center)) throw new CsvError(file, line, `center_id ${JSON.stringify(center)} is not an integer (image_id ${image_id})`);
    if (!INTEGER.test(num)) throw new CsvError(file, line, `image_num ${JSON.stringify(num)} is not an integer (image_id ${image_id})`);
    const prev = seen.get(image_id);
    if (prev !== undefined) throw new CsvError(file, line, `duplicate image_id ${image_id} (first on line ${prev})`);
    seen.set(image_id, line);
    const label = cols.label >= 0 ? get(cols.label) : '';
    const row: CsvRow = { file, line, image_id, center_id: Number(center), patient_id, image_num: Number(num), raw: fields, ...(label === '' ? {} : { label }) };
    yield row;
  }
  if (cols === undefined) throw new CsvError(file, 1, 'empty file (no header)');
}

/** The header fields as written (for the split command). */
export async function readCsvHeader(file: string): Promise<string[]> {
  for await (const [, fields] of records(file)) return fields;
  throw new CsvError(file, 1, 'empty file (no header)');
}

/** Reads and validates the whole file (the app calls this before opening any slide). */
export async function readCsv(file: string): Promise<{ header: string[]; rows: CsvRow[] }> {
  const rows: CsvRow[] = [];
  for await (const row of csvRows(file)) rows.push(row);
  return { header: await readCsvHeader(file), rows };
}
