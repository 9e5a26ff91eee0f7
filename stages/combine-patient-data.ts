/** Keyed reducer: combines a patient's CSV rows into its PatientData (center and label must agree). */
import { EngineError, type CombineFn } from '../engine/types.js';
import type { CsvRow, PatientData } from './types.js';

/** The rows seen so far for one patient (a few per patient, so plain memory). */
export interface PatientRowsAcc {
  rows: CsvRow[];
}

const STAGE = 'combine-patient-data';

/**
 * center_id and label must be identical over a patient's rows (E_PATIENT_CONFLICT naming the patient,
 * the field, the values and the CSV lines); image_ids come out in image_num order, and two rows with
 * the same image_num are a conflict too (tile order would be ambiguous).
 */
export function patientData(): CombineFn<CsvRow, PatientRowsAcc, PatientData> {
  return {
    createAccumulator: () => ({ rows: [] }),
    addInput(acc, row) {
      const first = acc.rows[0];
      if (first !== undefined) checkAgree(first, row);
      acc.rows.push(row);
      return acc;
    },
    mergeAccumulators(accs) {
      const merged: PatientRowsAcc = { rows: [] };
      for (const acc of accs) {
        for (const row of acc.rows) {
          const first = merged.rows[0];
          if (first !== undefined) checkAgree(first, row);
          merged.rows.push(row);
        }
      }
      return merged;
    },
    extractOutput(acc) {
      const rows = [...acc.rows].sort((a, b) => a.image_num - b.image_num || a.line - b.line);
      const first = rows[0];
      if (first === undefined) throw new EngineError('E_PATIENT_EMPTY', STAGE, undefined, 'a patient accumulator holds no CSV rows');
      for (let i = 1; i < rows.length; i++) {
        const a = rows[i - 1]!;
        const b = rows[i]!;
        if (a.image_num === b.image_num) conflict(a, b, 'image_num', a.image_num, b.image_num);
      }
      return {
        patient_id: first.patient_id,
        center_id: first.center_id,
        ...(first.label === undefined ? {} : { label: first.label }),
        image_ids: rows.map((r) => r.image_id),
        lines: [...rows.map((r) => r.line)].sort((x, y) => x - y),
      };
    },
  };
}

function checkAgree(first: CsvRow, row: CsvRow): void {
  if (row.patient_id !== first.patient_id) conflict(first, row, 'patient_id', first.patient_id, row.patient_id);
  if (row.center_id !== first.center_id) conflict(first, row, 'center_id', first.center_id, row.center_id);
  if (row.label !== first.label) conflict(first, row, 'label', first.label, row.label);
}

function conflict(a: CsvRow, b: CsvRow, field: string, va: unknown, vb: unknown): never {
  const where = (r: CsvRow) => `${r.file} line ${r.line}`;
  // Numbers as written (center_id is a decimal string), text quoted.
  const show = (v: unknown) => (field === 'center_id' ? String(v) : JSON.stringify(v ?? null));
  throw new EngineError(
    'E_PATIENT_CONFLICT',
    STAGE,
    a.patient_id,
    `patient ${a.patient_id} has conflicting ${field}: ${show(va)} (${where(a)}, image ${a.image_id}) vs ${show(vb)} (${where(b)}, image ${b.image_id})`,
  );
}
