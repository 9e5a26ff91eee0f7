/**
 * The job's two ends of the dataset commit (commit.ts): openDataset before the run (finish an interrupted
 * swap, open this run's staging folder), publish after it (commit a finished run's shards, report and
 * manifest; otherwise discard the staging folder, keep the dataset in `--out` as it was, and write the run
 * report into the work folder, or the system's temporary folder when that cannot be written either).
 */
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeReport, type RunReport, type SlidePictures } from '../report/report.js';
import type { WriteSummary } from '../write-tfrecords.js';
import { commitStaging, discardStaging, openStaging, recover, type Staging } from './commit.js';
import { buildManifest } from './manifest.js';
import { naming } from './io.js';

/** Before the run: an interrupted swap finished (said on `tell`), dead runs' leftovers removed, a staging folder. */
export async function openDataset(outDir: string, tell: (line: string) => void): Promise<Staging> {
  await naming('create', outDir, () => mkdir(outDir, { recursive: true }));
  const r = await recover(outDir);
  if (r.rolledForward !== undefined) tell(`Finished swapping in the dataset that run ${r.rolledForward} had committed in ${outDir}.`);
  return openStaging(outDir);
}

export interface PublishInput {
  readonly staging: Staging;
  readonly workDir: string;
  /** Written with the dataset; exit_code set to 1 when writing the output fails. */
  readonly report: RunReport;
  readonly pictures: SlidePictures;
  readonly written: WriteSummary | undefined;
  /** False when the run stopped early (a signal, --fail-fast, a fatal error). */
  readonly finished: boolean;
  readonly csvFile: string;
}

export interface Publication {
  /** The new dataset replaced the one in outDir (committed: a failed swap is finished by the next run). */
  readonly committed: boolean;
  /** Why the dataset in outDir was left as it was, when it was. */
  readonly keptBecause: string | undefined;
  /** Where the run report is ('' for each when it could be written nowhere). */
  readonly json: string;
  readonly html: string;
  /** Errors met writing the output, one line each (path and errno). */
  readonly errors: readonly string[];
}

const messageOf = (err: unknown): string => (err as Error).message ?? String(err);

/** After the run: commits it when it finished and wrote a patient; otherwise leaves outDir as it was. */
export async function publish(p: PublishInput): Promise<Publication> {
  const { staging, report } = p;
  const errors: string[] = [];
  if (p.finished && p.written !== undefined && p.written.records > 0) {
    try {
      await writeReport(staging.dir, report, p.pictures);
      const manifest = await buildManifest(staging.dir, { runId: staging.runId, shards: p.written.shards, csvFile: p.csvFile, params: report.params, models: report.models });
      await commitStaging(staging, manifest);
      return { committed: true, keptBecause: undefined, json: join(staging.outDir, 'report.json'), html: join(staging.outDir, 'report.html'), errors };
    } catch (err) {
      report.exit_code = 1;
      errors.push(messageOf(err));
      if ((err as { committed?: boolean }).committed === true) {
        errors.push(`The new dataset is committed in ${staging.outDir}, but its swap stopped: the next run into that folder finishes it.`);
        // The report is among the committed files: where it will be once the swap is finished.
        return { committed: true, keptBecause: undefined, json: join(staging.outDir, 'report.json'), html: join(staging.outDir, 'report.html'), errors };
      }
    }
  }
  const keptBecause = !p.finished ? 'the run did not finish' : (p.written?.records ?? 0) === 0 ? 'no patient was written' : 'writing the new dataset failed';
  try {
    await discardStaging(staging);
  } catch (err) {
    errors.push(messageOf(err));
  }
  for (const dir of [p.workDir, join(tmpdir(), `wsi-report-${staging.runId}`)]) {
    try {
      return { committed: false, keptBecause, ...(await writeReport(dir, report, p.pictures)), errors };
    } catch (err) {
      errors.push(messageOf(err));
    }
  }
  return { committed: false, keptBecause, json: '', html: '', errors };
}
