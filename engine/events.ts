/** Per-item and per-worker events of a fan-out stage (for the progress display and the run report). */

export type ItemEvent =
  | { readonly type: 'started'; readonly stage: string; readonly key: string; readonly attempt: number; readonly pid: number }
  /** Another worker joined a running shared item (fan-out `share`); its results count towards the same attempt. */
  | { readonly type: 'joined'; readonly stage: string; readonly key: string; readonly attempt: number; readonly pid: number }
  | { readonly type: 'retry'; readonly stage: string; readonly key: string; readonly attempt: number; readonly error: Error }
  /** One more result of the attempt arrived (staged results reach downstream only at 'done'): `value` is that result. */
  | { readonly type: 'progress'; readonly stage: string; readonly key: string; readonly attempt: number; readonly count: number; readonly value: unknown }
  | { readonly type: 'done'; readonly stage: string; readonly key: string; readonly attempt: number; readonly durationMs: number; readonly count: number }
  | { readonly type: 'failed'; readonly stage: string; readonly key: string; readonly attempt: number; readonly error: Error }
  | { readonly type: 'replayed'; readonly stage: string; readonly key: string; readonly count: number };

export type WorkerEvent =
  | { readonly type: 'spawn'; readonly stage: string; readonly pid: number }
  | { readonly type: 'exit'; readonly stage: string; readonly pid: number; readonly code: number | null; readonly signal: string | null };

/** A failed item as listed in the run result. */
export interface ItemFailure {
  readonly stage: string;
  readonly key: string;
  readonly error: Error;
}
