import t from 'tap';
import { colorHistograms, tileHistogram } from '../../stages/color-histograms.js';
import type { Tile } from '../../stages/types.js';
import { collect, countedSource, makeCtx, makeTile } from '../helpers/models-ctx.js';

function solid(size: number, rgb: readonly number[], fraction = 1, other: readonly number[] = [0, 0, 0]): Tile {
  const n = size * size;
  const pixels = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) pixels.set(i < n * fraction ? rgb : other, i * 3);
  return { image_id: 's', patient_id: 'p', image_num: 0, x: 0, y: 0, size, pixels };
}

t.test('solid colour: one bin holds 1', async (t) => {
  const h = tileHistogram(solid(16, [255, 128, 15]).pixels);
  t.equal(h.length, 4096);
  t.equal(h[15 * 256 + 8 * 16 + 0], 1);
  t.equal(h.reduce((a, b) => a + b, 0), 1);
});

t.test('two colours, 1/4 and 3/4; values in one bin share it', async (t) => {
  const h = tileHistogram(solid(8, [16, 32, 48], 0.25, [255, 255, 255]).pixels);
  t.equal(h[1 * 256 + 2 * 16 + 3], 0.25);
  t.equal(h[4095], 0.75);
  const g = tileHistogram(Uint8Array.from([0, 0, 0, 15, 15, 15]));
  t.equal(g[0], 1, '0 and 15 fall in bin 0');
});

t.test('random tile sums to 1', async (t) => {
  const h = tileHistogram(makeTile(64, 3).pixels);
  t.ok(Math.abs(h.reduce((a, b) => a + b, 0) - 1) < 1e-5);
});

t.test('stage: Tile[] -> TileHistogram[] in order, with the tile identity', async (t) => {
  const tiles = [solid(4, [0, 0, 0]), { ...solid(4, [255, 255, 255]), x: 4 }];
  const [out] = await collect(colorHistograms()(countedSource([tiles]).source, makeCtx()));
  t.same(out!.map((h) => [h.kind, h.image_id, h.patient_id, h.x, h.histogram[0], h.histogram[4095]]), [
    ['histogram', 's', 'p', 0, 1, 0],
    ['histogram', 's', 'p', 4, 0, 1],
  ]);
});

t.test('backpressure and cleanup', async (t) => {
  const src = countedSource(Array.from({ length: 10 }, (_, i) => [makeTile(4, i)]));
  const it = colorHistograms()(src.source, makeCtx())[Symbol.asyncIterator]();
  await it.next();
  await it.next();
  t.equal(src.pulled(), 2);
  await it.return?.();
  t.ok(src.closed());
  const ac = new AbortController();
  const src2 = countedSource(Array.from({ length: 3 }, (_, i) => [makeTile(4, i)]));
  const it2 = colorHistograms()(src2.source, makeCtx('h', ac))[Symbol.asyncIterator]();
  await it2.next();
  ac.abort();
  await t.rejects(it2.next(), { code: 'E_ABORTED' });
  t.ok(src2.closed());
});
