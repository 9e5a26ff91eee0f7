/**
 * "Machines" for multi-machine tests, as Linux network namespaces (root only): a bridge namespace holding a Linux
 * bridge, and N machine namespaces, each with its own veth pair whose other end is a port of that bridge. Each
 * machine has loopback up and one address of 10.231.0.0/24; the addresses exist only inside the namespaces the lab
 * creates (the host's own interfaces and routes are never touched), and the names carry this test process's pid,
 * so parallel runs cannot collide. The file system is shared (a namespace only changes the network), so one temp
 * folder is every machine's "shared storage".
 *
 * What a test does with it: run a process on a machine (`ip netns exec`, under its own hostname, stdout/stderr captured, output awaited by
 * pattern), take a machine's link down and up (its port on the bridge: a cut cable, the machine sees no error of
 * its own), kill every process of a machine (`ip netns pids` then SIGKILL, as a power loss). `t.teardown` kills
 * every process left in the lab's namespaces, deletes the namespaces (their veths go with them) and checks that no
 * namespace, interface or process of the lab is left.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

export const SUBNET = '10.231.0';

export interface Machine {
  /** For messages: m0, m1, ... */
  readonly name: string;
  /** Its network namespace. */
  readonly ns: string;
  /** Its address on the bridge (10.231.0.x). */
  readonly address: string;
  /** Its veth end inside the namespace, and the peer end on the bridge. */
  readonly dev: string;
  readonly port: string;
}

export interface NsResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface NsProcess {
  readonly child: ChildProcess;
  readonly machine: Machine;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `re` in stdout + stderr (as soon as it appears); rejects if the process exits first. */
  waitOutput(re: RegExp): Promise<RegExpMatchArray>;
  readonly done: Promise<NsResult>;
}

export interface RunOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

export interface Lab {
  readonly machines: readonly Machine[];
  readonly bridgeNs: string;
  /** Starts `cmd args` inside the machine's namespace. */
  run(machine: Machine, cmd: string, args: readonly string[], opts?: RunOptions): NsProcess;
  /** Pids whose network namespace is the machine's (`ip netns pids`). */
  pids(machine: Machine): number[];
  /** SIGKILLs every process of the machine and resolves once none is left; returns the pids it killed. */
  killMachine(machine: Machine): Promise<number[]>;
  /** The machine's port on the bridge down (a cut cable) or up again. */
  linkDown(machine: Machine): void;
  linkUp(machine: Machine): void;
  /** Whatever of the lab is still there (namespaces, interfaces in the host namespace): [] after teardown. */
  leftovers(): string[];
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Runs `ip ...args`; throws with ip's message when it fails. */
function ip(...args: string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Why namespace tests cannot run here, or undefined when they can (root, and `ip netns add` works). */
export function netnsMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'network-namespace tests need root (CI runs as root)';
  const probe = `qprobe${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.error) return `ip (iproute2) is not installed: ${add.error.message}`;
  if (add.status !== 0) return `ip netns add fails here: ${add.stderr.trim()}`;
  const del = spawnSync('ip', ['netns', 'del', probe], { encoding: 'utf8' });
  if (del.status !== 0) return `ip netns del fails here: ${del.stderr.trim()}`;
  return undefined;
}

let labs = 0;

/**
 * Brings the machine's bridge port up and makes the link usable at once: the neighbour entries that failed while it was
 * down (which make a connect fail with EHOSTUNREACH until the kernel probes again) are flushed on every machine, and
 * the call returns once the bridge reports the port forwarding (a bounded number of polls).
 */
function linkUp(bridgeNs: string, m: Machine, machines: readonly Machine[]): void {
  ip('-n', bridgeNs, 'link', 'set', m.port, 'up');
  for (const other of machines) ip('-n', other.ns, 'neigh', 'flush', 'all');
  for (let i = 0; i < 1000; i++) {
    const state = ip('-n', bridgeNs, '-d', 'link', 'show', m.port);
    if (/ state forwarding /.test(state) && /[<,]LOWER_UP[,>]/.test(state)) return;
  }
  throw new Error(`netns: ${m.port} did not come back to forwarding`);
}

/** Creates the bridge and `n` machines (n <= 200); everything is removed in `t.teardown`. */
export function createLab(t: Teardown, n: number): Lab {
  if (n < 1 || n > 200) throw new Error(`createLab: ${n} machines (1..200)`);
  removeOrphanLabs();
  const prefix = `${LAB_PREFIX}${process.pid.toString(36)}_${(labs++).toString(36)}`;
  const bridgeNs = `${prefix}-br`;
  const machines: Machine[] = Array.from({ length: n }, (_, i) => ({
    name: `m${i}`,
    ns: `${prefix}-m${i}`,
    address: `${SUBNET}.${i + 1}`,
    dev: `${prefix}m${i}`,
    port: `${prefix}p${i}`,
  }));
  const started = new Set<NsProcess>();
  const lab: Lab = {
    machines,
    bridgeNs,
    run: (m, cmd, args, opts = {}) => {
      const p = runIn(m, cmd, args, opts);
      started.add(p);
      return p;
    },
    pids: (m) => nsPids(m.ns),
    killMachine: (m) => killNs(m.ns),
    linkDown: (m) => void ip('-n', bridgeNs, 'link', 'set', m.port, 'down'),
    linkUp: (m) => linkUp(bridgeNs, m, machines),
    leftovers: () => leftovers(prefix),
  };
  // A test process stopped another way (a tap timeout's SIGTERM, an uncaught error) removes the lab too, synchronously.
  const namespaces = [...machines.map((m) => m.ns), bridgeNs];
  const onExit = (): void => removeNow(namespaces);
  const onTerm = (sig: NodeJS.Signals): void => {
    removeNow(namespaces);
    process.kill(process.pid, sig);
  };
  process.once('exit', onExit);
  process.once('SIGTERM', onTerm);
  t.teardown(async () => {
    process.off('exit', onExit);
    process.off('SIGTERM', onTerm);
    for (const m of machines) if (nsExists(m.ns)) await killNs(m.ns);
    for (const { child } of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all([...started].map((p) => p.done));
    for (const ns of [...machines.map((m) => m.ns), bridgeNs]) if (nsExists(ns)) ip('netns', 'del', ns);
    const left = leftovers(prefix);
    if (left.length > 0) throw new Error(`netns lab ${prefix}: left behind ${left.join(', ')}`);
  });
  build(bridgeNs, machines);
  return lab;
}

/** Lab names: `wq<creator pid, base 36>_<lab number>-...`, so that a lab whose creator is gone can be told. */
export const LAB_PREFIX = 'wq';
const LAB_NAME = new RegExp(`^${LAB_PREFIX}([0-9a-z]+)_[0-9a-z]+-`);

/**
 * Removes the labs of test processes that died before their teardown (SIGKILLed after a tap timeout): their
 * namespaces (and with them their interfaces) and whatever still runs in them. Only names of this helper's pattern
 * whose creating process no longer runs.
 */
function removeOrphanLabs(): void {
  const orphans = ip('netns', 'list')
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((ns) => {
      const m = LAB_NAME.exec(ns);
      return m !== null && !running(parseInt(m[1]!, 36));
    });
  removeNow(orphans);
}

function build(bridgeNs: string, machines: readonly Machine[]): void {
  ip('netns', 'add', bridgeNs);
  ip('-n', bridgeNs, 'link', 'set', 'lo', 'up');
  ip('-n', bridgeNs, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', bridgeNs, 'link', 'set', 'br0', 'up');
  for (const m of machines) {
    ip('netns', 'add', m.ns);
    ip('-n', m.ns, 'link', 'set', 'lo', 'up');
    // Created in the host namespace for an instant, then each end moved to its namespace.
    ip('link', 'add', m.dev, 'type', 'veth', 'peer', 'name', m.port);
    ip('link', 'set', m.dev, 'netns', m.ns);
    ip('link', 'set', m.port, 'netns', bridgeNs);
    ip('-n', bridgeNs, 'link', 'set', m.port, 'master', 'br0');
    ip('-n', bridgeNs, 'link', 'set', m.port, 'up');
    ip('-n', m.ns, 'addr', 'add', `${m.address}/24`, 'dev', m.dev);
    ip('-n', m.ns, 'link', 'set', m.dev, 'up');
  }
}

/** Last resort: SIGKILL what runs in the namespaces and delete them, without waiting (exit handlers cannot). */
function removeNow(namespaces: readonly string[]): void {
  for (const ns of namespaces) {
    if (!nsExists(ns)) continue;
    for (const pid of nsPids(ns)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

function nsExists(ns: string): boolean {
  return existsSync(`/run/netns/${ns}`);
}

function nsPids(ns: string): number[] {
  return ip('netns', 'pids', ns)
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);
}

/** Whether `pid` still runs (a zombie counts as gone: it only waits for its parent to reap it). */
function running(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  return !/^\d+ \(.*\) Z /.test(stat);
}

/** SIGKILL every process of the namespace until none is left (a dying parent's children may appear re-parented). */
async function killNs(ns: string): Promise<number[]> {
  const killed: number[] = [];
  for (;;) {
    const pids = nsPids(ns).filter(running);
    if (pids.length === 0) return killed;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

function leftovers(prefix: string): string[] {
  const nss = ip('netns', 'list')
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(prefix));
  const links = ip('-o', 'link', 'show')
    .split('\n')
    .map((l) => /^\d+:\s+([^:@]+)/.exec(l)?.[1] ?? '')
    .filter((n) => n.startsWith(prefix));
  return [...nss.map((n) => `namespace ${n}`), ...links.map((n) => `interface ${n}`)];
}

function runIn(machine: Machine, cmd: string, args: readonly string[], opts: RunOptions): NsProcess {
  // Its own UTS namespace too, so os.hostname() names the machine (m0, m1, ...); unshare and sh exec, so the child's pid is cmd's.
  const argv = ['netns', 'exec', machine.ns, 'unshare', '--uts', '--', 'sh', '-c', 'hostname "$0" && exec "$@"', machine.name, cmd, ...args];
  const child = spawn('ip', argv, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  const poke = (): void => {
    for (const w of waiters.splice(0)) w();
  };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    poke();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    poke();
  });
  let closed = false;
  const done = new Promise<NsResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      closed = true;
      poke();
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  const waitOutput = (re: RegExp): Promise<RegExpMatchArray> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = (out + err).match(re);
        if (m) return resolve(m);
        if (closed) return reject(new Error(`${machine.name}: ${cmd} exited before printing ${re}\n--- stdout\n${out}\n--- stderr\n${err}`));
        waiters.push(check);
      };
      check();
    });
  return { child, machine, stdout: () => out, stderr: () => err, waitOutput, done };
}
