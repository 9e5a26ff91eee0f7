/** Stage: turns CSV rows into slide tasks, stamped with the slide file's size and mtime (for checkpoint keys). */
import type { Stage } from '../engine/types.js';
import { SlideError } from './slides/errors.js';
import { resolveSlidePath, slideFileStamp } from './slides/resolve.js';
import type { CsvRow, SlideTask } from './types.js';

/**
 * A slide that cannot be resolved here is not an error of this stage: its task goes on unstamped, carrying the
 * slide's own error (missing file, bad id, unsupported format), and the local fan-out fails that slide alone without
 * sending it to a worker (graph.ts: `refuse`; through the queue, the worker that takes its job reports it).
 */
export function slideTasks(slidesDir: string): Stage<CsvRow, SlideTask> {
  return async function* slideTasksStage(rows) {
    for await (const row of rows) yield await slideTask(slidesDir, row);
  };
}

/** One row's task (the stage's work for one element; also used to find a slide's checkpoint). */
export async function slideTask(slidesDir: string, row: CsvRow): Promise<SlideTask> {
  let fileStamp = 'unresolved';
  let unresolved: SlideError | undefined;
  try {
    fileStamp = await slideFileStamp(await resolveSlidePath(slidesDir, row.image_id));
  } catch (err) {
    // The slide's own error (see above); anything else (a stamp that could not be read) is left to the worker.
    if (err instanceof SlideError) unresolved = err;
  }
  return { image_id: row.image_id, patient_id: row.patient_id, image_num: row.image_num, slidesDir, fileStamp, ...(unresolved !== undefined && { unresolved }) };
}

/** Everything a slide's results depend on besides the run's parameters and models (those key the checkpoint folder). */
export function slideCheckpointKey(task: SlideTask): string {
  return JSON.stringify([task.image_id, task.patient_id, task.image_num, task.fileStamp ?? '']);
}
