/**
 * The namespace lab itself (test/helpers/netns.ts, netns-redis.ts): machines reach each other across the bridge,
 * a link taken down cuts one machine off and up brings it back, killing a machine leaves none of its processes,
 * Redis keeps its data across kill -9 (AOF), and teardown leaves no namespace, interface or process.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createLab, LAB_PREFIX, netnsMissing, type Lab, type Machine, type NsProcess } from './netns.js';
import { startNsRedis, type NsRedis } from './netns-redis.js';

/** A PING over TCP from inside a namespace: prints Redis's answer, or the error, or "timeout" after `timeoutMs`. */
const PING = `
const [host, port, ms] = process.argv.slice(1);
const s = require('node:net').connect(Number(port), host);
s.setTimeout(Number(ms), () => { console.log('timeout'); process.exit(0); });
s.on('connect', () => s.write('PING\\r\\n'));
s.on('data', (d) => { console.log(String(d).trim()); process.exit(0); });
s.on('error', (e) => { console.log(e.code); process.exit(0); });`;

/** PING from `from` to the server: "+PONG", or what went wrong. */
async function ping(lab: Lab, from: Machine, redis: NsRedis, timeoutMs = 10_000): Promise<string> {
  const r = await lab.run(from, process.execPath, ['-e', PING, redis.machine.address, '6379', String(timeoutMs)]).done;
  return (r.stdout + r.stderr).trim();
}

const missing = netnsMissing();
if (missing) {
  t.plan(0, missing);
} else {
  t.test("a lab left by a killed test process is removed by the next lab; a live process's lab is not", async (t) => {
    const gone = spawnSync(process.execPath, ['-p', 'process.pid']); // a pid that ran and is gone now
    const dead = `${LAB_PREFIX}${Number(gone.stdout).toString(36)}_0-br`;
    const live = `${LAB_PREFIX}${process.ppid.toString(36)}_0-br`; // tap's process runs on
    for (const ns of [dead, live]) t.equal(spawnSync('ip', ['netns', 'add', ns]).status, 0, `made ${ns}`);
    t.teardown(() => void spawnSync('ip', ['netns', 'del', live]));
    createLab(t, 1);
    t.notOk(existsSync(`/run/netns/${dead}`), 'the dead creator\'s namespace is gone');
    t.ok(existsSync(`/run/netns/${live}`), 'the live one stays');
  });

  t.test('machines, links, kills, redis', async (t) => {
    const lab = createLab(t, 3);
    const [m0, m1, m2] = lab.machines as [Machine, Machine, Machine];
    t.not(m0.address, m1.address);
    const redis = await startNsRedis(t, lab, m1);

    t.equal(await ping(lab, m0, redis), '+PONG', 'm0 reaches redis on m1 across the bridge');
    t.equal(await ping(lab, m2, redis), '+PONG', 'm2 too');
    t.equal(await ping(lab, m1, redis), '+PONG', 'and m1 itself on its own address');
    const named = await lab.run(m2, process.execPath, ['-p', 'require("node:os").hostname()']).done;
    t.equal(named.stdout.trim(), 'm2', 'a process on m2 sees the hostname m2');

    lab.linkDown(m0);
    t.not(await ping(lab, m0, redis, 2000), '+PONG', 'm0 cut off: no answer');
    t.equal(await ping(lab, m2, redis), '+PONG', 'the others still reach it');
    lab.linkUp(m0);
    t.equal(await ping(lab, m0, redis), '+PONG', 'link up: m0 reaches it again');

    // A machine with a process tree (a shell and its children) loses every process at once.
    const tree = lab.run(m2, 'sh', ['-c', 'sleep 1000 & sleep 1000 & echo started; wait']);
    await tree.waitOutput(/started/);
    t.ok(lab.pids(m2).length >= 3, 'sh and its two sleeps run in m2');
    const killed = await lab.killMachine(m2);
    t.ok(killed.length >= 3, `killed ${killed.length} processes`);
    t.same(lab.pids(m2), [], 'nothing left in m2');
    t.equal((await tree.done).signal, 'SIGKILL');
    t.equal(await ping(lab, m0, redis), '+PONG', 'the other machines are untouched');

    // AOF: a kill -9 keeps what was written.
    const set = await lab.run(m0, 'redis-cli', ['-h', m1.address, 'SET', 'k', 'v1']).done;
    t.equal(set.stdout.trim(), 'OK');
    await redis.kill();
    t.not(await ping(lab, m0, redis, 1000), '+PONG', 'redis is down');
    await redis.restart();
    const get = await lab.run(m0, 'redis-cli', ['-h', m1.address, 'GET', 'k']).done;
    t.equal(get.stdout.trim(), 'v1', 'the value survived kill -9');
  });

  let lab: Lab | undefined;
  let sleeper: NsProcess | undefined;
  await t.test('a lab with processes running at its end', async (t) => {
    lab = createLab(t, 2);
    sleeper = lab.run(lab.machines[0]!, 'sleep', ['1000']);
    t.ok(lab.leftovers().length >= 3, 'namespaces exist while the test runs');
  });
  t.test('teardown left nothing', async (t) => {
    t.same(lab!.leftovers(), [], 'no namespace or interface of the lab');
    t.equal(sleeper!.child.signalCode, 'SIGKILL', 'its process was killed and reaped');
    t.throws(() => process.kill(sleeper!.child.pid!, 0), { code: 'ESRCH' }, 'and is gone');
  });

  t.test('createLab refuses a silly size', async (t) => {
    t.throws(() => createLab(t, 0), /1\.\.200/);
  });
}
