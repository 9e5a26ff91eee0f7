import t from 'tap';
import { patientData } from '../../stages/combine-patient-data.js';
import type { CsvRow } from '../../stages/types.js';

const ctx = { key: 'P1', spillDir: '/nonexistent', signal: new AbortController().signal };

function row(line: number, image_num: number, center = 2, label: string | null = 'A', patient_id = 'P1'): CsvRow {
  const image_id = `img-${line}`;
  const center_id = String(center);
  return { file: 'train.csv', line, image_id, center_id, patient_id, image_num, ...(label === null ? {} : { label }), raw: [image_id, String(center_id), patient_id, String(image_num), label ?? ''] };
}

t.test('image_ids in image_num order, lines kept', async (t) => {
  const fn = patientData();
  let acc = fn.createAccumulator(ctx);
  for (const r of [row(5, 2), row(2, 0), row(9, 1)]) acc = fn.addInput(acc, r);
  const out = fn.extractOutput(acc);
  t.same(out, { patient_id: 'P1', center_id: '2', label: 'A', image_ids: ['img-2', 'img-9', 'img-5'], lines: [2, 5, 9] });
});

t.test('no label column: no label', async (t) => {
  const fn = patientData();
  const acc = fn.addInput(fn.createAccumulator(ctx), row(2, 0, 1, null));
  const out = fn.extractOutput(acc);
  t.notOk('label' in out);
});

t.test('merging accumulators', async (t) => {
  const fn = patientData();
  const a = fn.addInput(fn.createAccumulator(ctx), row(3, 1));
  const b = fn.addInput(fn.addInput(fn.createAccumulator(ctx), row(4, 0)), row(8, 2));
  t.same(fn.extractOutput(fn.mergeAccumulators([a, b], ctx)).image_ids, ['img-4', 'img-3', 'img-8']);
});

t.test('conflicts name the patient, field, values and lines', async (t) => {
  const fn = patientData();
  t.throws(() => fn.addInput(fn.addInput(fn.createAccumulator(ctx), row(2, 0, 1)), row(7, 1, 3)), {
    code: 'E_PATIENT_CONFLICT',
    message: /patient P1 has conflicting center_id: 1 \(train.csv line 2.*vs 3 \(train.csv line 7/,
  });
  t.throws(() => fn.addInput(fn.addInput(fn.createAccumulator(ctx), row(2, 0, 1, 'A')), row(4, 1, 1, 'B')), {
    code: 'E_PATIENT_CONFLICT',
    message: /conflicting label: "A" \(train.csv line 2.*"B" \(train.csv line 4/,
  });
  // Conflicts across merged accumulators too.
  const a = fn.addInput(fn.createAccumulator(ctx), row(2, 0, 1, 'A'));
  const b = fn.addInput(fn.createAccumulator(ctx), row(6, 1, 1, 'B'));
  t.throws(() => fn.mergeAccumulators([a, b], ctx), { code: 'E_PATIENT_CONFLICT', message: /label.*line 6/ });
  // Two images with the same image_num.
  const dup = fn.addInput(fn.addInput(fn.createAccumulator(ctx), row(2, 1)), row(3, 1));
  t.throws(() => fn.extractOutput(dup), { code: 'E_PATIENT_CONFLICT', message: /image_num: 1 \(train.csv line 2.*line 3/ });
  t.throws(() => fn.extractOutput(fn.createAccumulator(ctx)), { code: 'E_PATIENT_EMPTY' });
});
