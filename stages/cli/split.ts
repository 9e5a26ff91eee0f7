/**
 * `split --csv train.csv --out DIR [--fractions 0.8,0.1,0.1] [--seed N]`: a patient-grouped,
 * center-stratified split into DIR/train.csv, DIR/validation.csv and DIR/evaluation.csv.
 *
 * Each output holds exactly the input's header line and row lines, byte for byte, in input order, with
 * the input's line ending. A patient never straddles two splits. Per center, the patients (sorted by id,
 * then shuffled by a PRNG seeded from the seed and the center) are cut in the given proportions, as
 * closely as whole patients allow (largest-remainder rounding; ties go to the earlier split). Seeding per
 * center means adding a center leaves the other centers' assignments unchanged.
 *
 * The split itself is the pure function `assignSplits` over parsed rows; `readSplitCsv` is the CSV layer.
 */
import { rename, rm, writeFile, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { mulberry32 } from '../../models/prng.js';
import { readCsv } from '../csv/read.js';
import { checkPatients } from '../csv/patients.js';

export const SPLIT_NAMES = ['train', 'validation', 'evaluation'] as const;
export type SplitName = (typeof SPLIT_NAMES)[number];

export class SplitError extends Error {
  constructor(
    readonly code: 'E_USAGE' | 'E_CSV',
    message: string,
  ) {
    super(message);
    this.name = 'SplitError';
  }
}

/** One data row: where it is, the two columns the split needs, and its original bytes (without line ending). */
export interface SplitRow {
  readonly line: number;
  readonly patient_id: string;
  readonly center_id: string;
  readonly bytes: Uint8Array;
}

export interface SplitCsv {
  readonly file: string;
  readonly header: Uint8Array;
  readonly eol: string;
  readonly rows: readonly SplitRow[];
}

export interface SplitOptions {
  readonly fractions: readonly [number, number, number];
  readonly seed: number;
}

/** Per-center patient counts of each split. */
export type CenterCounts = Map<string, [number, number, number]>;

/**
 * The split index (0 train, 1 validation, 2 evaluation) of every row. Pure and deterministic.
 * Throws E_CSV when a patient's rows disagree on center_id (naming `file` and the lines).
 */
export function assignSplits(rows: readonly SplitRow[], opts: SplitOptions, file = 'CSV'): { split: number[]; centers: CenterCounts } {
  const patientCenter = new Map<string, SplitRow>();
  const centerPatients = new Map<string, string[]>();
  for (const row of rows) {
    const first = patientCenter.get(row.patient_id);
    if (first === undefined) {
      patientCenter.set(row.patient_id, row);
      const list = centerPatients.get(row.center_id) ?? [];
      list.push(row.patient_id);
      centerPatients.set(row.center_id, list);
    } else if (first.center_id !== row.center_id) {
      throw new SplitError('E_CSV', `${file} line ${row.line}: patient ${row.patient_id} has center_id ${row.center_id} but ${first.center_id} on line ${first.line}; a patient must belong to one center`);
    }
  }
  const patientSplit = new Map<string, number>();
  const centers: CenterCounts = new Map();
  for (const center of [...centerPatients.keys()].sort()) {
    const patients = centerPatients.get(center)!.sort();
    shuffle(patients, mulberry32(hash32(`${opts.seed}:${center}`)));
    const counts = apportion(patients.length, opts.fractions);
    centers.set(center, counts);
    let at = 0;
    counts.forEach((count, split) => {
      for (const p of patients.slice(at, at + count)) patientSplit.set(p, split);
      at += count;
    });
  }
  return { split: rows.map((r) => patientSplit.get(r.patient_id)!), centers };
}

/** Whole counts summing to `total`, each within one of fraction*total (largest remainder; ties to the lower index). */
export function apportion(total: number, fractions: readonly number[]): [number, number, number] {
  const exact = fractions.map((f) => f * total);
  const counts = exact.map((x) => Math.floor(x + 1e-9));
  let left = total - counts.reduce((s, c) => s + c, 0);
  const byRemainder = exact.map((x, i) => [x - counts[i]!, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (const [, i] of byRemainder) {
    if (left <= 0) break;
    counts[i]!++;
    left--;
  }
  return [counts[0]!, counts[1]!, counts[2]!];
}

function shuffle<T>(items: T[], random: () => number): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
}


/** FNV-1a over the UTF-16 code units of `s`. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * Reads the CSV once (a file, a FIFO or `-` for standard input) and checks it as the main job does (rows.ts,
 * patients.ts): E_CSV naming the file, line and column. Keeps each row's original bytes.
 */
export async function readSplitCsv(file: string): Promise<SplitCsv> {
  const table = await readCsv(file, { keepData: true });
  await checkPatients(table.rows);
  const data = table.data!;
  const slice = ([start, end]: readonly [number, number]) => {
    // Skip empty lines before the record, then drop its line ending.
    while (start < end && (data[start] === 0x0a || data[start] === 0x0d)) start++;
    if (data[end - 1] === 0x0a) end--;
    if (data[end - 1] === 0x0d) end--;
    return data.subarray(start, end);
  };
  const headerEnd = table.headerSpan![1];
  const eol = data[headerEnd - 2] === 0x0d && data[headerEnd - 1] === 0x0a ? '\r\n' : '\n';
  const rows = table.rows.map((row, i): SplitRow => ({ line: row.line, patient_id: row.patient_id, center_id: row.center_id, bytes: slice(table.rowSpans![i]!) }));
  return { file: table.file, header: slice(table.headerSpan!), eol, rows };
}

/** Parses `--fractions a,b,c`: three non-negative numbers summing to 1. */
export function parseFractions(text: string): [number, number, number] {
  const parts = text.split(',').map((s) => s.trim());
  const values = parts.map(Number);
  const sum = values.reduce((s, v) => s + v, 0);
  if (parts.length !== 3 || parts.some((p) => p === '') || values.some((v) => !Number.isFinite(v) || v < 0) || Math.abs(sum - 1) > 1e-6) {
    throw new SplitError('E_USAGE', `--fractions must be three non-negative numbers summing to 1 (train,validation,evaluation), got ${JSON.stringify(text)}`);
  }
  return [values[0]!, values[1]!, values[2]!];
}

export interface SplitSummary {
  readonly files: Record<SplitName, string>;
  readonly rows: [number, number, number];
  readonly patients: [number, number, number];
  readonly centers: CenterCounts;
}

const USAGE = 'usage: split --csv FILE --out DIR [--fractions 0.8,0.1,0.1] [--seed N]';

/** Where `split` reports: the summary lines (stdout) and warnings such as an empty split (stderr). */
export interface SplitIo {
  log(line: string): void;
  warn?(line: string): void;
}

/** The `split` sub-command. Throws SplitError (E_USAGE) or CsvError (E_CSV) naming the file and line. */
export async function split(argv: readonly string[], io: SplitIo = { log: () => {} }): Promise<SplitSummary> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]!;
    const value = argv[i + 1];
    if (!['--csv', '--out', '--fractions', '--seed'].includes(key) || value === undefined) throw new SplitError('E_USAGE', `unexpected argument ${JSON.stringify(key)}${value === undefined ? ' (missing value)' : ''}; ${USAGE}`);
    args.set(key, value);
  }
  const csvPath = args.get('--csv');
  const outDir = args.get('--out');
  if (csvPath === undefined || outDir === undefined) throw new SplitError('E_USAGE', USAGE);
  const fractions = parseFractions(args.get('--fractions') ?? '0.8,0.1,0.1');
  const seedText = args.get('--seed') ?? '0';
  const seed = Number(seedText);
  if (!/^\d+$/.test(seedText) || !Number.isSafeInteger(seed)) throw new SplitError('E_USAGE', `--seed must be a non-negative integer, got ${JSON.stringify(seedText)}`);

  const files = Object.fromEntries(SPLIT_NAMES.map((n) => [n, join(outDir, `${n}.csv`)])) as Record<SplitName, string>;
  if (Object.values(files).some((f) => resolve(f) === resolve(csvPath))) throw new SplitError('E_USAGE', `--out ${outDir} would overwrite the input ${csvPath}`);
  const csv = await readSplitCsv(csvPath);
  const { split: assigned, centers } = assignSplits(csv.rows, { fractions, seed }, csv.file);

  const eol = Buffer.from(csv.eol);
  const rows: [number, number, number] = [0, 0, 0];
  const patients: [Set<string>, Set<string>, Set<string>] = [new Set(), new Set(), new Set()];
  await mkdir(outDir, { recursive: true });
  const temps: string[] = [];
  try {
    for (const [index, name] of SPLIT_NAMES.entries()) {
      const parts: Uint8Array[] = [csv.header, eol];
      csv.rows.forEach((row, i) => {
        if (assigned[i] !== index) return;
        parts.push(row.bytes, eol);
        rows[index]++;
        patients[index].add(row.patient_id);
      });
      const temp = `${files[name]}.tmp-${process.pid}`;
      temps.push(temp);
      await writeFile(temp, Buffer.concat(parts));
    }
    for (const [i, name] of SPLIT_NAMES.entries()) await rename(temps[i]!, files[name]);
  } finally {
    await Promise.all(temps.map((t) => rm(t, { force: true })));
  }
  const summary: SplitSummary = { files, rows, patients: [patients[0].size, patients[1].size, patients[2].size], centers };
  for (const [i, name] of SPLIT_NAMES.entries()) io.log(`${name}: ${summary.patients[i]} patients, ${rows[i]} rows -> ${files[name]}`);
  const total = summary.patients.reduce((a, b) => a + b, 0);
  for (const [i, name] of SPLIT_NAMES.entries()) {
    if (summary.patients[i] > 0) continue;
    const why = fractions[i] === 0 ? `its fraction is 0` : `${total} patient(s) are too few for a fraction of ${fractions[i]}`;
    io.warn?.(`warning: the ${name} split is empty (${why}): ${files[name]} holds only the header`);
  }
  return summary;
}
