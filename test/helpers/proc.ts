/** This test process's child processes, from /proc (Linux): the pool and prestart tests count what was forked. */
import { readFileSync } from 'node:fs';

/** Pids of this process's children as /proc lists them now (exited ones not yet reaped included). */
export function childPids(): number[] {
  const text = readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').trim();
  return text === '' ? [] : text.split(/\s+/).map(Number);
}
