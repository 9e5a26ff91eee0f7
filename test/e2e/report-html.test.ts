/**
 * report.html's tile-selection figure: the background mask is drawn blue (opaque where background,
 * transparent over tissue) and every kept tile is outlined at its level-0 position. The pictures are files in
 * report-files/ beside report.html, referenced by relative path (no inline base64): the HTML stays small.
 */
import t from 'tap';
import sharp from 'sharp';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { renderHtml, slidePicture, writeReport, type RunReport, type SlidePictures } from '../../stages/report/report.js';
import { pictureFiles } from '../../stages/report/figures.js';
import { tempDir } from '../helpers/e2e.js';

const baseReport = (slides: RunReport['slides']): RunReport => ({
  started_at: 'now', elapsed_s: 1, exit_code: 0, params: {}, models: {}, slides,
  patients: { written: 1, dropped: [] }, shards: [], stages: [], peak_rss_mb: 1, max_tiles_in_flight: 1, tile_budget: 1, tiles_written: 2,
});

async function pictures(): Promise<SlidePictures> {
  // A 4x2 thumbnail: the left half is tissue (mask 0), the right half background (mask 255).
  const mask = Uint8Array.from([0, 0, 255, 255, 0, 0, 255, 255]);
  const maskPng = await sharp(mask, { raw: { width: 4, height: 2, channels: 1 } }).png().toBuffer();
  const thumbnailPng = await sharp(Buffer.alloc(4 * 2 * 3, 200), { raw: { width: 4, height: 2, channels: 3 } }).png().toBuffer();
  return new Map([['s1/a b', slidePicture({ width: 64, height: 32, positions: [[0, 0], [16, 16]], thumbnailPng, maskPng, tileSize: 16 })]]);
}

t.test('mask drawn blue over the background only; kept tiles outlined; the pictures are files beside report.html', async (t) => {
  const dir = await tempDir(t, 'report-html-');
  const report = baseReport([{ image_id: 's1/a b', patient_id: 'p1', status: 'ok', error: null, width: 64, height: 32, tiles_total: 8, tiles_kept: 2, seconds: 1, workers: 2 }]);
  // A stale picture from an earlier report into the same folder goes.
  await mkdir(join(dir, 'report-files'));
  await writeFile(join(dir, 'report-files', 'stale.png'), 'x');
  const { html: htmlFile } = await writeReport(dir, report, await pictures());
  const html = await readFile(htmlFile, 'utf8');
  t.notMatch(html, 'data:image', 'no inline picture');
  const hrefs = [...html.matchAll(/<image href="([^"]+)"/g)].map((m) => m[1]!);
  const files = pictureFiles('s1/a b');
  t.same(hrefs, [files.thumb, files.mask], 'thumbnail and mask, by relative path');
  t.match(files.thumb, /^report-files\/s1_a_b-[0-9a-f]{10}\.jpg$/, 'a readable, safe name');
  t.same((await readdir(join(dir, 'report-files'))).sort(), hrefs.map((h) => h.slice('report-files/'.length)).sort(), 'only this report\'s pictures');
  t.equal((await sharp(join(dir, files.thumb)).metadata()).format, 'jpeg');
  const { data, info } = await sharp(join(dir, files.mask)).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  t.equal(info.channels, 4);
  const px = (x: number, y: number) => [...data.subarray((y * info.width + x) * 4, (y * info.width + x) * 4 + 4)];
  t.equal(px(0, 0)[3], 0, 'tissue: transparent');
  t.same(px(3, 1), [0, 90, 255, 255], 'background: opaque blue');
  t.match(html, '<rect x="0" y="0" width="16" height="16"/><rect x="16" y="16" width="16" height="16"/>');
  t.match(html, 's1/a b &mdash; 2 of 8 tiles kept');
  t.match(html, '<td>2 / 8</td><td>1.0</td><td>2</td>', 'the slide table says how many workers read the slide');
});

t.test('a report without figures leaves no report-files folder', async (t) => {
  const dir = await tempDir(t, 'report-html-');
  await writeReport(dir, baseReport([]), new Map());
  t.notOk(existsSync(join(dir, 'report-files')));
});

t.test('a slide picture that cannot be made leaves a note in its place; the rest of the report is written', async (t) => {
  const notPng = Uint8Array.from([1, 2, 3, 4]);
  const broken = slidePicture({ width: 64, height: 32, positions: [], thumbnailPng: notPng, maskPng: notPng, tileSize: 16 });
  const report = baseReport([{ image_id: 'bad<1>', patient_id: 'p1', status: 'ok', error: null, width: 64, height: 32, tiles_total: 8, tiles_kept: 0, seconds: 1 }]);
  const html = await renderHtml(report, new Map([['bad<1>', broken]]));
  t.match(html, /bad&#60;1&#62;: no picture \(.+\)/, 'the slide named, with the reason');
  t.notMatch(html, '<svg class="slide"', 'no figure drawn');
  t.match(html, '<h2>Stages</h2>', 'the rest of the report is there');
  const dir = await tempDir(t, 'report-html-');
  await writeReport(dir, report, new Map([['bad<1>', broken]]));
  t.notOk(existsSync(join(dir, 'report-files')), 'no picture file for it');
});
