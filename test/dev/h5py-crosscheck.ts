/**
 * Dev-only cross-check (not a tap test: no Python in tests or CI). Reads the TFRecords of an output folder
 * written with --formats ...,h5 and prints, per slide, the sha256 of the features / coords the h5 files must
 * hold; h5py-crosscheck.py reads the h5 files with Debian's python3-h5py and compares:
 *
 *   node --import=@tapjs/typescript/... test/dev/h5py-crosscheck.ts OUT > expected.json
 *   /usr/bin/python3 test/dev/h5py-crosscheck.py OUT expected.json
 */
import { createHash } from 'node:crypto';
import { readExamples } from '../helpers/e2e.js';

const out = process.argv[2];
if (out === undefined) throw new Error('usage: h5py-crosscheck.ts OUT');
const sha = (a: ArrayBufferView): string => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
const expected: Record<string, { n: number; dim: number; features_avg: string; features_max: string; coords: string }> = {};
for (const ex of await readExamples(out)) {
  const n = ex.ints['num_tiles']![0]!;
  const dim = ex.floats['avg_embedding']!.length / n;
  ex.bytes['image_ids']!.map(String).forEach((image_id, k) => {
    const rows = ex.ints['tile_image_index']!.flatMap((v, i) => (v === k ? [i] : []));
    const pick = (name: string): Float32Array => Float32Array.from(rows.flatMap((i) => ex.floats[name]!.slice(i * dim, (i + 1) * dim)));
    const coords = BigInt64Array.from(rows.flatMap((i) => [BigInt(ex.ints['tile_x']![i]!), BigInt(ex.ints['tile_y']![i]!)]));
    expected[image_id] = { n: rows.length, dim, features_avg: sha(pick('avg_embedding')), features_max: sha(pick('max_embedding')), coords: sha(coords) };
  });
}
console.log(JSON.stringify(expected, null, 2));
