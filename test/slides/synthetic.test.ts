import t from 'tap';
import { mkdtempSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { generateSlide, pyramidLevels, tissueMaskAt, tissueOf } from '../../stages/slides/synthetic.js';
import { parseTiff } from '../../stages/slides/tiff-parse.js';
import { openSlide } from '../../stages/slides/open.js';
import { makeDemo } from '../../stages/cli/make-demo.js';
import { readCsv } from '../../stages/csv/read.js';

const dir = mkdtempSync(join(tmpdir(), 'syn-test-'));

t.test('pyramid levels /1 /4 /16 ... until one tile', async (t) => {
  t.same(pyramidLevels(5000, 3000, 256).map((l) => [l.width, l.height, l.downsample]), [[5000, 3000, 1], [1250, 750, 4], [312, 187, 16], [78, 46, 64]]);
  t.same(pyramidLevels(200, 100, 256).length, 1);
});

t.test('a generated slide is a tiled JPEG BigTIFF that sharp and the reader see as a pyramid', async (t) => {
  const path = join(dir, 'a.tiff');
  const spec = { path, width: 3000, height: 2000, seed: 5 };
  await generateSlide(spec);
  const fh = await open(path);
  const tiff = await parseTiff(fh);
  await fh.close();
  t.equal(tiff.bigTiff, true);
  t.same(tiff.ifds.map((d) => [d.width, d.height, d.tileWidth, d.compression, d.photometric]), [[3000, 2000, 256, 7, 6], [750, 500, 256, 7, 6], [187, 125, 256, 7, 6]]);
  const s = await openSlide(path, 'a');
  t.same(s.levels.map((l) => [l.width, l.height]), [[3000, 2000], [750, 500], [187, 125]]);
  // Pixels follow the analytic tissue function: tissue points are dark in some channel, background > 190.
  const shapes = tissueOf(spec);
  const region = await s.readRegion(0, 0, 0, 3000, 2000);
  let agree = 0;
  let n = 0;
  for (let y = 5; y < 2000; y += 37)
    for (let x = 5; x < 3000; x += 41) {
      const o = (y * 3000 + x) * 3;
      const bg = region[o]! > 190 && region[o + 1]! > 190 && region[o + 2]! > 190;
      const tissue = tissueMaskAt(shapes, x + 0.5, y + 0.5);
      if (bg !== tissue) agree++;
      if (tissue) n++;
    }
  const total = Math.ceil(1995 / 37) * Math.ceil(2995 / 41);
  t.ok(agree / total > 0.97, `background/tissue agrees with tissueMaskAt on ${agree}/${total} samples`);
  t.ok(n > 50, `${n} samples fall on tissue`);
  await s.close();
  const meta = await sharp(path).metadata();
  t.equal(meta.pages, 3);
});

t.test('background is off-white with a gradient, but above 190', async (t) => {
  const path = join(dir, 'bg.tiff');
  await generateSlide({ path, width: 2048, height: 2048, seed: 9, tissue: [] });
  const { data } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  let min = 255;
  for (const v of data) min = Math.min(min, v);
  t.ok(min > 190 && min < 250, `darkest background channel ${min}`);
  t.ok(data[0]! !== data[data.length - 1]!, 'gradient: corners differ');
});

t.test('makeDemo: slides and a labelled CSV, idempotent', async (t) => {
  const d = join(dir, 'demo');
  const a = await makeDemo(d);
  const { rows } = await readCsv(a.csv);
  t.equal(rows.length, 6);
  t.ok(rows.every((r) => r.label !== undefined));
  t.equal(new Set(rows.map((r) => r.patient_id)).size, 4);
  t.equal(readdirSync(a.slidesDir).filter((f) => f.endsWith('.tiff')).length, 6);
  const b = await makeDemo(d);
  t.same(b, a);
});
