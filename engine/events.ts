/** Per-item and per-worker events of a fan-out stage (for the progress display and the run report). */

export type ItemEvent =
  /** `host`: the machine that runs the attempt when it is not this one (a queue runner, engine/queue/; `pid` is then that machine's). */
  | { readonly type: 'started'; readonly stage: string; readonly key: string; readonly attempt: number; readonly pid: number; readonly host?: string }
  /** Another worker joined a running shared item (fan-out `share`); its results count towards the same attempt. */
  | { readonly type: 'joined'; readonly stage: string; readonly key: string; readonly attempt: number; readonly pid: number }
  | { readonly type: 'retry'; readonly stage: string; readonly key: string; readonly attempt: number; readonly error: Error }
  /** One more result of the attempt arrived (staged results reach downstream only at 'done'): `value` is that result. */
  | { readonly type: 'progress'; readonly stage: string; readonly key: string; readonly attempt: number; readonly count: number; readonly value: unknown }
  /** An attempt on another machine (queue runner) reported how far it got: `tiles` done of `total` (when known). */
  | { readonly type: 'remote-progress'; readonly stage: string; readonly key: string; readonly attempt: number; readonly tiles: number; readonly total?: number }
  /** `host`, `stalls`: with a queue runner, the machine that ran the item and how often its job was found stalled (machine lost). */
  | { readonly type: 'done'; readonly stage: string; readonly key: string; readonly attempt: number; readonly durationMs: number; readonly count: number; readonly host?: string; readonly stalls?: number }
  | { readonly type: 'failed'; readonly stage: string; readonly key: string; readonly attempt: number; readonly error: Error; readonly host?: string; readonly stalls?: number }
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
