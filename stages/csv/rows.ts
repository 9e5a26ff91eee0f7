/**
 * The slide-list CSV's rows checked against its header, one by one: required columns and cells, plain-file
 * image_ids, integer center_id (int64, kept exactly as a decimal string) and image_num, no duplicate image_id,
 * no repeated header row, and a label on every row when there is a label column. Shared by the main job and
 * `split`, so both accept and refuse the same files.
 */
import type { CsvRow } from '../types.js';
import { CsvError } from './error.js';

export const REQUIRED_COLUMNS = ['image_id', 'center_id', 'patient_id', 'image_num'] as const;
type Required = (typeof REQUIRED_COLUMNS)[number];

const INTEGER = /^-?\d+$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Checks each row of one CSV (create one per file: it remembers the image_ids seen). */
export class RowChecker {
  /** The header's names, trimmed. */
  readonly names: readonly string[];
  /** The CSV has a label column (then every row needs a label); without it the run is inference. */
  readonly withLabel: boolean;
  private readonly idx: Record<Required, number>;
  private readonly label: number;
  private readonly seen = new Map<string, number>();

  /** Throws E_CSV (line 1) naming a missing or repeated column. */
  constructor(
    private readonly file: string,
    header: readonly string[],
  ) {
    this.names = header.map((h) => h.trim());
    const idx = {} as Record<Required, number>;
    for (const c of [...REQUIRED_COLUMNS, 'label']) {
      const at = this.names.indexOf(c);
      if (at >= 0 && this.names.indexOf(c, at + 1) >= 0) throw new CsvError(file, 1, `column "${c}" appears twice in the header (columns ${at + 1} and ${this.names.indexOf(c, at + 1) + 1})`);
    }
    for (const c of REQUIRED_COLUMNS) {
      const i = this.names.indexOf(c);
      if (i < 0) throw new CsvError(file, 1, `missing required column "${c}" (header: ${this.names.join(',')})`);
      idx[c] = i;
    }
    this.idx = idx;
    this.label = this.names.indexOf('label');
    this.withLabel = this.label >= 0;
  }

  /** The checked row for the record starting on `line`; throws E_CSV naming the line and the column. */
  row(line: number, fields: string[]): CsvRow {
    const file = this.file;
    if (fields.length !== this.names.length) throw new CsvError(file, line, `${fields.length} fields, the header has ${this.names.length}`);
    if (fields.every((f, i) => f.trim() === this.names[i])) throw new CsvError(file, line, 'the header row is repeated here (two CSVs concatenated?)');
    const image_id = this.cell(line, fields, 'image_id', '');
    if (/[/\\\0]/.test(image_id) || image_id.startsWith('..') || image_id === '.') {
      throw this.error(line, 'image_id', image_id, `image_id ${JSON.stringify(image_id)} is not a plain file name`);
    }
    const prev = this.seen.get(image_id);
    if (prev !== undefined) throw new CsvError(file, line, `duplicate image_id ${image_id} (first on line ${prev})`, { field: 'image_id' });
    const patient_id = this.cell(line, fields, 'patient_id', image_id);
    const center = this.cell(line, fields, 'center_id', image_id);
    const num = this.cell(line, fields, 'image_num', image_id);
    if (!INTEGER.test(center)) throw this.error(line, 'center_id', image_id, `center_id ${JSON.stringify(center)} is not an integer`);
    const center_id = BigInt(center);
    if (center_id < INT64_MIN || center_id > INT64_MAX) throw this.error(line, 'center_id', image_id, `center_id ${center} is outside the int64 range [${INT64_MIN}, ${INT64_MAX}]`);
    if (!INTEGER.test(num)) throw this.error(line, 'image_num', image_id, `image_num ${JSON.stringify(num)} is not an integer`);
    const image_num = Number(num);
    if (!Number.isSafeInteger(image_num)) throw this.error(line, 'image_num', image_id, `image_num ${num} is beyond 2^53 - 1 in size`);
    let label: string | undefined;
    if (this.withLabel) {
      label = (fields[this.label] ?? '').trim();
      if (label === '') throw this.error(line, 'label', image_id, 'empty label: with a label column every row needs one (no label column at all: inference)');
    }
    this.seen.set(image_id, line);
    return { file, line, image_id, center_id: center_id.toString(), patient_id, image_num, raw: fields, ...(label !== undefined && { label }) };
  }

  /** A required cell, trimmed; empty is an error. */
  private cell(line: number, fields: readonly string[], name: Required, image_id: string): string {
    const value = (fields[this.idx[name]] ?? '').trim();
    if (value === '') throw this.error(line, name, image_id, `empty ${name}`);
    return value;
  }

  /** An error about one cell: names the CSV column (number and name) and the row's image_id when known. */
  private error(line: number, name: string, image_id: string, message: string): CsvError {
    const column = this.names.indexOf(name) + 1;
    return new CsvError(this.file, line, `${message} (column ${column}, ${name}${image_id === '' || name === 'image_id' ? '' : `; image_id ${image_id}`})`, { field: name });
  }
}
