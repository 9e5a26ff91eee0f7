/** The CSV's error: code E_CSV, naming the file, the line and, where one is at fault, the column. */
export class CsvError extends Error {
  readonly code = 'E_CSV';
  /** 1-based character column on the line, for errors about bytes (invalid UTF-8). */
  readonly column: number | undefined;
  /** The CSV column (header name) at fault, for errors about one cell. */
  readonly field: string | undefined;

  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
    options: { cause?: unknown; column?: number; field?: string } = {},
  ) {
    super(`E_CSV: ${file}:${line}${options.column === undefined ? '' : `:${options.column}`}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CsvError';
    this.column = options.column;
    this.field = options.field;
  }
}
