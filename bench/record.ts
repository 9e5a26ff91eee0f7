/**
 * What one suite run records: `result` (written as results.json) and the table it prints, filled by each figure
 * module through show(); and the median every figure takes of its runs.
 */

export class BenchRecord {
  /** The figures as results.json holds them, in the order they were measured. */
  readonly result: Record<string, unknown> = {};
  private readonly table: [string, string][] = [];

  /** One row of the printed table (also logged at once); bound, so that it can be taken out of the record. */
  readonly show = (what: string, value: string): void => {
    this.table.push([what, value]);
    log(`${what}: ${value}`);
  };

  /** The table, as the suite prints it at the end. */
  formatTable(): string {
    const w = Math.max(...this.table.map(([k]) => k.length));
    return [`\n${'what'.padEnd(w)}  value\n${'-'.repeat(w)}  -----`, ...this.table.map(([k, v]) => `${k.padEnd(w)}  ${v}`)].join('\n');
  }
}

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export const log = (line: string): void => console.error(`[bench] ${line}`);
