/** Stage: turns join output into PatientRecords, dropping (and reporting) patients without tiles. */
import { EngineError, type KV, type Stage } from '../engine/types.js';
import type { EmbeddingBag, MeanHistogram, PatientData } from './types.js';
import type { PatientRecord } from './tfrecord/example.js';

/** What the join on patient_id emits for one key: every input's values for that key. */
export interface JoinedPatient {
  readonly patient: readonly PatientData[];
  readonly embeddings: readonly EmbeddingBag[];
  readonly histograms: readonly MeanHistogram[];
}

/** Why a patient was dropped: no embeddings at all reached the join, or its bag is empty. */
export type DropReason = 'no-embeddings' | 'zero-tiles';

/**
 * Drops patients with no tiles (reported through `onDropped`, counted in metrics.custom.dropped).
 * Errors (E_JOIN) for embeddings or histograms without tabular data, for duplicate values for one key,
 * and for a histogram whose tile count differs from the bag's. A dropped or failed element's bags are
 * disposed here; a kept one's bag belongs to the consumer.
 */
export function dropNoTiles(opts: { onDropped?: (patient_id: string, reason: DropReason) => void } = {}): Stage<KV<string, JoinedPatient>, PatientRecord> {
  return async function* dropNoTilesStage(source, ctx) {
    ctx.metrics.custom['dropped'] ??= 0;
    for await (const [patient_id, joined] of source) {
      let handedOff = false;
      try {
        const fail = (message: string): never => {
          throw new EngineError('E_JOIN', ctx.name, patient_id, `patient ${patient_id}: ${message}`);
        };
        const { patient, embeddings, histograms } = joined;
        if (patient.length === 0) fail(`${embeddings.length} embedding bag(s) and ${histograms.length} histogram(s) but no CSV rows (tiles for a patient that is not in the CSV)`);
        if (patient.length > 1 || embeddings.length > 1 || histograms.length > 1) {
          fail(`expected at most one value per input, got ${patient.length} patient, ${embeddings.length} embedding and ${histograms.length} histogram values`);
        }
        const data = patient[0]!;
        const bag = embeddings[0];
        if (bag === undefined || bag.tiles.length === 0) {
          const reason: DropReason = bag === undefined ? 'no-embeddings' : 'zero-tiles';
          ctx.metrics.custom['dropped']++;
          opts.onDropped?.(patient_id, reason);
          continue;
        }
        const histogram = histograms[0];
        if (histogram === undefined || histogram.tiles !== bag.tiles.length) {
          fail(`the bag has ${bag.tiles.length} tiles but the colour histogram averages ${histogram?.tiles ?? 'no'} tiles`);
        }
        handedOff = true;
        yield { patient_id, patient: data, bag, histogram: histogram! };
      } finally {
        // Dropped, failed, or abandoned before the consumer took it: free the spill files here.
        if (!handedOff) for (const bag of joined.embeddings) await bag.dispose();
      }
    }
  };
}
