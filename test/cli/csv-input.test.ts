/**
 * The CSV through the compiled CLI from places that can be read only once: `--csv -` (a child's standard
 * input), a FIFO with a writer process, `/dev/stdin`. The runs finish (bounded by the test timeouts: a second
 * read of a FIFO would block forever) with the right rows, and center_id values past 2^53 come out exact in
 * the TFRecords, in `inspect` and in `split`.
 */
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { e2eUnavailable, makeSlides, readExamples, runCli, shardBytes, startCli, tempDir, TILE, TILE_FLAGS } from '../helpers/e2e.js';
import { ExampleType } from '../../stages/tfrecord/example-proto.js';
import { readTfrecords } from '../../stages/tfrecord/framing.js';

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'cli-csv-input-');
  const slidesDir = join(cwd, 'slides');
  const T = TILE.tileSize;
  await makeSlides(slidesDir, [
    { image_id: 'a0', width: 1344, height: 1344, seed: 21, tissue: [{ kind: 'rect', x: T, y: T, w: 2 * T, h: 2 * T }] },
    { image_id: 'b0', width: 1344, height: 1120, seed: 22, tissue: [{ kind: 'rect', x: 0, y: T, w: 3 * T, h: T }] },
  ]);
  // Centers a Number cannot hold: 2^63 - 1 and 2^53 + 1.
  const CENTERS = { pa: '9223372036854775807', pb: '9007199254740993' };
  const csvText = `image_id,center_id,patient_id,image_num,label\na0,${CENTERS.pa},pa,0,1\nb0,${CENTERS.pb},pb,0,0\n`;
  const args = (csv: string, out: string) => ['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--workers', '1', '--progress', 'none'];

  /** center_id of every record, decoded exactly (as decimal strings). */
  async function centers(out: string): Promise<Record<string, string>> {
    const got: Record<string, string> = {};
    for (const [file] of await shardBytes(out)) {
      for await (const { data } of readTfrecords(join(out, file))) {
        const f = (ExampleType.toObject(ExampleType.decode(data), { longs: String, arrays: true }) as { features: { feature: Record<string, { bytes_list?: { value: Uint8Array[] }; int64_list?: { value: string[] } }> } }).features.feature;
        got[Buffer.from(f['patient_id']!.bytes_list!.value[0]!).toString()] = f['center_id']!.int64_list!.value[0]!;
      }
    }
    return got;
  }

  /** Makes a FIFO and starts a child process that writes `text` into it (its open waits for the reader). */
  function fifoWithWriter(name: string, text: string): { fifo: string; written: Promise<number | null> } {
    const fifo = join(cwd, name);
    execFileSync('mkfifo', [fifo]);
    const writer = spawn(process.execPath, ['-e', 'require("fs").writeFileSync(process.argv[1], process.argv[2])', fifo, text], { stdio: 'ignore' });
    t.teardown(() => {
      if (writer.exitCode === null && writer.signalCode === null) writer.kill();
    });
    return { fifo, written: new Promise((resolve) => writer.on('exit', resolve)) };
  }

  const stdinOut = join(cwd, 'out-stdin');
  t.test('--csv - through the child\'s stdin: the run reads the rows; center_id exact in the records and in inspect', { timeout: 600_000 }, async (t) => {
    const r = await runCli(args('-', stdinOut), cwd, { stdin: csvText });
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /Wrote 2 patients/);
    t.same(await centers(stdinOut), CENTERS, 'int64 center_id written exactly');
    const examples = await readExamples(stdinOut);
    t.same(examples.map((e) => [e.bytes['patient_id']![0]!.toString(), e.bytes['image_ids']!.map(String), e.bytes['label']!.map(String)]).sort(), [['pa', ['a0'], ['1']], ['pb', ['b0'], ['0']]]);
    const report = JSON.parse(await readFile(join(stdinOut, 'report.json'), 'utf8')) as { params: { csv: string } };
    t.equal(report.params.csv, '-');
    const i = await runCli(['inspect', stdinOut], cwd);
    t.equal(i.code, 0, i.stderr);
    t.match(i.stdout, new RegExp(`pa: tiles \\d+, label 1, center ${CENTERS.pa}, images 1`));
    t.match(i.stdout, new RegExp(`pb: tiles \\d+, label 0, center ${CENTERS.pb}, images 1`));
  });

  t.test('a FIFO as --csv, written by another process: read once, the run finishes with the same output', { timeout: 600_000 }, async (t) => {
    const { fifo, written } = fifoWithWriter('job.fifo', csvText);
    const out = join(cwd, 'out-fifo');
    const r = await startCli(args(fifo, out), cwd).done;
    t.equal(await written, 0, 'the writer finished');
    t.equal(r.code, 0, r.stderr);
    t.same(await shardBytes(out), await shardBytes(stdinOut), 'byte-identical to the run that read stdin');
  });

  t.test('split reads -, /dev/stdin and a FIFO, writing every row back exactly', { timeout: 300_000 }, async (t) => {
    const rows = Array.from({ length: 40 }, (_, i) => `img-${i},${(i >> 1) % 2 === 0 ? CENTERS.pa : '7'},p${i >> 1},${i & 1},${(i >> 1) % 2}`);
    const text = ['image_id,center_id,patient_id,image_num,label', ...rows].join('\n') + '\n';
    const fifo = fifoWithWriter('split.fifo', text);
    for (const [source, csv, stdin] of [['-', '-', text], ['/dev/stdin', '/dev/stdin', text], ['a FIFO', fifo.fifo, undefined]] as const) {
      const out = join(cwd, `split-${source.replace(/\W/g, '')}`);
      const r = await runCli(['split', '--csv', csv, '--out', out, '--seed', '3'], cwd, stdin === undefined ? {} : { stdin });
      t.equal(r.code, 0, `${source}: exit 0\n${r.stderr}`);
      const written: string[] = [];
      for (const name of ['train', 'validation', 'evaluation']) {
        const lines = (await readFile(join(out, `${name}.csv`), 'utf8')).split('\n');
        t.equal(lines[0], 'image_id,center_id,patient_id,image_num,label', `${source} ${name}: header`);
        written.push(...lines.slice(1).filter((l) => l !== ''));
      }
      t.same(written.sort(), [...rows].sort(), `${source}: every row once, as written (center ${CENTERS.pa} exact)`);
    }
    t.equal(await fifo.written, 0, 'the FIFO writer finished');
  });
}
