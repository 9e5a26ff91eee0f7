/**
 * The slide-list CSV, read once: header-driven (`image_id, center_id, patient_id, image_num`, optional `label`;
 * other columns ignored but kept in `raw`), streamed with csv-parse (BOM, CRLF, quoted fields), from a file, a
 * FIFO or standard input (`-`). Bytes are checked by lines.ts (UTF-8), rows by rows.ts; every error is an E_CSV
 * naming the file and line (and the column, where one is at fault).
 */
import { open } from 'node:fs/promises';
import { pipeline, type Readable } from 'node:stream';
import { parse } from 'csv-parse';
import type { CsvRow } from '../types.js';
import { CsvError } from './error.js';
import { LineScanner } from './lines.js';
import { RowChecker } from './rows.js';

export { CsvError } from './error.js';
export { REQUIRED_COLUMNS } from './rows.js';

/** `--csv -`: the CSV comes from standard input; errors name it STDIN_NAME. */
export const STDIN = '-';
export const STDIN_NAME = '<stdin>';
/**
 * Read as process.stdin too: opening /dev/stdin fails (ENXIO) when standard input is a socket, as it is for a
 * child spawned by node with a 'pipe' stdio.
 */
const STDIN_PATHS = new Set([STDIN, '/dev/stdin', '/dev/fd/0', '/proc/self/fd/0']);

/** One CSV record: the line it starts on (1-based), its fields, and its bytes [start, end) in the input. */
interface CsvRecord {
  readonly line: number;
  readonly fields: string[];
  readonly start: number;
  readonly end: number;
}

/** A CSV read and checked. */
export interface CsvTable {
  /** The file as errors and rows name it (STDIN_NAME for standard input). */
  readonly file: string;
  /** The header's fields as written. */
  readonly header: string[];
  readonly withLabel: boolean;
  readonly rows: CsvRow[];
  /** Only with `keepData`: every byte read, and where the header and each row are in it ([start, end), row order). */
  readonly data?: Buffer;
  readonly headerSpan?: readonly [number, number];
  readonly rowSpans?: ReadonlyArray<readonly [number, number]>;
}

/**
 * Reads and checks the whole CSV in one pass over its bytes (so a FIFO or standard input works); the job
 * calls this before opening any slide. `keepData` also keeps the bytes (the split command writes rows back
 * byte for byte). Throws CsvError.
 */
export async function readCsv(file: string, opts: { keepData?: boolean; signal?: AbortSignal } = {}): Promise<CsvTable> {
  const name = file === STDIN ? STDIN_NAME : file;
  const chunks: Buffer[] | undefined = opts.keepData ? [] : undefined;
  let checker: RowChecker | undefined;
  let header: string[] = [];
  let headerSpan: readonly [number, number] = [0, 0];
  const rows: CsvRow[] = [];
  const rowSpans: Array<readonly [number, number]> = [];
  for await (const rec of records(file, name, chunks, opts.signal)) {
    if (checker === undefined) {
      checker = new RowChecker(name, rec.fields);
      header = rec.fields;
      headerSpan = [rec.start, rec.end];
      continue;
    }
    rows.push(checker.row(rec.line, rec.fields));
    rowSpans.push([rec.start, rec.end]);
  }
  if (checker === undefined) throw new CsvError(name, 1, 'empty file (no header)');
  const table = { file: name, header, withLabel: checker.withLabel, rows };
  return chunks === undefined ? table : { ...table, data: Buffer.concat(chunks), headerSpan, rowSpans };
}

/** The CSV's bytes: standard input, or the file opened once (a FIFO's open waits for its writer). */
async function openInput(file: string, name: string): Promise<{ input: Readable; close(): Promise<void> }> {
  if (STDIN_PATHS.has(file)) return { input: process.stdin, close: async () => {} };
  const fh = await open(file, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new CsvError(name, 0, err.code === 'ENOENT' ? 'file not found' : `cannot open: ${err.message}`, { cause: err });
  });
  return { input: fh.createReadStream({ autoClose: false }), close: () => fh.close() };
}

/**
 * Streams the records, blank lines skipped. Lines are counted from byte offsets (LineScanner): a record
 * starts where the previous one ended. `chunks`, when given, receives every byte read.
 */
async function* records(file: string, name: string, chunks: Buffer[] | undefined, signal?: AbortSignal): AsyncGenerator<CsvRecord> {
  const { input, close } = await openInput(file, name);
  const scanner = new LineScanner(name, chunks);
  const parser = parse({ bom: true, relax_column_count: true, info: true });
  // On any error every stream is destroyed, the parser with the error: the loop below throws it.
  pipeline(input, scanner, parser, () => {});
  let start = 0; // byte offset where the next record starts
  let nl = 0; // newlines before `start`
  const lineAt = (offset: number): number => {
    while (nl < scanner.newlines.length && scanner.newlines[nl]! < offset) nl++;
    return nl + 1;
  };
  try {
    for await (const rec of parser as AsyncIterable<{ record: string[]; info: { bytes: number } }>) {
      signal?.throwIfAborted();
      const line = lineAt(start);
      const end = rec.info.bytes;
      const record = { line, fields: rec.record, start, end };
      start = end;
      if (rec.record.length === 1 && rec.record[0] === '') continue; // blank line
      yield record;
    }
  } catch (err) {
    if (err instanceof CsvError || (err as Error).name === 'AbortError') throw err;
    const code = (err as { code?: string }).code ?? '';
    const what = code.startsWith('CSV_') ? 'cannot parse' : 'cannot read';
    throw new CsvError(name, lineAt(start), `${what}: ${(err as Error).message}`, { cause: err });
  } finally {
    parser.destroy();
    if (input !== process.stdin) input.destroy();
    await close();
  }
}
