/**
 * The parent's handle on one worker process: forks engine/worker, reads its data frames (fd 3) in
 * order, hands each result to the current attempt, and grants credits back as results are taken.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { FrameDecoder } from './frames.js';
import { fromWire, type DataFrame, type FromWorker, type ToWorker } from './protocol.js';
import type { StageMetrics } from './types.js';
import { workerEnv } from './allocator.js';

/** How an attempt ended. `aborted`: the parent stopped taking results (downstream failed). */
export type Outcome =
  | { readonly kind: 'ok'; readonly n: number }
  | { readonly kind: 'error'; readonly error: Error }
  | { readonly kind: 'crash'; readonly error: Error }
  | { readonly kind: 'aborted'; readonly error: unknown };

/** A shared item's side in the parent: who this worker is among its participants, and the item's counter. */
export interface RunShare {
  readonly participant: number;
  claim(total: number): number;
}

interface Attempt {
  readonly id: number;
  readonly onResult: (v: unknown) => Promise<void>;
  readonly share: RunShare | undefined;
  readonly resolve: (o: Outcome) => void;
}

// Under tap the engine runs as .ts and the child inherits the TypeScript loader through execArgv.
const entry = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url));

/**
 * The options every worker process is forked with: stderr is piped (each line goes to the stderr sink, see
 * onWorkerStderr), fd 3 is the data pipe, then the IPC channel; the environment adds the allocator settings of
 * engine/allocator.ts.
 */
function forkWorker(execArgv: string[], args: string[] = []): ChildProcess {
  const child = fork(entry, args, { stdio: ['inherit', 'inherit', 'pipe', 'pipe', 'ipc'], serialization: 'advanced', execArgv, env: workerEnv() });
  pipeStderr(child);
  return child;
}

/** Receives each line a worker process writes on stderr (its own or a native library's, e.g. a libvips warning). */
export type StderrSink = (pid: number, line: string) => void;

const toOwnStderr: StderrSink = (_pid, line) => void process.stderr.write(`${line}\n`);
let stderrSink: StderrSink = toOwnStderr;

/**
 * Routes the worker processes' stderr, a line at a time, to `sink` (so the caller can say which item a message is
 * about); without a sink, lines go to this process's stderr unchanged. Applies to every worker, running or not.
 */
export function onWorkerStderr(sink?: StderrSink): void {
  stderrSink = sink ?? toOwnStderr;
}

/** Longest stderr line passed on whole; a longer run of bytes without a newline is passed on in pieces. */
const MAX_LINE = 64 * 1024;

function pipeStderr(child: ChildProcess): void {
  const stream = child.stderr;
  if (stream === null) return;
  const pid = child.pid ?? 0;
  let rest = '';
  const emit = (line: string): void => {
    const text = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (text.trim() !== '') stderrSink(pid, text);
  };
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) emit(line);
    if (rest.length > MAX_LINE) {
      emit(rest);
      rest = '';
    }
  });
  stream.on('end', () => {
    emit(rest);
    rest = '';
  });
}

/** Processes forked ahead of need by prestartWorkers, each waiting for its init message. */
const prestarted: Array<{ child: ChildProcess; execArgv: string }> = [];

/** How many processes prestartWorkers has forked since the last stopPrestarted(), per module and execArgv. */
const prestartedCount = new Map<string, number>();

/**
 * Makes sure `n` worker processes have been forked ahead of need for `module` since the last stopPrestarted(),
 * forking the difference now: each imports `module` at once, so that node's start-up and the import overlap the
 * parent's own preparation (loading its modules, reading the CSV, hashing the models) instead of following it.
 * The next WorkerProcs created with the same execArgv take them rather than forking. Call stopPrestarted() when
 * the run ends: a process nobody took is killed there (and leaves by itself if the parent dies: IPC disconnect).
 */
export function prestartWorkers(n: number, module: string, execArgv: string[] = process.execArgv): void {
  const args = JSON.stringify(execArgv);
  const key = `${module}\0${args}`;
  for (let i = prestartedCount.get(key) ?? 0; i < n; i++) {
    prestarted.push({ child: forkWorker(execArgv, [module]), execArgv: args });
    prestartedCount.set(key, i + 1);
  }
}

/** Kills the prestarted processes no WorkerProc took. */
export function stopPrestarted(): void {
  prestartedCount.clear();
  for (const { child } of prestarted.splice(0)) child.kill('SIGKILL');
}

/** A live prestarted process forked with `execArgv`, removed from the list; undefined if there is none. */
function takePrestarted(execArgv: string[]): ChildProcess | undefined {
  const key = JSON.stringify(execArgv);
  for (let i = 0; i < prestarted.length; i++) {
    const { child, execArgv: k } = prestarted[i]!;
    // One that already died (its exit went unheard) is dropped, never handed out.
    if (child.exitCode !== null || child.signalCode !== null || !child.connected) {
      prestarted.splice(i--, 1);
      continue;
    }
    if (k === key) {
      prestarted.splice(i, 1);
      return child;
    }
  }
  return undefined;
}

export interface WorkerProcOptions {
  readonly init: Extract<ToWorker, { type: 'init' }>;
  readonly execArgv?: string[];
  readonly onTiles: (pid: number, inUse: number, maxInUse: number) => void;
  /** Final metrics of a sub-graph the worker ran for an item. */
  readonly onMetrics?: (stages: readonly StageMetrics[]) => void;
  readonly onExit: (pid: number, code: number | null, signal: string | null) => void;
}

export class WorkerProc {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves once the module is loaded; rejects if it fails to load or the process dies first. */
  readonly ready: Promise<void>;
  /** Resolves when the process has exited and its pipes are closed. */
  readonly closed: Promise<void>;
  private attempt: Attempt | undefined;
  private chain: Promise<void> = Promise.resolve();
  private ungranted = 0;
  private readonly grantEvery: number;
  private readonly decoder = new FrameDecoder();
  private isClosed = false;
  private readonly onMetrics: ((stages: readonly StageMetrics[]) => void) | undefined;

  constructor(opts: WorkerProcOptions) {
    this.onMetrics = opts.onMetrics;
    this.grantEvery = Math.max(1, Math.floor(opts.init.window / 4));
    const execArgv = opts.execArgv ?? process.execArgv;
    this.child = takePrestarted(execArgv) ?? forkWorker(execArgv);
    if (this.child.pid === undefined) throw new Error('fork failed: no pid');
    this.pid = this.child.pid;
    const data = this.child.stdio[3] as Readable;
    data.on('data', (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk)) this.enqueue(() => this.onFrame(f as DataFrame));
    });
    let readyResolve: () => void = () => undefined;
    let readyReject: (e: Error) => void = () => undefined;
    this.ready = new Promise<void>((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    this.ready.catch(() => undefined); // observed by whoever awaits it; avoid an unhandled rejection otherwise
    this.child.on('message', (msg: FromWorker) => {
      if (msg.type === 'ready') readyResolve();
      else if (msg.type === 'init-error') readyReject(fromWire(msg.error));
      else if (msg.type === 'tiles') opts.onTiles(this.pid, msg.inUse, msg.max);
      else if (msg.type === 'claim') {
        // An attempt given up (or never shared) hands out nothing: the worker stops claiming and ends the item.
        const a = this.attempt;
        const index = a?.id === msg.id && a.share !== undefined ? a.share.claim(msg.total) : msg.total;
        this.send({ type: 'claimed', id: msg.id, index });
      }
    });
    // 'close' is not reliable with an extra pipe plus IPC, so wait for both the exit and the end of the data pipe.
    let exitInfo: { code: number | null; signal: string | null } | undefined;
    let dataClosed = false;
    let onBoth: () => void = () => undefined;
    this.closed = new Promise<void>((resolve) => {
      onBoth = () => {
        if (exitInfo === undefined || !dataClosed || this.isClosed) return;
        const { code, signal } = exitInfo;
        this.isClosed = true;
        readyReject(new Error(`worker ${this.pid} exited before it was ready (code ${code}, signal ${signal})`));
        opts.onTiles(this.pid, 0, 0);
        opts.onExit(this.pid, code, signal);
        // Queued after every frame already read, so results that made it out are handled first.
        this.enqueue(async () => {
          const a = this.attempt;
          this.attempt = undefined;
          a?.resolve({ kind: 'crash', error: new Error(`worker process ${this.pid} died (code ${code}, signal ${signal})`) });
        });
        void this.chain.then(resolve);
      };
    });
    this.child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      onBoth();
    });
    data.on('close', () => {
      dataClosed = true;
      onBoth();
    });
    this.child.on('error', () => this.kill()); // 'close' follows and reports the crash
    this.send(opts.init);
  }

  get alive(): boolean {
    return !this.isClosed;
  }

  /**
   * Runs one item; results go to `onResult` in order (awaited: that is the backpressure). With `share` the item
   * sees ctx.share, and its claims are answered by `share.claim`.
   */
  run(id: number, item: unknown, onResult: (v: unknown) => Promise<void>, share?: RunShare): Promise<Outcome> {
    if (this.attempt !== undefined) throw new Error('worker is busy');
    return new Promise<Outcome>((resolve) => {
      if (this.isClosed) {
        resolve({ kind: 'crash', error: new Error(`worker process ${this.pid} is gone`) });
        return;
      }
      this.attempt = { id, onResult, resolve, share };
      this.send({ type: 'item', id, item, ...(share !== undefined && { participant: share.participant }) });
    });
  }

  kill(): void {
    if (!this.isClosed) this.child.kill('SIGKILL');
  }

  /** Asks the worker to leave (it exits on disconnect); kills it if it has not after `graceMs`. */
  async close(graceMs = 2000): Promise<void> {
    if (this.child.connected) this.child.disconnect();
    const t = setTimeout(() => this.kill(), graceMs);
    await this.closed;
    clearTimeout(t);
  }

  private send(msg: ToWorker): void {
    if (!this.child.connected) return;
    this.child.send(msg, (err) => {
      // A failed send means the process is going away; its 'close' reports the crash.
      if (err) this.kill();
    });
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn);
  }

  private async onFrame(f: DataFrame): Promise<void> {
    const a = this.attempt;
    if (f.t === 'r') {
      if (a !== undefined && a.id === f.id) {
        try {
          await a.onResult(f.v);
        } catch (e) {
          this.attempt = undefined;
          a.resolve({ kind: 'aborted', error: e });
        }
      }
      if (++this.ungranted >= this.grantEvery) {
        this.send({ type: 'credit', n: this.ungranted });
        this.ungranted = 0;
      }
      return;
    }
    if (f.t === 'm') {
      this.onMetrics?.(f.stages);
      return;
    }
    if (a === undefined || a.id !== f.id) return; // the attempt was already given up
    this.attempt = undefined;
    if (f.t === 'end') a.resolve({ kind: 'ok', n: f.n });
    else a.resolve({ kind: 'error', error: fromWire(f.error) });
  }
}
