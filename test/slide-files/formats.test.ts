/** --formats: parsing (order normalised, spaces allowed) and refusals (unknown, twice, no tfrecord), through parseRunOptions too. */
import t from 'tap';
import { parseFormats } from '../../stages/slide-files/formats.js';
import { parseRunOptions } from '../../stages/cli/options.js';

t.same(parseFormats('tfrecord'), ['tfrecord']);
t.same(parseFormats('geojson, tfrecord,h5'), ['tfrecord', 'h5', 'geojson'], 'in a fixed order, spaces trimmed');
t.same(parseFormats('tfrecord,HDF5'), { error: '--formats: unknown format "HDF5" in "tfrecord,HDF5" (known: tfrecord, h5, geojson)' });
t.same(parseFormats('tfrecord,geojson,geojson'), { error: '--formats: geojson is named twice in "tfrecord,geojson,geojson"' });
t.match(parseFormats('h5'), { error: /must include tfrecord/ });
t.match(parseFormats('tfrecord,'), { error: /unknown format ""/ });

const opts = parseRunOptions(['--out', '/tmp/x']);
t.same(opts !== 'help' && opts.formats, ['tfrecord'], 'default: tfrecord');
const withFormats = parseRunOptions(['--out', '/tmp/x', '--formats', 'tfrecord,h5']);
t.same(withFormats !== 'help' && withFormats.formats, ['tfrecord', 'h5']);
t.throws(() => parseRunOptions(['--out', '/tmp/x', '--formats', 'tfrecord,zarr']), { code: 'E_USAGE', message: /unknown format "zarr"/ });
