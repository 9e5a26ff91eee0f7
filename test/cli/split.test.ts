import t from 'tap';
import { existsSync } from 'node:fs';
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
      // One label per patient (the shared CSV checks refuse a patient whose rows disagree).
      const label = opts.quoted && p % 2 === 0 ? `"MSS, ""quoted""${eol}second line"` : rand() < 0.5 ? 'MSS' : 'MSIMUT';
      for (let i = 0; i < images; i++) {
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
  const H = 'image_id,center_id,patient_id,image_num';
  await writeFile(bad, `${H}\na,1,p,0\nb,2\n`);
  await t.rejects(split(['--csv', bad, '--out', join(d, 'o')]), { code: 'E_CSV', message: `${bad}:3: 2 fields, the header has 4` });
  await writeFile(bad, 'image_id,center,patient_id,image_num\na,1,p,0\n');
  await t.rejects(split(['--csv', bad, '--out', join(d, 'o')]), { code: 'E_CSV', message: `${bad}:1: missing required column "center_id"` });
  await writeFile(bad, `${H}\na,1,p,0\n\nb,1,,0\n`);
  await t.rejects(split(['--csv', bad, '--out', join(d, 'o')]), { code: 'E_CSV', message: `${bad}:4: empty patient_id` });
  await writeFile(bad, `${H}\r\na,1,p,0\r\nb,2,p,1\r\n`);
  await t.rejects(split(['--csv', bad, '--out', join(d, 'o')]), { code: 'E_CSV', message: `patient p has conflicting center_id: 1 (${bad} line 2, image a) vs 2 (${bad} line 3, image b)` });
  await writeFile(bad, '');
  await t.rejects(split(['--csv', bad, '--out', join(d, 'o')]), { code: 'E_CSV', message: /:1: empty file/ });
  t.notOk(existsSync(join(d, 'o')), 'nothing written for a refused CSV');
});

t.test('split checks the CSV as the main job does (the same shared checks)', async (t) => {
  const d = await dir(t);
  const H = 'image_id,center_id,patient_id,image_num,label';
  const good = generate(3).text;
  // Each case: a generated good CSV broken in one way, on a known line.
  const lines = good.trimEnd().split('\n');
  const cases: Array<[string, string | Buffer, number, string | RegExp]> = [
    ['duplicate image_id', [...lines, lines[1]!.replace(/,c\d+-p\d+,/, ',other-patient,')].join('\n') + '\n', lines.length + 1, `duplicate image_id ${lines[1]!.split(',')[0]} (first on line 2)`],
    ['no image_num column', good.replace(/^image_id,center_id,patient_id,image_num,label/, 'image_id,center_id,patient_id,num,label'), 1, 'missing required column "image_num"'],
    ['empty image_num', [H, 'a,0,p,,x'].join('\n') + '\n', 2, 'empty image_num (column 4, image_num; image_id a)'],
    ['a repeated header row (two CSVs concatenated)', good + good, lines.length + 1, 'the header row is repeated here'],
    ['empty label', [H, 'a,0,p,0,MSS', 'b,0,q,0, '].join('\n') + '\n', 3, /empty label.*\(column 5, label; image_id b\)/],
    ['center_id past int64', [H, 'a,99999999999999999999,p,0,x'].join('\n') + '\n', 2, /center_id 99999999999999999999 is outside the int64 range/],
    ['invalid UTF-8', Buffer.concat([Buffer.from(`${H}\na,0,p`), Buffer.from([0xff]), Buffer.from('1,0,x\nb,0,p'), Buffer.from([0xfe]), Buffer.from('1,0,x\n')]), 2, ':2:6: invalid UTF-8 (bytes 0xff'],
    ['two image_num 0 for one patient', [H, 'a,0,p,0,x', 'b,0,p,0,x'].join('\n') + '\n', 0, /patient p has conflicting image_num: 0/],
    ['labels disagree within a patient', [H, 'a,0,p,0,x', 'b,0,p,1,y'].join('\n') + '\n', 0, /patient p has conflicting label: "x"/],
  ];
  for (const [name, content, line, message] of cases) {
    const csv = join(d, 'in.csv');
    await writeFile(csv, content);
    const err = (await split(['--csv', csv, '--out', join(d, 'out')]).then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: string; message: string; line?: number } | undefined;
    t.equal(err?.code, 'E_CSV', `${name}: refused (E_CSV)`);
    t.match(err?.message, message, `${name}: message`);
    if (line > 0) {
      t.equal(err?.line, line, `${name}: line`);
      t.match(err?.message, `${csv}:${line}`, `${name}: file and line in the message`);
    }
    t.notOk(existsSync(join(d, 'out')), `${name}: nothing written`);
  }
});

t.test('center_id is compared exactly: past 2^53 two centers stay two, 07 and 7 are one', async (t) => {
  const d = await dir(t);
  const csv = join(d, 'in.csv');
  const H = 'image_id,center_id,patient_id,image_num';
  await writeFile(csv, [H, 'a,9007199254740992,p1,0', 'b,9007199254740993,p2,0', 'c,07,p3,0', 'd,7,p4,0', 'e,9223372036854775807,p5,0'].join('\n') + '\n');
  const summary = await split(['--csv', csv, '--out', join(d, 'o'), '--fractions', '1,0,0']);
  t.same([...summary.centers.keys()].sort(), ['7', '9007199254740992', '9007199254740993', '9223372036854775807']);
  t.same(summary.centers.get('7'), [2, 0, 0]);
  const train = await readFile(join(d, 'o', 'train.csv'), 'utf8');
  t.match(train, '\ne,9223372036854775807,p5,0\n', 'rows written back byte for byte');
  t.match(train, '\nc,07,p3,0\n');
});

t.test('an empty split is warned about on the warning channel', async (t) => {
  const d = await dir(t);
  const csv = join(d, 'in.csv');
  const run = async (args: string[]) => {
    const logs: string[] = [];
    const warnings: string[] = [];
    const summary = await split(['--csv', csv, '--out', join(d, 'o'), ...args], { log: (l) => logs.push(l), warn: (l) => warnings.push(l) });
    return { summary, logs, warnings };
  };
  await writeFile(csv, generate(4).text);
  const normal = await run([]);
  t.ok(normal.summary.patients.every((p) => p > 0), 'generated: every split has patients');
  t.same(normal.warnings, [], 'no warning when no split is empty');
  t.equal(normal.logs.length, 3);

  const allTrain = await run(['--fractions', '1,0,0']);
  t.same(allTrain.summary.patients.slice(1), [0, 0]);
  t.equal(allTrain.warnings.length, 2);
  t.match(allTrain.warnings[0], /^warning: the validation split is empty \(its fraction is 0\): .*validation.csv holds only the header$/);
  t.match(allTrain.warnings[1], /^warning: the evaluation split is empty \(its fraction is 0\)/);

  await writeFile(csv, 'image_id,center_id,patient_id,image_num\na,0,solo,0\nb,0,solo,1\n');
  const one = await run([]);
  t.same(one.summary.patients, [1, 0, 0]);
  t.same(one.warnings.map((w) => w.split(':')[1]!.trim()), ['the validation split is empty (1 patient(s) are too few for a fraction of 0.1)', 'the evaluation split is empty (1 patient(s) are too few for a fraction of 0.1)']);
});

t.test('header-only CSV gives three header-only files', async (t) => {
  const d = await dir(t);
  const csv = join(d, 'in.csv');
  await writeFile(csv, 'image_id,center_id,patient_id,image_num\r\n');
  const warnings: string[] = [];
  await split(['--csv', csv, '--out', join(d, 'o')], { log: () => {}, warn: (l) => warnings.push(l) });
  for (const f of await outputs(join(d, 'o')).then(Object.values)) t.equal(f, 'image_id,center_id,patient_id,image_num\r\n');
  t.equal(warnings.length, 3, 'each split warned empty');
});
