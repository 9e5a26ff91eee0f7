import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCsv, CsvError } from '../../stages/csv/read.js';
import { firstInvalid, MAX_LINE_BYTES } from '../../stages/csv/lines.js';
import { checkPatients } from '../../stages/csv/patients.js';
import { parseCsv } from '../../stages/parse-csv.js';
import { makeCtx } from '../helpers/ctx.js';

const dir = mkdtempSync(join(tmpdir(), 'csv-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (content: string | Buffer): string => {
  const p = join(dir, `f${n++}.csv`);
  writeFileSync(p, content);
  return p;
};
const HEADER = 'image_id,center_id,patient_id,image_num';
const failure = (p: string): Promise<CsvError> =>
  readCsv(p).then(
    () => {
      throw new Error(`${p} was accepted`);
    },
    (e: unknown) => e as CsvError,
  );

/** A deterministic PRNG (LCG) for generated inputs. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
}

t.test('BOM, CRLF, quoted fields, extra columns, label', async (t) => {
  const p = file('\uFEFFimage_id,center_id,patient_id,image_num,label,note\r\na1,0,p1,0,1,"x, ""y"""\r\n"a2",1,p1,1,1,"multi\r\nline"\r\n\r\n');
  const { header, rows, withLabel } = await readCsv(p);
  t.same(header, ['image_id', 'center_id', 'patient_id', 'image_num', 'label', 'note']);
  t.equal(withLabel, true);
  t.equal(rows.length, 2);
  t.match(rows[0], { file: p, line: 2, image_id: 'a1', center_id: '0', patient_id: 'p1', image_num: 0, label: '1' });
  t.same(rows[0]!.raw, ['a1', '0', 'p1', '0', '1', 'x, "y"']);
  t.match(rows[1], { line: 3, image_id: 'a2', center_id: '1', image_num: 1 });
  t.equal(rows[1]!.raw[5], 'multi\r\nline');
});

t.test('no label column: label absent; column order from the header; keepData gives the bytes and spans', async (t) => {
  const text = 'patient_id,image_num,image_id,center_id\nP,3,img,2\n\nQ,1,img2,2\n';
  const p = file(text);
  const table = await readCsv(p, { keepData: true });
  t.equal(table.withLabel, false);
  t.same(table.rows.map((r) => [r.image_id, r.patient_id, r.center_id, r.image_num, 'label' in r]), [['img', 'P', '2', 3, false], ['img2', 'Q', '2', 1, false]]);
  t.same(table.header, ['patient_id', 'image_num', 'image_id', 'center_id']);
  t.equal(table.data!.toString(), text);
  const at = (s: readonly [number, number]) => table.data!.subarray(s[0], s[1]).toString();
  t.equal(at(table.headerSpan!), 'patient_id,image_num,image_id,center_id\n');
  t.same(table.rowSpans!.map(at), ['P,3,img,2\n', 'Q,1,img2,2\n'], 'each row its own bytes (the blank line is a record of its own, skipped)');
});

t.test('the ParseCSV source streams the rows already read (the file is not read again)', async (t) => {
  const p = file(`${HEADER}\na,0,p,0\nb,0,p,1\n`);
  const { rows } = await readCsv(p);
  rmSync(p);
  const got: string[] = [];
  for await (const r of parseCsv(rows)(makeCtx())) got.push(r.image_id);
  t.same(got, ['a', 'b']);
});

t.test('center_id is kept exactly: int64 range, canonical decimal', async (t) => {
  const centers = ['9007199254740993', '9223372036854775807', '-9223372036854775808', '007', '-0', String(2 ** 53 + 2), '12345678901234567890'.slice(0, 19)];
  const p = file([HEADER, ...centers.map((c, i) => `a${i},${c},p${i},0`)].join('\n') + '\n');
  const { rows } = await readCsv(p);
  t.same(rows.map((r) => r.center_id), centers.map((c) => BigInt(c).toString()), 'each as BigInt reads it');
  t.equal(rows[0]!.center_id, '9007199254740993', 'not rounded to 2^53');
  t.equal(rows[3]!.center_id, '7');
  t.equal(rows[4]!.center_id, '0');
  // The same center written two ways is one center: a patient does not conflict with itself.
  const q = file(`${HEADER}\na,07,p,0\nb,7,p,1\n`);
  await checkPatients((await readCsv(q)).rows);
  // Two centers past 2^53 that a Number would merge are two centers.
  const r = file(`${HEADER}\na,9007199254740992,p,0\nb,9007199254740993,p,1\n`);
  await t.rejects(checkPatients((await readCsv(r)).rows), { code: 'E_CSV', message: /patient p has conflicting center_id: 9007199254740992 \(.*line 2, image a\) vs 9007199254740993 \(.*line 3, image b\)/ });
});

const errors: Array<[string, string, number, RegExp]> = [
  ['missing column', 'image_id,center_id,patient_id\na,0,p\n', 1, /missing required column "image_num"/],
  ['column named twice', 'image_id,center_id,patient_id,image_num,center_id\na,0,p,0,1\n', 1, /column "center_id" appears twice in the header \(columns 2 and 5\)/],
  ['empty image_id', `${HEADER}\n,0,p,0\n`, 2, /empty image_id \(column 1, image_id\)/],
  ['empty patient_id', `${HEADER}\na,0, ,0\n`, 2, /empty patient_id \(column 3, patient_id; image_id a\)/],
  ['empty center_id', `${HEADER}\na,0,p,0\nb,,p,1\n`, 3, /empty center_id \(column 2, center_id; image_id b\)/],
  ['empty image_num', `${HEADER}\na,0,p,\n`, 2, /empty image_num \(column 4, image_num; image_id a\)/],
  ['empty label', 'image_id,center_id,patient_id,image_num,label\na,0,p,0,1\nb,0,q,0,\n', 3, /empty label: with a label column every row needs one .*\(column 5, label; image_id b\)/],
  ['blank label', 'label,image_id,center_id,patient_id,image_num\n  ,a,0,p,0\n', 2, /empty label.*\(column 1, label; image_id a\)/],
  ['duplicate', `${HEADER}\na,0,p,0\nb,0,p,1\na,0,p,2\n`, 4, /duplicate image_id a \(first on line 2\)/],
  ['repeated header', `${HEADER}\na,0,p,0\n${HEADER}\nb,0,q,0\n`, 3, /the header row is repeated here/],
  ['non-integer center', `${HEADER}\na,x1,p,0\n`, 2, /center_id "x1" is not an integer \(column 2, center_id; image_id a\)/],
  ['center past int64', `${HEADER}\na,0,p,0\nb,9223372036854775808,p,1\n`, 3, /center_id 9223372036854775808 is outside the int64 range \[-9223372036854775808, 9223372036854775807\] \(column 2, center_id; image_id b\)/],
  ['center below int64', `image_num,patient_id,center_id,image_id\n0,p,-9223372036854775809,a\n`, 2, /center_id -9223372036854775809 is outside the int64 range.*\(column 3, center_id; image_id a\)/],
  ['non-integer image_num', `${HEADER}\na,1,p,1.5\n`, 2, /image_num "1.5" is not an integer/],
  ['image_num past 2^53', `${HEADER}\na,1,p,9007199254740993\n`, 2, /image_num 9007199254740993 is beyond 2\^53 - 1.*\(column 4, image_num; image_id a\)/],
  ['path in image_id', `${HEADER}\n../etc/passwd,1,p,1\n`, 2, /not a plain file name/],
  ['wrong field count', `${HEADER}\na,1,p\n`, 2, /3 fields, the header has 4/],
  ['unterminated quote', `${HEADER}\n"a,1,p,1\n`, 2, /cannot parse/],
  ['empty file', '', 1, /empty file/],
];
for (const [name, text, line, re] of errors) {
  t.test(`error: ${name}`, async (t) => {
    const p = file(text);
    const e = await failure(p);
    t.ok(e instanceof CsvError, 'a CsvError');
    t.equal(e.code, 'E_CSV');
    t.equal(e.file, p);
    t.equal(e.line, line, 'line number');
    t.match(e.message, re);
    t.match(e.message, `${p}:${line}: `, 'message names the file and line');
  });
}

t.test('error: missing file', async (t) => {
  await t.rejects(readCsv(join(dir, 'nope.csv')), { code: 'E_CSV', message: /file not found/ });
});

t.test('error: a folder is not a CSV', async (t) => {
  await t.rejects(readCsv(dir), { code: 'E_CSV', message: /cannot read: .*EISDIR/ });
});

t.test('invalid UTF-8 is an error naming line and column, not a silent U+FFFD', async (t) => {
  // The report's case: two patients that U+FFFD would have merged into one.
  const merged = file(Buffer.concat([Buffer.from(`${HEADER}\na,0,p`), Buffer.from([0xff]), Buffer.from('1,0\nb,0,p'), Buffer.from([0xfe]), Buffer.from('1,0\n')]));
  const e = await failure(merged);
  t.equal(e.line, 2);
  t.equal(e.column, 6, 'the character column of the bad byte');
  t.match(e.message, `${merged}:2:6: invalid UTF-8 (bytes 0xff, byte 6 of the line)`);

  const cases: Array<[string, Buffer, number, number, string]> = [
    // [name, bytes of line 3 (after a valid line 2), column, byte, shown bytes]
    ['lone continuation byte', Buffer.from([0x62, 0x2c, 0x30, 0x2c, 0x80, 0x2c, 0x30]), 5, 5, '0x80'],
    ['overlong NUL', Buffer.from([0x62, 0x2c, 0x30, 0x2c, 0xc0, 0x80, 0x2c, 0x30]), 5, 5, '0xc0'],
    ['UTF-16 surrogate', Buffer.from([0x62, 0x2c, 0x30, 0x2c, 0xed, 0xa0, 0x80, 0x2c, 0x30]), 5, 5, '0xed'],
    ['truncated 3-byte char before a comma', Buffer.from([0x62, 0x2c, 0x30, 0x2c, 0x71, 0xe2, 0x82, 0x2c, 0x30]), 6, 6, '0xe2 0x82'],
    ['after multi-byte characters (columns count characters)', Buffer.concat([Buffer.from('é€😀,0,'), Buffer.from([0xf5]), Buffer.from(',0')]), 7, 13, '0xf5'],
    ['truncated char at the end of the file (no newline)', Buffer.from([0x62, 0x2c, 0x30, 0x2c, 0x70, 0x2c, 0x30, 0xf0, 0x9f, 0x98]), 8, 8, '0xf0 0x9f 0x98'],
  ];
  for (const [name, line3, column, byte, shown] of cases) {
    const p = file(Buffer.concat([Buffer.from(`${HEADER}\na,0,p,0\n`), line3, Buffer.from(name.includes('no newline') ? '' : '\n')]));
    const e = await failure(p);
    t.equal(e.code, 'E_CSV', name);
    t.equal(e.line, 3, `${name}: line`);
    t.equal(e.column, column, `${name}: column`);
    t.match(e.message, `${p}:3:${column}: invalid UTF-8 (bytes ${shown}, byte ${byte} of the line)`, name);
  }

  // Inside a quoted multi-line field: the line is the file's line, not the record's.
  const quoted = file(Buffer.concat([Buffer.from(`${HEADER},note\na,0,p,0,"one\ntwo `), Buffer.from([0xff]), Buffer.from('"\n')]));
  t.match(await failure(quoted), { line: 3, column: 5 });

  // A BOM is not a column.
  const bom = file(Buffer.concat([Buffer.from('\uFEFFimage_id,'), Buffer.from([0xff]), Buffer.from('\n')]));
  t.match(await failure(bom), { line: 1, column: 10 });
});

t.test('UTF-8 across read chunks: valid characters split by a chunk boundary pass, a bad byte far in is found', async (t) => {
  // Rows of multi-byte characters over two 64 KiB read chunks (fs streams' default), padded so that a
  // character straddles the boundary.
  const rows = Array.from({ length: 3000 }, (_, i) => `img-${i},${i % 3},p${i}😀é€,0`);
  let pad = '';
  while ((Buffer.from([HEADER + pad, ...rows].join('\n'))[65536]! & 0xc0) !== 0x80) pad += ' '; // trimmed away
  const header = HEADER + pad;
  t.ok((Buffer.from([header, ...rows].join('\n'))[65536]! & 0xc0) === 0x80, 'byte 65536 is inside a character');
  const good = file([header, ...rows].join('\n') + '\n');
  const { rows: read } = await readCsv(good);
  t.equal(read.length, rows.length);
  t.equal(read[2999]!.patient_id, 'p2999😀é€');
  const bad = Buffer.from([header, ...rows].join('\n') + '\n');
  const at = bad.indexOf('p2500😀') + 5; // the first byte of the emoji on line 2502
  bad[at + 1] = 0x41; // breaks its second byte
  const e = await failure(file(bad));
  t.match(e, { line: 2502, column: 'img-2500,1,p2500'.length + 1 });
  t.match(e.message, /bytes 0xf0, byte 17 of the line/);
});

t.test('firstInvalid agrees with the WHATWG decoder on generated lines', async (t) => {
  // Oracle: the replacing decoder's first U+FFFD is where the first invalid sequence is (lines hold no real U+FFFD).
  const random = prng(7);
  const pieces = [Buffer.from('a'), Buffer.from('é'), Buffer.from('€'), Buffer.from('😀'), Buffer.from(',')];
  let checked = 0;
  for (let k = 0; k < 2000; k++) {
    const parts: Buffer[] = [];
    const len = 1 + Math.floor(random() * 12);
    for (let i = 0; i < len; i++) {
      if (random() < 0.15) parts.push(Buffer.from([Math.floor(random() * 256)]));
      else if (random() < 0.1) parts.push(pieces[Math.floor(random() * pieces.length)]!.subarray(0, 1 + Math.floor(random() * 3)));
      else parts.push(pieces[Math.floor(random() * pieces.length)]!);
    }
    const line = Buffer.concat(parts).filter((b) => b !== 0x0a);
    const decoded = new TextDecoder('utf-8', { ignoreBOM: true }).decode(line);
    const chars = [...decoded];
    const fffd = chars.indexOf('\ufffd');
    if (fffd < 0) {
      t.throws(() => firstInvalid(line), RangeError);
      continue;
    }
    const found = firstInvalid(line);
    if (found.column !== fffd + 1) t.fail(`line ${line.toString('hex')}: column ${found.column}, decoder says ${fffd + 1}`);
    // The bytes before the bad sequence are exactly the characters before it.
    if (Buffer.from(chars.slice(0, fffd).join('')).length !== found.offset) t.fail(`line ${line.toString('hex')}: offset ${found.offset}`);
    checked++;
  }
  t.ok(checked > 500, `${checked} invalid lines checked`);
});

t.test('a line longer than the limit is refused, counted in bytes', async (t) => {
  const p = file(`${HEADER},note\na,0,p,0,${'x'.repeat(MAX_LINE_BYTES + 10)}\n`);
  t.match(await failure(p), { line: 2, message: /line longer than 1048576 bytes/ });
});

t.test('a FIFO is read once, with a writer child process', { timeout: 30_000 }, async (t) => {
  const fifo = join(dir, 'in.fifo');
  execFileSync('mkfifo', [fifo]);
  const text = [HEADER, ...Array.from({ length: 500 }, (_, i) => `img-${i},${i % 4},p${i >> 1},${i & 1}`)].join('\n') + '\n';
  // The writer opens the FIFO, writes everything and closes: a second read of the path would block forever.
  const writer = spawn(process.execPath, ['-e', 'require("fs").writeFileSync(process.argv[1], process.argv[2])', fifo, text], { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => writer.on('exit', resolve));
  t.teardown(() => {
    if (writer.exitCode === null) writer.kill();
  });
  const { rows } = await readCsv(fifo);
  t.equal(await exited, 0, 'the writer finished');
  t.equal(rows.length, 500);
  t.same(rows.slice(0, 3).map((r) => [r.image_id, r.center_id, r.patient_id, r.image_num]), [['img-0', '0', 'p0', 0], ['img-1', '1', 'p0', 1], ['img-2', '2', 'p1', 0]]);
  t.equal(rows[499]!.line, 501);
});

t.test('abort stops the reading', async (t) => {
  const p = file(`${HEADER}\na,0,p,0\nb,0,p,1\n`);
  const ac = new AbortController();
  ac.abort();
  await t.rejects(readCsv(p, { signal: ac.signal }), { name: 'AbortError' });
});
