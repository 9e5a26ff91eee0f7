/** Stage: orders the slide tasks largest file first, so that a job's last slides to run are its small ones. */
import type { Stage } from '../engine/types.js';
import type { SlideTask } from './types.js';

/**
 * Workers take slides in the order this stage yields them. In CSV order, a large slide that comes last keeps one
 * worker busy for minutes while the others have nothing left to do; largest first (the longest-processing-time
 * rule), the job ends on small slides and the workers finish close together. The file size stands in for the
 * slide's work (tissue and compression vary, so it is a guide, not a measure). Slides that could not be resolved
 * (no size) come first: their error costs nothing to find and is reported at once. Ties keep the CSV order.
 *
 * It has to see every task before yielding the first: the tasks are small (one per CSV row, already in memory as
 * rows), and the slides' tiles are what the engine bounds.
 */
export function largestFirst(): Stage<SlideTask, SlideTask> {
  return async function* largestFirstStage(source) {
    const tasks: Array<{ task: SlideTask; bytes: number; index: number }> = [];
    for await (const task of source) tasks.push({ task, bytes: fileBytes(task), index: tasks.length });
    tasks.sort((a, b) => b.bytes - a.bytes || a.index - b.index);
    for (const { task } of tasks) yield task;
  };
}

/** The slide file's size from the task's stamp (`size:mtime`); +Infinity when unresolved, to sort first. */
function fileBytes(task: SlideTask): number {
  const size = Number(task.fileStamp?.split(':')[0]);
  return Number.isFinite(size) ? size : Number.POSITIVE_INFINITY;
}
