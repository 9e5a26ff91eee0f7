/** What `inspect` checks of a dataset folder besides the records: its manifest, and no swap left half-done. */
import { join } from 'node:path';
import { JOURNAL, readJournal } from './commit.js';
import { verifyManifest } from './manifest.js';

/** One line per problem of `dir` (see verifyManifest); `shards`: the shard files found in it. */
export async function datasetProblems(dir: string, shards: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  try {
    const journal = await readJournal(dir);
    if (journal !== undefined) problems.push(`E_DATASET_SWAP_PENDING: ${join(dir, JOURNAL)}: run ${journal.run_id}'s dataset is committed but not yet swapped in; the next run into this folder finishes the swap`);
  } catch (err) {
    problems.push((err as Error).message);
  }
  problems.push(...(await verifyManifest(dir, shards)));
  return problems;
}
