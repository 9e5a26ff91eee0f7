/** Source: streams the validated rows of the slide-list CSV (errors: E_CSV naming file and line). */
import type { Source, StageContext } from '../engine/types.js';
import type { CsvRow } from './types.js';
import { csvRows } from './csv/read.js';

export { readCsv, readCsvHeader, CsvError } from './csv/read.js';

export function parseCsv(file: string): Source<CsvRow> {
  return async function* parseCsvSource(ctx: StageContext): AsyncIterable<CsvRow> {
    for await (const row of csvRows(file, ctx.signal)) {
      yield row;
    }
  };
}
