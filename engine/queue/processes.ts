/**
 * A queue worker's local processes (the engine's WorkerProc, as the local pool's): at most `size` at a time, each
 * initialised with one job's config. Jobs of the same run share a config and reuse a process (its model sessions
 * stay loaded); a job of another run gets a process of its own, replacing an idle one if the pool is full.
 */
import { createHash } from 'node:crypto';
import { WorkerProc } from '../worker-proc.js';
import { EngineError } from '../types.js';

export interface ProcessInit {
  readonly moduleUrl: string;
  readonly exportName: string;
  readonly config: unknown;
  readonly stage: string;
  readonly tileLimit: number;
}

interface Entry {
  readonly proc: WorkerProc;
  readonly key: string;
  busy: boolean;
}

export class ProcessPool {
  private readonly entries = new Set<Entry>();

  constructor(
    private readonly size: number,
    private readonly execArgv: string[] = process.execArgv,
    /** Each process's exit (pid, code, signal), for the worker's log. */
    private readonly onExit: (pid: number, code: number | null, signal: string | null) => void = () => undefined,
  ) {}

  /** A live, idle process initialised for `init`, marked busy until release(); forked if needed. */
  async acquire(init: ProcessInit): Promise<WorkerProc> {
    const key = createHash('sha256').update(JSON.stringify([init.moduleUrl, init.exportName, init.config, init.tileLimit])).digest('hex');
    for (const e of this.entries) if (!e.proc.alive) this.entries.delete(e);
    const idle = [...this.entries].filter((e) => !e.busy);
    const same = idle.find((e) => e.key === key);
    if (same !== undefined) {
      same.busy = true;
      return same.proc;
    }
    if (this.entries.size >= this.size) {
      const other = idle[0];
      if (other === undefined) throw new EngineError('E_QUEUE_POOL', init.stage, undefined, `all ${this.size} worker process(es) are busy (more jobs than --workers at once)`);
      this.entries.delete(other);
      await other.proc.close();
    }
    return this.fork(init, key);
  }

  /** Gives a process back (a dead one is dropped at the next acquire). */
  release(proc: WorkerProc): void {
    for (const e of this.entries) if (e.proc === proc) e.busy = false;
  }

  /** Kills every process (SIGKILL) and waits until they are gone. */
  async killAll(): Promise<void> {
    const all = [...this.entries];
    this.entries.clear();
    for (const e of all) e.proc.kill();
    await Promise.all(all.map((e) => e.proc.closed));
  }

  /** Closes every process (idle ones end at once). */
  async closeAll(): Promise<void> {
    const all = [...this.entries];
    this.entries.clear();
    await Promise.all(all.map((e) => e.proc.close()));
  }

  private async fork(init: ProcessInit, key: string): Promise<WorkerProc> {
    const proc = new WorkerProc({
      init: { type: 'init', module: init.moduleUrl, exportName: init.exportName, config: init.config, window: 32, tileLimit: init.tileLimit, stage: init.stage },
      execArgv: this.execArgv,
      onTiles: () => undefined,
      onExit: (pid, code, signal) => this.onExit(pid, code, signal),
    });
    const entry: Entry = { proc, key, busy: true };
    this.entries.add(entry);
    try {
      await proc.ready;
    } catch (e) {
      this.entries.delete(entry);
      proc.kill();
      throw new EngineError('E_STAGE', init.stage, undefined, `worker could not load ${init.moduleUrl}#${init.exportName}: ${(e as Error).message}`, { cause: e });
    }
    return proc;
  }
}
