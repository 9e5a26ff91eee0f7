/**
 * The coordinator's view of its own jobs in the queue, for the overall progress: how many of this run's jobs are
 * waiting, active (and on which hosts), retrying, completed or failed, as Redis holds them in BullMQ's own lists and
 * sets. Only this run's job ids are looked at (other runs may share the queue), in one round trip per refresh: a
 * read-only script that checks each id against BullMQ's completed / failed / delayed sets (O(log n) each) and the
 * active list (read once: it holds one job per busy worker process, whatever the queue's length). BullMQ's own
 * `getJobState` would search the wait list for each waiting id (O(queue) per id), and `getJobCounts` counts every
 * run's jobs. A job found completed or failed is not asked about again; each refresh asks about at most
 * MAX_IDS_PER_REFRESH of the others: first those the coordinator heard something of since the last refresh (an event:
 * taken, progressed, finished), then the rest in turn, so a refresh's cost is bounded whatever the run's size and a
 * change is seen at the next refresh.
 */
import type { ItemJobProgress, ItemQueue } from './job-data.js';

/** This run's jobs as the queue holds them (one refresh). */
export interface QueueCounts {
  /** Jobs this run added (or found in Redis from an earlier start of it) so far. */
  readonly jobs: number;
  readonly waiting: number;
  readonly active: number;
  /** Active jobs per host (the host their attempt reported in its progress; `?` before its first report). */
  readonly hosts: Readonly<Record<string, number>>;
  /** Waiting or delayed again after an attempt whose process crashed or whose machine was lost. */
  readonly retrying: number;
  readonly completed: number;
  readonly failed: number;
  /** Added by this run but not in Redis now (lost by a Redis restart; the coordinator adds them again). */
  readonly lost: number;
  /** Items taken from committed checkpoints: no job. */
  readonly replayed: number;
  /** The refresh made once every item of the run was done. */
  readonly final: boolean;
}

type JobState = 'waiting' | 'active' | 'retrying' | 'completed' | 'failed' | 'lost';

/** Ids one refresh asks about, at most (the others keep their last known state until their turn). */
export const MAX_IDS_PER_REFRESH = 1000;

const SCRIPT = 'wsiRunJobStates';

/**
 * KEYS: active, completed, failed, delayed. ARGV[1]: the queue's key prefix (a job's hash is prefix .. id); then the
 * ids. Per id: state (c f a d w u), then for a, d and w the hash's attemptsMade, stalledCounter, attemptsStarted and
 * progress ('' when absent).
 */
const LUA = `
local active = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do active[id] = true end
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local state
  if redis.call('ZSCORE', KEYS[2], id) then state = 'c'
  elseif redis.call('ZSCORE', KEYS[3], id) then state = 'f'
  elseif active[id] then state = 'a'
  elseif redis.call('ZSCORE', KEYS[4], id) then state = 'd'
  else state = 'w' end
  local f = {'', '', '', ''}
  if state ~= 'c' and state ~= 'f' then
    local h = redis.call('HMGET', ARGV[1] .. id, 'timestamp', 'atm', 'stc', 'ats', 'progress')
    if not h[1] then state = 'u' end
    f = {h[2] or '', h[3] or '', h[4] or '', h[5] or ''}
  end
  out[#out + 1] = state
  for _, v in ipairs(f) do out[#out + 1] = v end
end
return out
`;

const FIELDS = 5;

export class RunJobCounts {
  private readonly states = new Map<string, { state: JobState; host?: string }>();
  private replayedItems = 0;
  /** Ids to ask about first (changed()), each with the number of the change last heard of it. */
  private readonly heard = new Map<string, number>();
  private heardSeq = 0;
  private cursor = 0;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private failing = false;
  /** The client the script was defined on (BullMQ's, from the queue's backend). */
  private definedOn: unknown;

  constructor(
    private readonly queue: ItemQueue,
    private readonly onCounts: (c: QueueCounts) => void,
    private readonly onError: (err: Error) => void,
  ) {}

  /** A job of this run, just added or found waiting or running (counted as waiting until a refresh says more). */
  track(jobId: string): void {
    const known = this.states.get(jobId);
    if (known === undefined || known.state === 'completed' || known.state === 'failed' || known.state === 'lost') this.states.set(jobId, { state: 'waiting' });
  }

  /** The coordinator heard of `jobId` (progress, completion): it is asked about first at the next refresh. */
  changed(jobId: string): void {
    if (this.states.has(jobId)) this.heard.set(jobId, ++this.heardSeq);
  }

  /** An item replayed from its checkpoint (no job). */
  replayed(): void {
    this.replayedItems++;
  }

  /** Refreshes every `everyMs` until close(). */
  start(everyMs: number): void {
    this.timer = setInterval(() => {
      if (this.refreshing === undefined) void this.refresh(false); // a slow round trip delays the next, never doubles it
    }, everyMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * One round trip for the next MAX_IDS_PER_REFRESH unfinished ids, then the counts to `onCounts`. `final` (every
   * item done): every unfinished id is asked about (in as many round trips as that takes). No two refreshes overlap.
   */
  async refresh(final: boolean): Promise<void> {
    while (this.refreshing !== undefined) await this.refreshing;
    const run = this.ask(final).finally(() => (this.refreshing = undefined));
    this.refreshing = run;
    await run;
  }

  private async ask(final: boolean): Promise<void> {
    try {
      const open = [...this.states].filter(([, s]) => !isFinished(s.state)).map(([id]) => id);
      const batches = final ? chunks(open, MAX_IDS_PER_REFRESH) : [this.nextBatch(open)];
      for (const ids of batches) {
        if (ids.length === 0) continue;
        const asked = this.heardSeq;
        this.read(ids, await this.askRedis(ids));
        // Done with what was heard before the question; an id heard of during the round trip is asked again next time.
        for (const id of ids) if ((this.heard.get(id) ?? Infinity) <= asked) this.heard.delete(id);
      }
      this.failing = false;
    } catch (err) {
      // Redis away (restarting): said once until a refresh works again; the counts wait for the next refresh.
      if (!this.failing) this.onError(new Error(`the queue's counts were not refreshed: ${(err as Error).message}`));
      this.failing = true;
      if (!final) return;
    }
    this.onCounts(this.counts(final));
  }

  /** The ids heard of first, then the others in turn from where the last refresh stopped: MAX_IDS_PER_REFRESH at most. */
  private nextBatch(open: readonly string[]): string[] {
    const batch = [...this.heard.keys()].filter((id) => !isFinished(this.states.get(id)?.state)).slice(0, MAX_IDS_PER_REFRESH);
    const taken = new Set(batch);
    if (this.cursor >= open.length) this.cursor = 0;
    for (let n = 0; n < open.length && batch.length < MAX_IDS_PER_REFRESH; n++) {
      const id = open[(this.cursor + n) % open.length]!;
      if (!taken.has(id)) batch.push(id);
    }
    this.cursor = (this.cursor + MAX_IDS_PER_REFRESH) % Math.max(1, open.length);
    return batch;
  }

  /** The script's reply for `ids` (one round trip). */
  private async askRedis(ids: readonly string[]): Promise<string[]> {
    const client = await this.queue.getBackend().client;
    if (this.definedOn !== client) {
      client.defineCommand(SCRIPT, { numberOfKeys: 4, lua: LUA }); // it only reads; not EVALSHA_RO, which Redis 6.2 lacks
      this.definedOn = client;
    }
    const q = this.queue;
    return (await client.runCommand(SCRIPT, [q.toKey('active'), q.toKey('completed'), q.toKey('failed'), q.toKey('delayed'), q.toKey(''), ...ids])) as string[];
  }

  private read(ids: readonly string[], reply: readonly string[]): void {
    ids.forEach((id, i) => {
      const [code, atm, stc, ats, progress] = reply.slice(i * FIELDS, (i + 1) * FIELDS);
      const attemptsMade = Number(atm || 0);
      const again = attemptsMade > 0 || Number(stc || 0) > 0;
      if (code === 'c') this.states.set(id, { state: 'completed' });
      else if (code === 'f') this.states.set(id, { state: 'failed' });
      else if (code === 'u') this.states.set(id, { state: 'lost' });
      else if (code === 'a') this.states.set(id, { state: 'active', host: hostOf(progress ?? '', Math.max(Number(ats || 0), attemptsMade + 1)) });
      else this.states.set(id, { state: code === 'd' || again ? 'retrying' : 'waiting' });
    });
  }

  private counts(final: boolean): QueueCounts {
    const n: Record<JobState, number> = { waiting: 0, active: 0, retrying: 0, completed: 0, failed: 0, lost: 0 };
    const hosts: Record<string, number> = {};
    for (const s of this.states.values()) {
      n[s.state]++;
      if (s.state === 'active') hosts[s.host ?? '?'] = (hosts[s.host ?? '?'] ?? 0) + 1;
    }
    return { jobs: this.states.size, ...n, hosts, replayed: this.replayedItems, final };
  }
}

/** The host of the running attempt, from the job's progress when that progress is the attempt's own ('?' otherwise). */
function hostOf(progress: string, attempt: number): string {
  if (progress === '') return '?';
  try {
    const p = JSON.parse(progress) as Partial<ItemJobProgress> | number;
    return typeof p === 'object' && p !== null && typeof p.host === 'string' && p.attempt === attempt ? p.host : '?';
  } catch {
    return '?'; // not our progress object (a foreign writer): the host is unknown, the job still counts as active
  }
}

/** Completed or failed: final, not asked about again (undefined: not a job of this run). */
function isFinished(state: JobState | undefined): boolean {
  return state === undefined || state === 'completed' || state === 'failed';
}

function chunks<T>(xs: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}
