/**
 * Process-tree facts from /proc (Linux): descendants of a pid and their summed resident memory.
 * Used by the run report and the bench (peak RSS of the parent plus every worker) and by tests
 * (no child survives). Elsewhere than Linux the functions answer with what `process` alone knows.
 */
import { readdirSync, readFileSync } from 'node:fs';

interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  readonly rssBytes: number;
}

const PAGE_SIZE = 4096;

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // the process ended between listing and reading: not an error
  }
  // The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); ppid is field 4, rss (pages) is field 24.
  return { pid, ppid: Number(rest[1]), rssBytes: Number(rest[21]) * PAGE_SIZE };
}

function allStats(): ProcStat[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  const stats: ProcStat[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readStat(Number(name));
    if (stat) stats.push(stat);
  }
  return stats;
}

/** Children of `pid` from /proc/<pid>/task/<tid>/children; undefined when the kernel does not offer it. */
function childrenOf(pid: number): number[] | undefined {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return []; // the process is gone: no children
  }
  const out: number[] = [];
  for (const tid of tids) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && tid === String(pid)) return undefined; // no CONFIG_PROC_CHILDREN
      continue; // the thread ended meanwhile
    }
    for (const word of text.split(' ')) if (word.trim() !== '') out.push(Number(word));
  }
  return out;
}

/**
 * Pids of every live descendant of `root` (children, grandchildren...). Walks the children lists of the
 * tree itself (cheap, it is sampled every 200 ms during a run); scans all of /proc only where the kernel
 * has no children lists.
 */
export function descendants(root: number = process.pid): number[] {
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const kids = childrenOf(stack.pop()!);
    if (kids === undefined) return descendantsByScan(root);
    out.push(...kids);
    stack.push(...kids);
  }
  return out;
}

function descendantsByScan(root: number): number[] {
  const stats = allStats();
  const children = new Map<number, number[]>();
  for (const s of stats) {
    const list = children.get(s.ppid) ?? [];
    list.push(s.pid);
    children.set(s.ppid, list);
  }
  const out: number[] = [];
  const stack = [...(children.get(root) ?? [])];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Resident memory of `root` and all its descendants, in bytes. */
export function treeRssBytes(root: number = process.pid): number {
  const own = readStat(root)?.rssBytes ?? process.memoryUsage.rss();
  let sum = own;
  for (const pid of descendants(root)) sum += readStat(pid)?.rssBytes ?? 0;
  return sum;
}

/** True when a process with this pid exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/** Samples the tree's RSS every `intervalMs` and keeps the peak; `stop()` returns it. */
export function sampleTreeRss(intervalMs = 100, root: number = process.pid): { peak(): number; stop(): number } {
  let peak = treeRssBytes(root);
  const timer = setInterval(() => {
    peak = Math.max(peak, treeRssBytes(root));
  }, intervalMs);
  timer.unref();
  return {
    peak: () => peak,
    stop: () => {
      clearInterval(timer);
      peak = Math.max(peak, treeRssBytes(root));
      return peak;
    },
  };
}
