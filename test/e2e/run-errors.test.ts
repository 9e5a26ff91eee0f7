/**
 * Errors during a run, through the compiled CLI: a worker killed once shows in the report as a slide that took two
 * attempts, with the first one's cause; thousands of missing slides give a short stderr summary (counts by code,
 * the first few in full), a lean report.json that still lists every slide, and a report.html of bounded size.
 */
import t from 'tap';
import { readdirSync, readlinkSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { descendants } from '../../stages/cli/proc-tree.js';
import { e2eUnavailable, makeSlides, readReport, runCli, startCli, tempDir, TILE, TILE_FLAGS, waitFor, writeCsv } from '../helpers/e2e.js';

/** The pid of a process under `root` that has `file` open, if any (from /proc/<pid>/fd). */
function holderOf(root: number, file: string): number | undefined {
  for (const pid of descendants(root)) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // it exited meanwhile
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === file) return pid;
      } catch {
        // the fd closed meanwhile: look at the next one
      }
    }
  }
  return undefined;
}

const unavailable = e2eUnavailable();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  // One working directory for the file: the demo models and the LUT are built once, in its .cache.
  const cwd = await tempDir(t, 'e2e-run-errors-');
  const T = TILE.tileSize;

  t.test('a slide whose worker is killed once succeeds on the retry: 2 attempts, the first one\'s cause in the report', async (t) => {
    const slidesDir = join(cwd, 'slides-kill');
    // 16 x 16 kept tiles: seconds of work, so the kill lands while the slide is read.
    await makeSlides(slidesDir, [{ image_id: 'big', width: 16 * T, height: 16 * T, seed: 7, tissue: [{ kind: 'rect', x: 0, y: 0, w: 16 * T, h: 16 * T }] }]);
    const csv = join(cwd, 'kill.csv');
    await writeCsv(csv, [{ image_id: 'big', center_id: 0, patient_id: 'p0', image_num: 0, label: '1' }], true);
    const out = join(cwd, 'out-kill');
    const run = startCli(['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--workers', '1', '--no-share', '--progress', 'none'], cwd);
    const slideFile = join(slidesDir, 'big.tiff');
    let ended = false;
    void run.done.then(() => (ended = true));
    const worker = await waitFor('a worker process reading the slide', () => {
      if (ended) throw new Error('the run ended before its worker could be killed');
      return holderOf(run.child.pid!, slideFile);
    });
    process.kill(worker, 'SIGKILL');
    const r = await run.done;
    t.equal(r.code, 0, r.stderr);
    const s = (await readReport(out)).slides[0]!;
    t.equal(s.status, 'ok');
    t.equal(s.attempts, 2, 'two attempts');
    t.equal(s.failed_attempts?.length, 1, 'one failed attempt');
    t.equal(s.failed_attempts?.[0]?.attempt, 1);
    t.equal(s.failed_attempts?.[0]?.code, 'E_WORKER_CRASH');
    t.match(s.failed_attempts?.[0]?.error, new RegExp(`worker process ${worker} died .*SIGKILL`), 'the first attempt\'s cause: its process was killed');
    t.match(r.stderr, /slide big: ok after 2 attempt\(s\) \(attempt 1: E_WORKER_CRASH worker process \d+ died/, 'stderr says so too');
  });

  t.test('thousands of missing slides: stderr summarised, report.json lean and complete, report.html bounded', async (t) => {
    const n = 3000;
    const csv = join(cwd, 'missing.csv');
    const lines = ['image_id,center_id,patient_id,image_num,label', ...Array.from({ length: n }, (_, i) => `gone-${i},0,p${i},0,1`)];
    await writeFile(csv, lines.join('\n') + '\n');
    const slidesDir = join(cwd, 'slides-none');
    await makeSlides(slidesDir, []);
    const out = join(cwd, 'out-missing');
    const r = await runCli(['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--progress', 'none'], cwd);
    t.equal(r.code, 1, 'failed slides: exit code 1');
    t.ok(Buffer.byteLength(r.stderr) < 4096, `stderr stays short (${Buffer.byteLength(r.stderr)} bytes for ${n} failures)`);
    t.match(r.stderr, `${n} slide(s) failed: ${n} E_SLIDE_MISSING`, 'counts by code');
    t.equal(r.stderr.match(/^ {2}slide gone-\d+ \(patient p\d+\) failed: E_SLIDE_MISSING: slide "gone-\d+" \(.+\): no slide file \(tried .+\)$/gm)?.length, 5, 'the first five in full');
    t.match(r.stderr, `... and ${n - 5} more E_SLIDE_MISSING; see ${join(out, 'report.json')}`);
    t.ok(Buffer.byteLength(r.stdout) < 2048, `stdout stays short too (${Buffer.byteLength(r.stdout)} bytes)`);

    const jsonBytes = statSync(join(out, 'report.json')).size;
    t.ok(jsonBytes < 300 * n, `report.json is lean: ${(jsonBytes / n).toFixed(0)} bytes per slide`);
    const report = await readReport(out);
    t.equal(report.slides.length, n, 'every slide is in report.json');
    t.ok(report.slides.every((s, i) => s.image_id === `gone-${i}` && s.status === 'failed' && s.code === 'E_SLIDE_MISSING' && s.error === `gone-${i}: no slide file`), 'each with its code and a short message');
    t.equal(report.failures?.length, 1);
    t.equal(report.failures?.[0]?.count, n);
    t.match(report.failures?.[0]?.first[0]?.error, /^E_SLIDE_MISSING: slide "gone-\d+" \(.+\): no slide file \(tried \.svs, /, 'the full message, once per code');

    const htmlBytes = statSync(join(out, 'report.html')).size;
    t.ok(htmlBytes < 200_000, `report.html is bounded (${htmlBytes} bytes)`);
    const html = await import('node:fs/promises').then((fs) => fs.readFile(join(out, 'report.html'), 'utf8'));
    t.match(html, `<h3>E_SLIDE_MISSING: ${n} slide(s)</h3>`, 'failed slides summarised by code');
    t.match(html, `${n - 500} more slide(s) not listed`, 'the slide table is capped, with a note');
    t.match(html, `<h2>Dropped patients (${n})</h2>`);
  });
}
