/**
 * report.html's tile-selection figure: the background mask is drawn blue (opaque where background,
 * transparent over tissue) and every kept tile is outlined at its level-0 position.
 */
import t from 'tap';
import sharp from 'sharp';
import { renderHtml, slidePicture, type RunReport, type SlidePictures } from '../../stages/report/report.js';

t.test('mask drawn blue over the background only; kept tiles outlined', async (t) => {
  // A 4x2 thumbnail: the left half is tissue (mask 0), the right half background (mask 255).
  const mask = Uint8Array.from([0, 0, 255, 255, 0, 0, 255, 255]);
  const maskPng = await sharp(mask, { raw: { width: 4, height: 2, channels: 1 } }).png().toBuffer();
  const thumbnailPng = await sharp(Buffer.alloc(4 * 2 * 3, 200), { raw: { width: 4, height: 2, channels: 3 } }).png().toBuffer();
  const pictures: SlidePictures = new Map([['s1', slidePicture({ width: 64, height: 32, positions: [[0, 0], [16, 16]], thumbnailPng, maskPng, tileSize: 16 })]]);
  const report: RunReport = {
    started_at: 'now', elapsed_s: 1, exit_code: 0, params: {}, models: {},
    slides: [{ image_id: 's1', patient_id: 'p1', status: 'ok', error: null, width: 64, height: 32, tiles_total: 8, tiles_kept: 2, seconds: 1, workers: 2 }],
    patients: { written: 1, dropped: [] }, shards: [], stages: [], peak_rss_mb: 1, max_tiles_in_flight: 1, tile_budget: 1, tiles_written: 2,
  };
  const html = await renderHtml(report, pictures);
  const uris = [...html.matchAll(/<image href="data:image\/png;base64,([^"]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64'));
  t.equal(uris.length, 2, 'thumbnail and mask');
  const { data, info } = await sharp(uris[1]!).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  t.equal(info.channels, 4);
  const px = (x: number, y: number) => [...data.subarray((y * info.width + x) * 4, (y * info.width + x) * 4 + 4)];
  t.equal(px(0, 0)[3], 0, 'tissue: transparent');
  t.same(px(3, 1), [0, 90, 255, 255], 'background: opaque blue');
  t.match(html, '<rect x="0" y="0" width="16" height="16"/><rect x="16" y="16" width="16" height="16"/>');
  t.match(html, 's1 &mdash; 2 of 8 tiles kept');
  t.match(html, '<td>2 / 8</td><td>1.0</td><td>2</td>', 'the slide table says how many workers read the slide');
});

t.test('a slide picture that cannot be made leaves a note in its place; the rest of the report is written', async (t) => {
  const notPng = Uint8Array.from([1, 2, 3, 4]);
  const broken = slidePicture({ width: 64, height: 32, positions: [], thumbnailPng: notPng, maskPng: notPng, tileSize: 16 });
  const report: RunReport = {
    started_at: 'now', elapsed_s: 1, exit_code: 0, params: {}, models: {},
    slides: [{ image_id: 'bad<1>', patient_id: 'p1', status: 'ok', error: null, width: 64, height: 32, tiles_total: 8, tiles_kept: 0, seconds: 1 }],
    patients: { written: 1, dropped: [] }, shards: [], stages: [], peak_rss_mb: 1, max_tiles_in_flight: 1, tile_budget: 1, tiles_written: 0,
  };
  const html = await renderHtml(report, new Map([['bad<1>', broken]]));
  t.match(html, /bad&#60;1&#62;: no picture \(.+\)/, 'the slide named, with the reason');
  t.notMatch(html, '<svg class="slide"', 'no figure drawn');
  t.match(html, '<h2>Stages</h2>', 'the rest of the report is there');
});
