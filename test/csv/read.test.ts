import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCsv, readCsv, readCsvHeader, CsvError } from '../../stages/parse-csv.js';
import { makeCtx } from '../helpers/ctx.js';

const dir = mkdtempSync(join(tmpdir(), 'csv-test-'));
let n = 0;
const file = (text: string): string => {
  const p = join(dir, `f${n++}.csv`);
  writeFileSync(p, text);
  return p;
};

t.test('BOM, CRLF, quoted fields, extra columns, label', async (t) => {
  const p = file('\uFEFFimage_id,center_id,patient_id,image_num,label,note\r\na1,0,p1,0,1,"x, ""y"""\r\n"a2",1,p1,1,1,"multi\r\nline"\r\n\r\n');
  const { header, rows } = await readCsv(p);
  t.same(header, ['image_id', 'center_id', 'patient_id', 'image_num', 'label', 'note']);
  t.equal(rows.length, 2);
  t.match(rows[0], { file: p, line: 2, image_id: 'a1', center_id: 0, patient_id: 'p1', image_num: 0, label: '1' });
  t.same(rows[0]!.raw, ['a1', '0', 'p1', '0', '1', 'x, "y"']);
  t.match(rows[1], { line: 3, image_id: 'a2', center_id: 1, image_num: 1 });
  t.equal(rows[1]!.raw[5], 'multi\r\nline');
});

t.test('no label column: label absent; column order from the header', async (t) => {
  const p = file('patient_id,image_num,image_id,center_id\nP,3,img,2\n');
  const { rows } = await readCsv(p);
  t.same(rows.map((r) => [r.image_id, r.patient_id, r.center_id, r.image_num, 'label' in r]), [['img', 'P', 2, 3, false]]);
  t.same(await readCsvHeader(p), ['patient_id', 'image_num', 'image_id', 'center_id']);
});

t.test('the Source streams the same rows', async (t) => {
  const p = file('image_id,center_id,patient_id,image_num\na,0,p,0\nb,0,p,1\n');
  const got: string[] = [];
  for await (const r of parseCsv(p)(makeCtx())) got.push(r.image_id);
  t.same(got, ['a', 'b']);
});

const errors: Array<[string, string, number, RegExp]> = [
  ['missing column', 'image_id,center_id,patient_id\na,0,p\n', 1, /missing required column "image_num"/],
  ['empty image_id', 'image_id,center_id,patient_id,image_num\n,0,p,0\n', 2, /empty image_id/],
  ['empty patient_id', 'image_id,center_id,patient_id,image_num\na,0, ,0\n', 2, /empty patient_id/],
  ['duplicate', 'image_id,center_id,patient_id,image_num\na,0,p,0\nb,0,p,1\na,0,p,2\n', 4, /duplicate image_id a \(first on line 2\)/],
  ['non-integer center', 'image_id,center_id,patient_id,image_num\na,x1,p,0\n', 2, /center_id "x1" is not an integer/],
  ['non-integer image_num', 'image_id,center_id,patient_id,image_num\na,1,p,1.5\n', 2, /image_num "1.5" is not an integer/],
  ['path in image_id', 'image_id,center_id,patient_id,image_num\n../etc/passwd,1,p,1\n', 2, /not a plain file name/],
  ['wrong field count', 'image_id,center_id,patient_id,image_num\na,1,p\n', 2, /3 fields, the header has 4/],
  ['unterminated quote', 'image_id,center_id,patient_id,image_num\n"a,1,p,1\n', 2, /cannot parse/],
  ['empty file', '', 1, /empty file/],
];
for (const [name, text, line, re] of errors) {
  t.test(`error: ${name}`, async (t) => {
    const p = file(text);
    const err = await readCsv(p).then(() => undefined, (e: unknown) => e);
    t.ok(err instanceof CsvError, 'a CsvError');
    const e = err as CsvError;
    t.equal(e.code, 'E_CSV');
    t.equal(e.file, p);
    t.equal(e.line, line, 'line number');
    t.match(e.message, re);
    t.match(e.message, p, 'message names the file');
  });
}

t.test('error: missing file', async (t) => {
  await t.rejects(readCsv(join(dir, 'nope.csv')), { code: 'E_CSV', message: /file not found/ });
});

t.test('abort stops the source', async (t) => {
  const p = file('image_id,center_id,patient_id,image_num\na,0,p,0\nb,0,p,1\n');
  const ac = new AbortController();
  const got: string[] = [];
  await t.rejects(
    (async () => {
      for await (const r of parseCsv(p)(makeCtx({ signal: ac.signal }))) {
        got.push(r.image_id);
        ac.abort();
      }
    })(),
  );
  t.same(got, ['a']);
});
