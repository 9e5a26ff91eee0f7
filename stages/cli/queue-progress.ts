/**
 * What the progress display says of the queue (--queue): this run's jobs as the queue holds them
 * (engine/queue/counts.ts), as one line: `queue: 3 waiting, 2 active (node-a 1, node-b 1), 0 retrying, 5 completed,
 * 1 failed` (then `, N from checkpoints` and `, N lost` when there are any). The overall bar's value in queue mode is
 * `finishedOf`: completed, failed and replayed.
 */
import type { QueueCounts } from '../../engine/queue/counts.js';

/** Hosts an active count names, at most (then `+N hosts`). */
const NAMED_HOSTS = 6;

export function countsText(c: QueueCounts): string {
  const hosts = Object.entries(c.hosts).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const named = hosts.slice(0, NAMED_HOSTS).map(([h, n]) => `${h} ${n}`);
  if (hosts.length > NAMED_HOSTS) named.push(`+${hosts.length - NAMED_HOSTS} hosts`);
  const active = `${c.active} active${named.length > 0 ? ` (${named.join(', ')})` : ''}`;
  const more = [c.replayed > 0 ? `${c.replayed} from checkpoints` : '', c.lost > 0 ? `${c.lost} lost` : ''].filter((s) => s !== '');
  return `queue: ${[`${c.waiting} waiting`, active, `${c.retrying} retrying`, `${c.completed} completed`, `${c.failed} failed`, ...more].join(', ')}`;
}

/** Slides the queue has finished with (completed or failed) plus those replayed from checkpoints. */
export function finishedOf(c: QueueCounts): number {
  return c.completed + c.failed + c.replayed;
}
