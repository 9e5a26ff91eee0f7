import t from 'tap';
import { formatCell } from '../../stages/report/slide-format.js';
import type { SlideReport } from '../../stages/report/report.js';

const base: SlideReport = { image_id: 's', patient_id: 'p', status: 'ok', error: null, width: 1, height: 1, tiles_total: 1, tiles_kept: 1, seconds: 1 };
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

t.test('the format cell: format, backend, levels used, stated scale, mapping; empty before a summary', async (t) => {
  t.equal(formatCell(base, esc), '', 'no summary (failed before selection): empty');
  t.equal(formatCell({ ...base, format: 'svs', backend: 'sharp', levels: [1, 4, 16], thumbnail_level: 2, tile_level: 0, mpp_x: 0.499, mpp_y: 0.499, magnification: 20, scale_source: 'aperio' }, esc), 'svs, sharp; levels 0 + 2 of 3; 0.499 µm/px, 20x (aperio)');
  t.equal(formatCell({ ...base, format: 'dicom', backend: 'dicom', levels: [1], thumbnail_level: 0, tile_level: 0, mpp_x: 0.5, mpp_y: 0.25, scale_source: 'dicom' }, esc), 'dicom, dicom; levels 0 of 1; 0.500×0.250 µm/px (dicom)', 'x and y differ: both');
  t.equal(formatCell({ ...base, format: 'tiff', backend: 'sharp', levels: [1], thumbnail_level: 0, tile_level: 0, channel_mapping: 'a <b>' }, esc), 'tiff, sharp; levels 0 of 1<br><em>not brightfield, mapped: a &lt;b></em>', 'the mapping, escaped');
});
