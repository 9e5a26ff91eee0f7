/**
 * A patient's rows must agree on center and label (and not repeat an image_num). The graph checks this too
 * (GroupPatientData), but only once workers run; checked here first, by the same combine function, so a bad
 * CSV is exit code 2 before any slide is opened (the main job and `split` both call this), with the same
 * message naming the patient, the values and the CSV lines.
 */
import { patientData } from '../combine-patient-data.js';
import type { CsvRow } from '../types.js';

/** Throws an E_CSV error at the first patient whose rows disagree. */
export async function checkPatients(rows: readonly CsvRow[]): Promise<void> {
  const fn = patientData();
  const byPatient = new Map<string, CsvRow[]>();
  for (const r of rows) {
    const list = byPatient.get(r.patient_id);
    if (list) list.push(r);
    else byPatient.set(r.patient_id, [r]);
  }
  const signal = new AbortController().signal;
  for (const [key, list] of byPatient) {
    try {
      let acc = await fn.createAccumulator({ key, spillDir: '', signal });
      for (const r of list) acc = await fn.addInput(acc, r);
      await fn.extractOutput(acc);
    } catch (err) {
      throw Object.assign(new Error(`E_CSV: ${(err as Error).message}`, { cause: err }), { code: 'E_CSV' });
    }
  }
}
