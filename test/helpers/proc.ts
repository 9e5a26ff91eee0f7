/** Processes as /proc (Linux) shows them: this test process's children (the pool and prestart tests count what was forked), and which process under a run holds a file open (the e2e tests kill the worker on a slide). */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { descendants } from '../../stages/cli/proc-tree.js';

/** Pids of this process's children as /proc lists them now (exited ones not yet reaped included). */
export function childPids(): number[] {
  const text = readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim();
  return text === '' ? [] : text.split(/\s+/).map(Number);
}

/** The pid of a process under `root` that has `file` open, if any (from /proc/<pid>/fd). */
export function holderOf(root: number, file: string): number | undefined {
  for (const pid of descendants(root)) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // it exited meanwhile
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === file) return pid;
      } catch {
        // the fd closed meanwhile: look at the next one
      }
    }
  }
  return undefined;
}
