import t from 'tap';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apportion, assignSplits, parseFractions, split, SPLIT_NAMES, type SplitRow } from '../../stages/cli/split.js';

async function dir(t: Tap.Test): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'split-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** A generated CSV: `centers` centers with 0..40 patients each, 1..3 images per patient, rows interleaved. */
function generate(centers: number, opts: { eol?: string; quoted?: boolean; trailing?: boolean; bom?: boolean } = {}) {
  const eol = opts.eol ?? '\n';
  const lines: Array<{ text: string; patient: string; center: string }> = [];
  let r = 12345;
  const rand = () => ((r = (Math.imul(r, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let c = 0; c < centers; c++) {
    const n = Math.floor(rand() * 41);
    for (let p = 0; p < n; p++) {
      const patient = `c${c}-p${p}`;
      const images = 1 + Math.floor(rand() * 3);
      for (let i = 0; i < images; i++) {
        const label = opts.quoted && i === 0 ? `"MSS, ""quoted""${eol}second line"` : rand() < 0.5 ? 'MSS' : 'MSIMUT';
        lines.push({ text: `img-${patient}-${i},${c},${patient},${i},${label}`, patient, center: String(c) });
      }
    }
  }
  // Interleave rows deterministically so a patient's rows are not adjacent.
  const order = lines.map((l, i) => [(i * 7919) % 100003, l] as const).sort((a, b) => a[0] - b[0]).map(([, l]) => l);
  const header = `${opts.bom ? '\ufeff' : ''}image_id,center_id,patient_id,image_num,label`;
  const text = [header, ...order.map((l) => l.text)].join(eol) + (opts.trailing === false ? '' : eol);
  return { text, header, rows: order, eol };
}

/** Splits an output file into header and row texts (rows may contain quoted newlines: use the generator's own lines). */
async function outputs(out: string) {
  const files: Record<string, string> = {};
  for (const name of SPLIT_NAMES) files[name] = await readFile(join(out, `${name}.csv`), 'utf8');
  return files;
}

t.test('invariants on generated CSVs with many centers', async (t) => {
  for (const variant of [{}, { eol: '\r\n' }, { quoted: true }, { trailing: false }, { bom: true, eol: '\r\n', quoted: true }]) {
    const d = await dir(t);
    const csv = join(d, 'train.csv');
    const g = generate(25, variant);
    await writeFile(csv, g.text);
    const out = join(d, 'out');
    const summary = await split(['--csv', csv, '--out', out, '--fractions', '0.7,0.2,0.1', '--seed', '7']);
    const files = await outputs(out);
    const name = JSON.stringify(variant);
    const where = new Map<string, Set<string>>();
    let total = '';
    for (const [i, split] of SPLIT_NAMES.entries()) {
      const text = files[split]!;
      t.ok(text.startsWith(g.header + g.eol), `${name} ${split}: header byte-identical`);
      t.ok(!text.includes('\r\n') || g.eol === '\r\n' || variant.quoted, `${name}: line endings kept`);
      // Every input row is in exactly one output, byte for byte.
      for (const row of g.rows) {
        if (text.includes(g.eol + row.text + g.eol)) {
          total += row.text;
          const s = where.get(row.patient) ?? new Set();
          s.add(split);
          where.set(row.patient, s);
        }
      }
      t.equal(text.split(g.eol + 'img-').length - 1, summary.rows[i], `${name} ${split}: row count`);
    }
    t.equal(total.length, g.rows.reduce((s, r) => s + r.text.length, 0), `${name}: union of outputs equals the input rows`);
    t.equal(summary.rows.reduce((a, b) => a + b), g.rows.length);
    t.ok([...where.values()].every((s) => s.size === 1), `${name}: no patient in two splits`);
    // Per center: counts within one patient of the target.
    const perCenter = new Map<string, number[]>();
    for (const row of g.rows) {
      const counts = perCenter.get(row.center) ?? [0, 0, 0];
      perCenter.set(row.center, counts);
    }
    for (const [patient, splits] of where) {
      const center = g.rows.find((r) => r.patient === patient)!.center;
      perCenter.get(center)![SPLIT_NAMES.indexOf([...splits][0]! as (typeof SPLIT_NAMES)[number])]!++;
    }
    let bad = 0;
    for (const [center, counts] of perCenter) {
      const n = counts.reduce((a, b) => a + b, 0);
      [0.7, 0.2, 0.1].forEach((f, i) => { if (Math.abs(counts[i]! - f * n) >= 1) bad++; });
      t.same(counts, summary.centers.get(center), `${name} center ${center}: summary agrees with the files`);
    }
    t.equal(bad, 0, `${name}: every center within one patient of its targets`);
  }
});

t.test('deterministic per seed; another seed gives another split', async (t) => {
  const d = await dir(t);
  const csv = join(d, 'in.csv');
  await writeFile(csv, generate(10).text);
  await split(['--csv', csv, '--out', join(d, 'a'), '--seed', '3']);
  await split(['--csv', csv, '--out', join(d, 'b'), '--seed', '3']);
  await split(['--csv', csv, '--out', join(d, 'c'), '--seed', '4']);
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((x) => outputs(join(d, x))));
  t.same(a, b);
  t.not(a!['train'], c!['train']);
  t.same((await readdir(join(d, 'a'))).sort(), ['evaluation.csv', 'train.csv', 'validation.csv'], 'no temp files left');
});

t.test('apportion: largest remainder', async (t) => {
  t.same(apportion(10, [0.8, 0.1, 0.1]), [8, 1, 1]);
  t.same(apportion(1, [0.8, 0.1, 0.1]), [1, 0, 0]);
  t.same(apportion(2, [0.8, 0.1, 0.1]), [2, 0, 0]);
  t.same(apportion(3, [0.5, 0.25, 0.25]), [1, 1, 1], 'remainders .5 < .75 = .75');
  t.same(apportion(7, [0, 0.5, 0.5]), [0, 4, 3]);
  t.same(apportion(0, [0.8, 0.1, 0.1]), [0, 0, 0]);
  t.same(apportion(30, [0.7, 0.2, 0.1]), [21, 6, 3]);
});

t.test('assignSplits is pure and rejects a patient in two centers', async (t) => {
  const row = (line: number, patient_id: string, center_id: string): SplitRow => ({ line, patient_id, center_id, bytes: new Uint8Array() });
  const rows = [row(2, 'a', '1'), row(3, 'b', '1'), row(4, 'a', '1')];
  const { split: s } = assignSplits(rows, { fractions: [1, 0, 0], seed: 1 });
  t.same(s, [0, 0, 0]);
  t.throws(() => assignSplits([row(2, 'a', '1'), row(9, 'a', '2')], { fractions: [1, 0, 0], seed: 1 }, 'x.csv'), {
    code: 'E_CSV',
    message: /x.csv line 9: patient a has center_id 2 but 1 on line 2/,
  });
});

t.test('usage and CSV errors name the file and line', async (t) => {
  const d = await dir(t);
  const csv = join(d, 'in.csv');
  await writeFile(csv, generate(2).text);
  t.same(parseFractions('0.6, 0.2,0.2'), [0.6, 0.2, 0.2]);
  for (const f of ['0.8,0.1', '0.8,0.3,0.1', '-0.1,0.6,0.5', 'a,b,c', '0.5,,0.5']) {
    await t.rejects(split(['--csv', csv, '--out', d, '--fractions', f]), { code: 'E_USAGE', message: /--fractions/ }, f);
  }
  await t.rejects(split(['--csv', csv]), { code: 'E_USAGE' });
  await t.rejects(split(['--csv', csv, '--out', d, '--bogus', '1']), { code: 'E_USAGE', message: /--bogus/ });
  await t.rejects(split(['--csv', csv, '--out', d, '--seed', '-1']), { code: 'E_USAGE', message: /--seed/ });
  await t.rejects(split(['--csv', join(d, 'train.csv'), '--out', d]), { code: 'E_USAGE', message: /overwrite/ });
  await t.rejects(split(['--csv', join(d, 'missing.csv'), '--out', d]), { code: 'E_CSV', message: /missing.csv/ });
  const bad = join(d, 'bad.csv');
  await writeFile(bad, 'image_id,center_id,patient_id\na,1,p\nb,2\n');
  await t.rejects(split(['--csv', bad, '--out', join(d, 'o')]), { code: 'E_CSV', message: /bad.csv line 3/ });
  await writeFile(bad, 'image_id,center,patient_id\na,1,p\n');
  await t.rejects(split(['--csv', bad, '--out', join(d, 'o')]), { code: 'E_CSV', message: /bad.csv line 1: header/ });
  await writeFile(bad, 'image_id,center_id,patient_id\na,1,p\n\nb,1,\n');
  await t.rejects(split(['--csv', bad, '--out', join(d, 'o')]), { code: 'E_CSV', message: /bad.csv line 4: empty patient_id/ });
  await writeFile(bad, 'image_id,center_id,patient_id\r\na,1,p\r\nb,2,p\r\n');
  await t.rejects(split(['--csv', bad, '--out', join(d, 'o')]), { code: 'E_CSV', message: /bad.csv line 3: patient p/ });
  await writeFile(bad, '');
  await t.rejects(split(['--csv', bad, '--out', join(d, 'o')]), { code: 'E_CSV', message: /line 1: empty/ });
});

t.test('header-only CSV gives three header-only files', async (t) => {
  const d = await dir(t);
  const csv = join(d, 'in.csv');
  await writeFile(csv, 'image_id,center_id,patient_id\r\n');
  await split(['--csv', csv, '--out', join(d, 'o')]);
  for (const f of await outputs(join(d, 'o')).then(Object.values)) t.equal(f, 'image_id,center_id,patient_id\r\n');
});
