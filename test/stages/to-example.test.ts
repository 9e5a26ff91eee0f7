import t from 'tap';
import { toExample } from '../../stages/to-example.js';
import type { EncodedExample } from '../../stages/tfrecord/example.js';
import { fromArray, patientRecord, stageContext } from '../helpers/examples.js';

t.test('encodes each record, counting bytes', async (t) => {
  const recs = [patientRecord('A', 2), patientRecord('B', 5)];
  const ctx = stageContext('to-example');
  const out: EncodedExample[] = [];
  for await (const ex of toExample({ withLabel: true })(fromArray(recs.map((r) => r.record)), ctx)) out.push(ex);
  t.same(out.map((e) => [e.patient_id, e.num_tiles]), [['A', 2], ['B', 5]]);
  t.equal(ctx.metrics.custom['exampleBytes'], out[0]!.byteLength + out[1]!.byteLength);
  t.ok(out[1]!.byteLength > 5 * 4 * 4 * 2, 'holds both embedding matrices');
  await out[0]!.dispose();
  t.equal(recs[0]!.state.disposed, 1, 'dispose frees the bag');
});

t.test('an encoding error disposes the bag and names the patient', async (t) => {
  const r = patientRecord('Q', 2);
  const record = { ...r.record, patient: { ...r.record.patient, label: undefined } };
  const it = toExample({ withLabel: true })(fromArray([record]), stageContext('to-example'));
  await t.rejects(it[Symbol.asyncIterator]().next(), { code: 'E_NO_LABEL', message: /patient Q/ });
  t.equal(r.state.disposed, 1);
});

t.test('backpressure: one record pulled per example taken', async (t) => {
  const recs = Array.from({ length: 20 }, (_, i) => patientRecord(`P${i}`, 1).record);
  let pulled = 0;
  const it = toExample({ withLabel: false })(fromArray(recs, () => pulled++), stageContext('to-example'))[Symbol.asyncIterator]();
  for (let taken = 1; taken <= 4; taken++) {
    await it.next();
    t.equal(pulled, taken);
  }
  await it.return?.();
});

t.test('cleanup: early return closes upstream', async (t) => {
  let closed = false;
  async function* source() {
    try {
      yield patientRecord('A', 1).record;
      yield patientRecord('B', 1).record;
    } finally {
      closed = true;
    }
  }
  for await (const ex of toExample({ withLabel: false })(source(), stageContext('to-example'))) {
    await ex.dispose();
    break;
  }
  t.ok(closed);
});
