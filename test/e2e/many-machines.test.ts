/**
 * Many machines, end to end (issue 17): four "machines" as network namespaces on one bridge (test/helpers/netns.ts):
 * m0 runs Redis (requirepass, AOF), m1 the coordinator (`--queue`, `--workers 0`), m2 and m3 each a
 * `node graph.js worker`. The shared file system is the test's temp folder (a namespace changes only the network).
 * Each scenario breaks something mid-run, "mid-run" being what the test sees on the shared storage (a machine's
 * partial checkpoint file, a committed checkpoint) or in a process's output, never a delay:
 *   - every process of a worker machine SIGKILLed (power loss): its slide is redone on the other one;
 *   - a worker machine's link down (cut cable): its slide is redone elsewhere; once the link is back, its late
 *     result is refused and changes nothing;
 *   - Redis kill -9, then restarted on the same AOF: the run completes;
 *   - the coordinator machine killed, then the same command again: committed slides are replayed, not redone.
 * After each: shards byte-identical to a single-machine run, each slide committed once (one checkpoint per slide,
 * one report row each, ok), no temporary file, no process on any machine once the workers are stopped, no
 * namespace once the lab is torn down, and the Redis password in no output or report.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, cliEnv, e2eUnavailable, makeSlides, readReport, runCli, shardBytes, tempDir, TILE, TILE_FLAGS, waitFor, writeCsv, type SlideSpec } from '../helpers/e2e.js';
import { createLab, netnsMissing, type Lab, type Machine, type NsProcess } from '../helpers/netns.js';
import { startNsRedis, type NsRedis } from '../helpers/netns-redis.js';
import { redisMissing } from '../helpers/redis.js';

const T = TILE.tileSize;
// Four slides of 6 kept tiles each, two patients: long enough to break things part-way, short enough for 2 cores.
const SLIDES: SlideSpec[] = Array.from({ length: 4 }, (_, i) => ({
  image_id: `s${i}`,
  width: 1344,
  height: 1344,
  seed: 40 + i,
  tissue: [{ kind: 'rect' as const, x: T * (i % 3), y: T, w: 3 * T, h: 2 * T }],
}));
const PASSWORD = 'e2e-secret-7f3a';
// Short lock and stalled-check periods: a lost machine's slide is taken again within about 3 s.
const LOCK_FLAGS = ['--queue-lock-ms', '2000', '--queue-stalled-ms', '1000'];

/**
 * Every file under `dir` (relative paths). Read while a run works in it: a folder may go between its listing and its
 * reading (the job's write probe makes and removes --out before the run; temporary folders come and go).
 */
async function walk(dir: string, base = dir): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  const out: string[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p, base)));
    else out.push(p.slice(base.length + 1));
  }
  return out;
}

/** Partial checkpoint files (`<hash>.partial-<host>-<pid>-<n>`) under the run's output folder, by the host writing them. */
async function partials(out: string, host?: string): Promise<string[]> {
  return (await walk(out)).filter((f) => f.includes(host === undefined ? '.partial-' : `.partial-${host}-`));
}

/** Committed checkpoints (`*.done`) under the run's work folder, with the sha256 of each. */
async function committed(out: string): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const f of (await walk(join(out, '.work'))).filter((f) => f.endsWith('.done'))) m.set(f, createHash('sha256').update(await readFile(join(out, '.work', f))).digest('hex'));
  return m;
}

const unavailable = e2eUnavailable() ?? netnsMissing() ?? redisMissing();
if (unavailable) {
  t.plan(0, unavailable);
} else {
  const cwd = await tempDir(t, 'e2e-machines-');
  const slidesDir = join(cwd, 'slides');
  await makeSlides(slidesDir, SLIDES);
  const csv = join(cwd, 'in.csv');
  await writeCsv(csv, SLIDES.map((s, i) => ({ image_id: s.image_id, center_id: Math.floor(i / 2) % 2, patient_id: `p${Math.floor(i / 2)}`, image_num: i % 2, label: String(Math.floor(i / 2) % 2) })), true);
  const args = (out: string): string[] => ['--csv', csv, '--slides', slidesDir, '--out', out, ...TILE_FLAGS, '--progress', 'none'];

  // The reference: one machine, the local pool (also builds the demo models and the lookup table in the run's shared cache once).
  const single = await runCli([...args(join(cwd, 'single')), '--workers', '2'], cwd);
  const singleBytes = await shardBytes(join(cwd, 'single'));
  // Every machine's processes use the run's shared cache (WSI_CACHE_DIR): the lab's machines share one file system.
  const env = cliEnv();

  /** A fresh lab: Redis on m0, the coordinator's machine m1, workers on m2 and m3 (started, ready). */
  interface Cluster {
    readonly lab: Lab;
    readonly redis: NsRedis;
    readonly coordinatorHost: Machine;
    readonly workerHosts: readonly Machine[];
    readonly workers: Map<Machine, NsProcess>;
    /** Every process started on the lab, for the password check. */
    readonly all: NsProcess[];
    startWorker(m: Machine): Promise<NsProcess>;
    coordinator(out: string): NsProcess;
    /** SIGTERM to every live worker: each finishes what it holds and exits 0; then no process is left but Redis. */
    stopWorkers(t: Tap.Test): Promise<void>;
  }

  async function cluster(t: Tap.Test): Promise<Cluster> {
    const lab = createLab(t, 4);
    const [m0, m1, m2, m3] = lab.machines as [Machine, Machine, Machine, Machine];
    const redis = await startNsRedis(t, lab, m0, { password: PASSWORD });
    const workers = new Map<Machine, NsProcess>();
    const all: NsProcess[] = [];
    const startWorker = async (m: Machine): Promise<NsProcess> => {
      // The password from the environment here (REDIS_PASSWORD), from the URL for the coordinator.
      const p = lab.run(m, process.execPath, [CLI, 'worker', '--queue', `redis://${m0.address}:6379`, ...LOCK_FLAGS, '--root', cwd, '--workers', '1'], { cwd, env: { ...env, REDIS_PASSWORD: PASSWORD } });
      all.push(p);
      workers.set(m, p);
      await p.waitOutput(new RegExp(`worker: ready on .*host ${m.name},`));
      return p;
    };
    await Promise.all([startWorker(m2), startWorker(m3)]);
    return {
      lab,
      redis,
      coordinatorHost: m1,
      workerHosts: [m2, m3],
      workers,
      all,
      startWorker,
      coordinator: (out) => {
        const p = lab.run(m1, process.execPath, [CLI, ...args(out), '--queue', redis.url, ...LOCK_FLAGS, '--workers', '0'], { cwd, env });
        all.push(p);
        return p;
      },
      async stopWorkers(t) {
        for (const [m, w] of workers) {
          if (w.child.exitCode !== null || w.child.signalCode !== null) continue;
          w.child.kill('SIGTERM');
          const r = await w.done;
          t.equal(r.code, 0, `the worker on ${m.name} stopped cleanly on SIGTERM\n${r.stderr}`);
        }
        for (const m of [m1, m2, m3]) t.same(lab.pids(m), [], `no process left on ${m.name}`);
      },
    };
  }

  /** The checks after every scenario. */
  async function sameAsSingle(t: Tap.Test, out: string, c: Cluster, coordinator: { code: number | null; stderr: string }): Promise<void> {
    t.equal(coordinator.code, 0, `the coordinator exits 0\n${coordinator.stderr}`);
    const bytes = await shardBytes(out);
    t.same([...bytes.keys()], [...singleBytes.keys()], 'the same shard files as the single-machine run');
    for (const [f, b] of bytes) t.ok(b.equals(singleBytes.get(f)!), `${f} byte-identical to the single-machine run`);
    const report = await readReport(out);
    t.same(report.slides.map((s) => s.image_id).sort(), SLIDES.map((s) => s.image_id), 'one report row per slide');
    t.ok(report.slides.every((s) => s.status === 'ok'), 'every slide ok');
    t.equal((await committed(out)).size, SLIDES.length, 'one committed checkpoint per slide');
    await c.stopWorkers(t);
    t.same(await partials(out), [], 'no partial checkpoint left');
    t.same((await walk(out)).filter((f) => /\.staging-|\.tmp|\.partial-/.test(f)), [], 'no temporary file left');
    const texts = [...c.all.flatMap((p) => [p.stdout(), p.stderr()]), await readFile(join(out, 'report.json'), 'utf8'), await readFile(join(out, 'report.html'), 'utf8')];
    t.notOk(texts.some((x) => x.includes(PASSWORD)), 'the Redis password is in no output and no report');
  }

  t.test('the single-machine reference', async (t) => {
    t.equal(single.code, 0, single.stderr);
    t.ok(singleBytes.size > 0);
    const report = await readReport(join(cwd, 'single'));
    t.ok(report.slides.every((s) => s.status === 'ok' && s.tiles_kept === 6), 'six tiles kept on every slide');
  });

  const labs: Lab[] = [];
  t.afterEach(() => {
    // Each scenario's lab is torn down by its own teardown: nothing of it may be left.
    for (const lab of labs.splice(0)) if (lab.leftovers().length > 0) throw new Error(`lab left behind: ${lab.leftovers().join(', ')}`);
  });

  t.test('a worker machine loses power mid-slide: its slide is redone on the other one', async (t) => {
    const c = await cluster(t);
    labs.push(c.lab);
    const out = join(cwd, 'power-loss');
    const [victim, survivor] = c.workerHosts as [Machine, Machine];
    const coord = c.coordinator(out);
    await waitFor(`a slide in progress on ${victim.name}`, async () => (await partials(out, victim.name)).length > 0, 120_000);
    const killed = await c.lab.killMachine(victim);
    t.ok(killed.length >= 2, `killed the worker and its process on ${victim.name} (${killed.length} processes)`);
    c.workers.delete(victim);
    const r = await coord.done;
    await sameAsSingle(t, out, c, r);
    const rows = (await readReport(out)).slides;
    t.ok(rows.some((s) => (s.stalls ?? 0) >= 1 && (s.attempts ?? 0) >= 2), 'the lost slide is reported stalled, with its attempts');
    t.ok(rows.every((s) => (s.stalls ?? 0) === 0 || s.host === survivor.name), 'a stalled slide was finished by the survivor');
    t.ok(rows.every((s) => s.host === survivor.name || s.host === victim.name), 'each slide names the machine that did it');
  });

  t.test("a worker machine's link goes down mid-slide: redone elsewhere; its late result changes nothing", async (t) => {
    const c = await cluster(t);
    labs.push(c.lab);
    const out = join(cwd, 'cut-off');
    const [victim, survivor] = c.workerHosts as [Machine, Machine];
    const coord = c.coordinator(out);
    await waitFor(`a slide in progress on ${victim.name}`, async () => (await partials(out, victim.name)).length > 0, 120_000);
    c.lab.linkDown(victim);
    const r = await coord.done;
    t.equal(r.code, 0, r.stderr);
    const before = await committed(out);
    // The cable back: the cut-off worker finishes (or has finished) its slide; its completion is refused by BullMQ.
    c.lab.linkUp(victim);
    await waitFor(`${victim.name} done with its late slide`, async () => (await partials(out, victim.name)).length === 0, 120_000);
    t.same(await committed(out), before, 'the late commit left every checkpoint as it was (same bytes)');
    await sameAsSingle(t, out, c, r);
    const rows = (await readReport(out)).slides;
    t.ok(rows.some((s) => (s.stalls ?? 0) >= 1), 'the cut-off slide is reported stalled');
    t.ok(rows.every((s) => (s.stalls ?? 0) === 0 || s.host === survivor.name), 'and credited to the machine that redid it');
  });

  t.test('Redis kill -9 mid-run, restarted on its AOF: the run completes', async (t) => {
    const c = await cluster(t);
    labs.push(c.lab);
    const out = join(cwd, 'redis-restart');
    const coord = c.coordinator(out);
    await waitFor('a first committed slide', async () => (await committed(out)).size >= 1, 120_000);
    await c.redis.kill();
    // Restarted once the coordinator has seen it gone (observed, not timed).
    await Promise.any([coord, ...c.workers.values()].map((p) => p.waitOutput(/ECONNREFUSED/)));
    await c.redis.restart();
    const r = await coord.done;
    await sameAsSingle(t, out, c, r);
  });

  t.test('the coordinator machine dies mid-run; the same command again replays the committed slides', async (t) => {
    const c = await cluster(t);
    labs.push(c.lab);
    const out = join(cwd, 'coordinator-lost');
    const first = c.coordinator(out);
    await waitFor('a first committed slide', async () => (await committed(out)).size >= 1, 120_000);
    await c.lab.killMachine(c.coordinatorHost);
    t.equal((await first.done).signal, 'SIGKILL');
    const done = (await committed(out)).size;
    t.ok(done >= 1 && done < SLIDES.length, `stopped part-way: ${done} of ${SLIDES.length} committed`);
    const again = await c.coordinator(out).done;
    await sameAsSingle(t, out, c, again);
    const report = await readReport(out);
    t.ok(report.slides.filter((s) => s.resumed === true).length >= done, 'the slides committed before the kill are replayed, not redone');
  });
}
