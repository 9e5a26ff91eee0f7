import t from 'tap';
import { dropNoTiles, type DropReason, type JoinedPatient } from '../../stages/drop-no-tiles.js';
import type { PatientRecord } from '../../stages/tfrecord/example.js';
import type { KV } from '../../engine/types.js';
import { fromArray, memoryBag, stageContext } from '../helpers/examples.js';

function joined(id: string, tiles: number | null, histTiles: number | null = tiles) {
  const b = tiles === null ? undefined : memoryBag(id, tiles);
  const value: JoinedPatient = {
    patient: [{ patient_id: id, center_id: '1', label: 'x', image_ids: ['img-a'], lines: [2] }],
    embeddings: b === undefined ? [] : [b.bag],
    histograms: histTiles === null ? [] : [{ patient_id: id, tiles: histTiles, histogram: new Float32Array(4096) }],
  };
  return { kv: [id, value] as KV<string, JoinedPatient>, state: b?.state };
}

async function drain(it: AsyncIterable<PatientRecord>): Promise<PatientRecord[]> {
  const out: PatientRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
}

t.test('keeps patients with tiles, drops and reports the others', async (t) => {
  const items = [joined('A', 3), joined('B', null, null), joined('C', 0, 0), joined('D', 1)];
  const dropped: Array<[string, DropReason]> = [];
  const ctx = stageContext('drop');
  const out = await drain(dropNoTiles({ onDropped: (id, reason) => dropped.push([id, reason]) })(fromArray(items.map((i) => i.kv)), ctx));
  t.same(out.map((r) => [r.patient_id, r.bag.tiles.length, r.histogram.tiles]), [['A', 3, 3], ['D', 1, 1]]);
  t.same(dropped, [['B', 'no-embeddings'], ['C', 'zero-tiles']]);
  t.equal(ctx.metrics.custom['dropped'], 2);
  t.equal(items[2]!.state!.disposed, 1, 'a dropped empty bag is disposed');
  t.equal(items[0]!.state!.disposed, 0, 'a kept bag belongs to the consumer');
});

t.test('join errors', async (t) => {
  const orphan: JoinedPatient = { patient: [], embeddings: [memoryBag('Z', 2).bag], histograms: [] };
  const b = memoryBag('Z', 2);
  await t.rejects(drain(dropNoTiles()(fromArray([['Z', { ...orphan, embeddings: [b.bag] }] as const]), stageContext('drop'))), {
    code: 'E_JOIN',
    message: /patient Z: 1 embedding bag\(s\).*no CSV rows/,
  });
  t.equal(b.state.disposed, 1, 'the orphan bag is disposed');
  const mismatch = joined('M', 3, 2);
  await t.rejects(drain(dropNoTiles()(fromArray([mismatch.kv]), stageContext('drop'))), { code: 'E_JOIN', message: /M: the bag has 3 tiles but the colour histogram averages 2/ });
  t.equal(mismatch.state!.disposed, 1);
  const noHist = joined('H', 3, null);
  await t.rejects(drain(dropNoTiles()(fromArray([noHist.kv]), stageContext('drop'))), { code: 'E_JOIN', message: /averages no tiles/ });
  const twice = joined('T', 1);
  const dup: JoinedPatient = { ...twice.kv[1], patient: [twice.kv[1].patient[0]!, twice.kv[1].patient[0]!] };
  await t.rejects(drain(dropNoTiles()(fromArray([['T', dup] as const]), stageContext('drop'))), { code: 'E_JOIN', message: /got 2 patient/ });
});

t.test('backpressure: pulls one element per element consumed', async (t) => {
  const items = Array.from({ length: 50 }, (_, i) => joined(`P${String(i).padStart(2, '0')}`, 1).kv);
  let pulled = 0;
  const it = dropNoTiles()(fromArray(items, () => pulled++), stageContext('drop'))[Symbol.asyncIterator]();
  for (let consumed = 1; consumed <= 5; consumed++) {
    await it.next();
    t.equal(pulled, consumed, `after ${consumed} taken, ${pulled} pulled`);
  }
  await it.return?.();
});

t.test('cleanup: early return runs the source finally; an abandoned element is disposed', async (t) => {
  let sourceClosed = false;
  const items = [joined('A', 1), joined('B', 0, 0), joined('C', 1)];
  async function* source() {
    try {
      yield* items.map((i) => i.kv);
    } finally {
      sourceClosed = true;
    }
  }
  for await (const r of dropNoTiles()(source(), stageContext('drop'))) {
    t.equal(r.patient_id, 'A');
    break;
  }
  t.ok(sourceClosed, 'upstream closed');
  t.equal(items[2]!.state!.disposed, 0, 'C was never pulled');
});
