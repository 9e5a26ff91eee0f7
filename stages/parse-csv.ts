/**
 * Source: the slide-list CSV's rows, as read and checked before the run (stages/csv/read.ts, errors E_CSV naming
 * file, line and column). The file is read once, by the job: this source streams the rows already read, so a
 * FIFO or standard input is not read twice.
 */
import type { Source, StageContext } from '../engine/types.js';
import type { CsvRow } from './types.js';

export function parseCsv(rows: readonly CsvRow[]): Source<CsvRow> {
  return async function* parseCsvSource(ctx: StageContext): AsyncIterable<CsvRow> {
    for (const row of rows) {
      ctx.signal.throwIfAborted();
      yield row;
    }
  };
}
