/**
 * Sharing (fan-out `share: true`): once the input has run dry, a slot left without an item joins a running one.
 * `SharedAttempt` is one attempt of a shared item (its parts counter and participants); `ShareBoard` is what the
 * slots of one fan-out see of each other: the shared attempts running now, how many slots hold an item, and a
 * signal that something changed.
 */
import type { Outcome, RunShare } from '../worker-proc.js';

/**
 * One attempt of a shared item: the parts counter every participant claims from, and the participants that
 * joined it. Results from all participants reach `onResult` one at a time (staging appends one by one).
 */
export class SharedAttempt {
  private next = 0;
  private total: number | undefined;
  private stopped = false;
  private participants = 1;
  private chain: Promise<void> = Promise.resolve();
  /** The joiners' runs; the attempt is over when these and the first worker's run are. */
  readonly joined: Array<Promise<Outcome>> = [];

  constructor(
    readonly key: string,
    readonly item: unknown,
    readonly attempt: number,
    private readonly onResult: (v: unknown) => Promise<void>,
    /** Called when the number of parts becomes known (a process not yet started may now decide to join). */
    private readonly onTotal: () => void,
  ) {}

  /** Parts not yet claimed: unknown (Infinity) until a participant has said how many there are. */
  get remaining(): number {
    if (this.stopped) return 0;
    return this.total === undefined ? Infinity : this.total - this.next;
  }

  /** Whether a participant has said how many parts there are. */
  get sized(): boolean {
    return this.total !== undefined;
  }

  /** What a participant's WorkerProc answers its claims with. */
  share(participant: number): RunShare {
    return { participant, claim: (total) => this.claim(total) };
  }

  /** A new participant's number (1, 2...). */
  join(): number {
    return this.participants++;
  }

  /** No more parts for anyone: a participant failed, so the attempt has, and the others should stop soon. */
  stop(): void {
    this.stopped = true;
  }

  add(v: unknown): Promise<void> {
    const p = this.chain.then(() => this.onResult(v));
    this.chain = p.catch(() => undefined);
    return p;
  }

  /**
   * The attempt's outcome once every participant is done: the first worker's `own` unless a joiner's run went
   * worse (aborted, then crash, then error: the worst decides whether the item is retried).
   */
  async outcome(own: Outcome): Promise<Outcome> {
    if (own.kind !== 'ok') this.stop();
    const all = [own, ...(await Promise.all(this.joined))];
    const rank = { aborted: 0, crash: 1, error: 2, ok: 3 } as const;
    const worst = all.reduce((a, b) => (rank[b.kind] < rank[a.kind] ? b : a));
    return worst.kind === 'ok' ? { kind: 'ok', n: all.reduce((n, o) => n + (o.kind === 'ok' ? o.n : 0), 0) } : worst;
  }

  private claim(total: number): number {
    if (this.total === undefined) {
      this.total = total;
      this.onTotal();
    }
    return this.stopped ? total : this.next++;
  }
}

/** What the slots of one fan-out know of each other, for sharing: running shared attempts and busy slots. */
export class ShareBoard {
  /** Shared items' attempts running now, which idle slots may join. */
  private readonly running = new Set<SharedAttempt>();
  /** Slots with an item in hand (its process may still be starting); an idle slot waits while there are any. */
  private busySlots = 0;
  private wake: () => void = () => undefined;
  private next = new Promise<void>((resolve) => (this.wake = resolve));

  /** @param minParts a slot joins an attempt only while at least this many of its parts are unclaimed */
  constructor(readonly minParts: number) {}

  /** Resolves at the next notify(): an attempt started, ended or said its size, a slot went idle, or an abort. */
  get changed(): Promise<void> {
    return this.next;
  }

  /** Wakes every slot waiting on `changed`. */
  notify(): void {
    this.wake();
    this.next = new Promise<void>((resolve) => (this.wake = resolve));
  }

  /** Whether some slot still holds an item from the input (its attempt may become joinable). */
  get anyBusy(): boolean {
    return this.busySlots > 0;
  }

  /** Runs `fn` (a slot's item) counted as a busy slot. */
  async busy(fn: () => Promise<void>): Promise<void> {
    this.busySlots++;
    try {
      await fn();
    } finally {
      this.busySlots--;
      this.notify();
    }
  }

  /**
   * The running attempt a slot should join, the one with the most parts left (at least minParts). A slot with a
   * live process (`idle`) joins one before it is sized; one without a process starts one only for an item known to
   * have enough parts left (a job of small slides never forks it).
   */
  pick(idle: boolean): SharedAttempt | undefined {
    let target: SharedAttempt | undefined;
    for (const a of this.running) if (a.remaining >= this.minParts && (idle || a.sized) && (target === undefined || a.remaining > target.remaining)) target = a;
    return target;
  }

  /** Whether `attempt` is still running with enough parts left to join (it may have moved on while a process started). */
  joinable(attempt: SharedAttempt): boolean {
    return this.running.has(attempt) && attempt.remaining >= this.minParts;
  }

  /** Runs the first participant's `run` with `attempt` open to joiners; then the attempt's outcome over all of them. */
  async runOpen(attempt: SharedAttempt, run: () => Promise<Outcome>): Promise<Outcome> {
    let own: Outcome;
    this.running.add(attempt);
    this.notify();
    try {
      own = await run();
    } finally {
      this.running.delete(attempt);
    }
    return attempt.outcome(own);
  }
}
