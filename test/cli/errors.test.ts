/**
 * Exit code 2 through the compiled CLI: usage errors, bad CSVs and unusable models are refused before any
 * slide is opened, with a message naming the file and line (or the flag, or the model), and nothing is
 * written to the output folder.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { e2eUnavailable, makeSlides, runCli, shardFiles, tempDir, TILE, TILE_FLAGS } from '../helpers/e2e.js';

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'cli-errors-');
  const slidesDir = join(cwd, 'slides');
  const T = TILE.tileSize;
  await makeSlides(slidesDir, [{ image_id: 'a0', width: 1344, height: 1344, seed: 7, tissue: [{ kind: 'rect', x: T, y: T, w: 2 * T, h: 2 * T }] }]);
  const good = join(cwd, 'good.csv');
  await writeFile(good, 'image_id,center_id,patient_id,image_num,label\na0,0,pa,0,1\n');

  /** Runs the CLI into a fresh output folder; checks exit code 2, the message, and that nothing was written. */
  async function refused(t: Tap.Test, name: string, args: string[], message: RegExp | string): Promise<void> {
    const out = join(cwd, `out-${name}`);
    const r = await runCli([...args, '--out', out, '--progress', 'none'], cwd);
    t.equal(r.code, 2, `${name}: exit code 2\n${r.stderr}`);
    t.match(r.stderr, message, `${name}: message`);
    t.same(await shardFiles(out), [], `${name}: no shards written`);
    t.notOk(existsSync(join(out, 'report.json')), `${name}: no report (the run never started)`);
  }

  t.test('CSV errors name the file and the line', async (t) => {
    const missing = join(cwd, 'missing.csv');
    await writeFile(missing, 'image_id,center_id,patient_id,label\na0,0,pa,1\n');
    await refused(t, 'missing-column', ['--csv', missing, '--slides', slidesDir], `${missing}:1: missing required column "image_num"`);

    const dup = join(cwd, 'dup.csv');
    await writeFile(dup, 'image_id,center_id,patient_id,image_num,label\na0,0,pa,0,1\na1,0,pa,1,1\na0,0,pb,0,1\n');
    await refused(t, 'duplicate', ['--csv', dup, '--slides', slidesDir], `${dup}:4: duplicate image_id a0 (first on line 2)`);

    // Found by the per-patient check before the run (it used to surface only inside the graph, exit 1).
    const conflict = join(cwd, 'conflict.csv');
    await writeFile(conflict, 'image_id,center_id,patient_id,image_num,label\na0,0,pa,0,1\na1,1,pa,1,1\n');
    const empty = join(cwd, 'empty.csv');
    await writeFile(empty, 'image_id,center_id,patient_id,image_num,label\n');
    await refused(t, 'no-rows', ['--csv', empty, '--slides', slidesDir], `${empty}:1: the CSV has a header but no rows`);

    await refused(t, 'center-conflict', ['--csv', conflict, '--slides', slidesDir], new RegExp(`patient pa has conflicting center_id: 0 \\(${conflict} line 2, image a0\\) vs 1 \\(${conflict} line 3`));
  });

  t.test('CSV content errors are found before any slide: UTF-8, labels, int64 centers, a repeated header', async (t) => {
    const H = 'image_id,center_id,patient_id,image_num,label';
    // Two patients that invalid bytes decoded as U+FFFD would have merged into one.
    const utf8 = join(cwd, 'utf8.csv');
    await writeFile(utf8, Buffer.concat([Buffer.from(`${H}\na0,0,p`), Buffer.from([0xff]), Buffer.from('1,0,1\na1,0,p'), Buffer.from([0xfe]), Buffer.from('1,0,1\n')]));
    await refused(t, 'invalid-utf8', ['--csv', utf8, '--slides', slidesDir], `${utf8}:2:7: invalid UTF-8 (bytes 0xff, byte 7 of the line)`);
    // An empty label used to surface only after every slide was processed (exit 1, nothing written).
    const label = join(cwd, 'label.csv');
    await writeFile(label, `${H}\na0,0,pa,0,1\na1,0,pb,0,\n`);
    await refused(t, 'empty-label', ['--csv', label, '--slides', slidesDir], new RegExp(`${label}:3: empty label: .*\\(column 5, label; image_id a1\\)`));
    const big = join(cwd, 'big.csv');
    await writeFile(big, `${H}\na0,9223372036854775808,pa,0,1\n`);
    await refused(t, 'center-past-int64', ['--csv', big, '--slides', slidesDir], `${big}:2: center_id 9223372036854775808 is outside the int64 range [-9223372036854775808, 9223372036854775807] (column 2, center_id; image_id a0)`);
    const twice = join(cwd, 'twice.csv');
    await writeFile(twice, `${H}\na0,0,pa,0,1\n${H}\na1,0,pb,0,1\n`);
    await refused(t, 'repeated-header', ['--csv', twice, '--slides', slidesDir], `${twice}:3: the header row is repeated here`);
  });

  t.test('--csv - reads standard input; its errors name <stdin>', async (t) => {
    const out = join(cwd, 'out-stdin-bad');
    const r = await runCli(['--csv', '-', '--slides', slidesDir, '--out', out, '--progress', 'none'], cwd, { stdin: 'image_id,center_id,patient_id,image_num,label\na0,0,pa,0,1\na0,0,pb,0,1\n' });
    t.equal(r.code, 2, r.stderr);
    t.match(r.stderr, '<stdin>:3: duplicate image_id a0 (first on line 2)');
    t.same(await shardFiles(out), []);
  });

  t.test('split refuses what the main job refuses (exit 2) and warns about an empty split', async (t) => {
    const dup = join(cwd, 'split-dup.csv');
    await writeFile(dup, 'image_id,center_id,patient_id,image_num\na0,0,pa,0\na1,0,pb,0\na0,0,pc,0\n');
    const r = await runCli(['split', '--csv', dup, '--out', join(cwd, 'split-dup')], cwd);
    t.equal(r.code, 2, r.stderr);
    t.match(r.stderr, `${dup}:4: duplicate image_id a0 (first on line 2)`);
    t.notOk(existsSync(join(cwd, 'split-dup')), 'nothing written');
    const one = join(cwd, 'split-one.csv');
    await writeFile(one, 'image_id,center_id,patient_id,image_num\na0,0,pa,0\n');
    const w = await runCli(['split', '--csv', one, '--out', join(cwd, 'split-one'), '--fractions', '1,0,0'], cwd);
    t.equal(w.code, 0, w.stderr);
    t.match(w.stderr, /warning: the validation split is empty \(its fraction is 0\)/);
    t.match(w.stderr, /warning: the evaluation split is empty/);
    t.match(w.stdout, /train: 1 patients, 1 rows/);
  });

  t.test('usage errors', async (t) => {
    await refused(t, 'bad-flag', ['--csv', good, '--slides', slidesDir, '--bogus'], /Unknown option '--bogus'[\s\S]*--help/);
    await refused(t, 'bad-number', ['--csv', good, '--slides', slidesDir, '--workers', 'two'], '--workers must be a positive integer, got "two"');
    await refused(t, 'csv-without-slides', ['--csv', good], '--csv and --slides go together');
    const r = await runCli(['models', 'frobnicate'], cwd);
    t.equal(r.code, 2);
    t.match(r.stderr, 'unknown models command "frobnicate"');
  });

  t.test('a model that is not one is refused with its name', async (t) => {
    const fake = join(cwd, 'x.onnx');
    await writeFile(fake, 'this is a text file, not an ONNX model\n');
    await refused(t, 'bad-embedder', ['--csv', good, '--slides', slidesDir, ...TILE_FLAGS, '--embedder', fake], `${fake}: not a loadable ONNX model`);
  });
}
