/** A bad command line: code E_USAGE (exit code 2). Its own file: every sub-command's option parser throws it. */
export class UsageError extends Error {
  readonly code = 'E_USAGE';
  override readonly name = 'UsageError';
}
