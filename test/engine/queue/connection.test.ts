/** The Redis URL and its password: forms, sources (file, URL, REDIS_PASSWORD), redaction everywhere, bad URLs. */
import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { queueConnection, redactArgs } from '../../../engine/queue/connection.js';

t.test('redis:// with password and db; rediss:// turns TLS on', async (t) => {
  const c = await queueConnection('redis://:s3cret@10.0.0.5:6380/2', { env: {} });
  t.match(c.options, { host: '10.0.0.5', port: 6380, db: 2, password: 's3cret', maxRetriesPerRequest: null });
  t.equal(c.display, 'redis://:***@10.0.0.5:6380/2');
  t.equal(c.redact('AUTH failed for s3cret at redis://:s3cret@10.0.0.5:6380'), 'AUTH failed for *** at redis://:***@10.0.0.5:6380');
  const tls = await queueConnection('rediss://redis.lan', { env: {} });
  t.match(tls.options, { host: 'redis.lan', port: 6379, db: 0, tls: { servername: 'redis.lan' } });
  t.notOk('password' in tls.options, 'no password anywhere: none sent');
});

t.test('the password: a file first, then the URL, then REDIS_PASSWORD', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'conn-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'pw');
  await writeFile(file, 'from-file\nignored\n');
  t.equal((await queueConnection('redis://:from-url@h:1', { passwordFile: file, env: { REDIS_PASSWORD: 'from-env' } })).options.password, 'from-file');
  t.equal((await queueConnection('redis://:from-url@h:1', { env: { REDIS_PASSWORD: 'from-env' } })).options.password, 'from-url');
  const env = await queueConnection('redis://h:1', { env: { REDIS_PASSWORD: 'from-env' } });
  t.equal(env.options.password, 'from-env');
  t.equal(env.redact('bad password from-env'), 'bad password ***', 'a password from the environment is redacted too');
  await t.rejects(queueConnection('redis://h:1', { passwordFile: join(dir, 'missing') }), { code: 'E_QUEUE_URL', message: /cannot read the Redis password file .*missing: ENOENT/ });
});

t.test('bad URLs are E_QUEUE_URL, named without their password', async (t) => {
  await t.rejects(queueConnection('http://:pw@h:1'), { code: 'E_QUEUE_URL', message: /must start with redis:\/\/ or rediss:\/\/, got http:\/\/:\*\*\*@h:1/ });
  await t.rejects(queueConnection('redis://h:1/x'), { code: 'E_QUEUE_URL', message: /database must be a number/ });
  const notUrl = await queueConnection('not a url :pw@').catch((e: Error) => e);
  t.match(notUrl, { code: 'E_QUEUE_URL' });
  t.notOk((notUrl as Error).message.includes(':pw@'), 'no password in the message');
});

t.test('redactArgs: every redis URL of a command line loses its password', async (t) => {
  t.same(redactArgs(['node', 'graph.js', '--queue', 'redis://:pw@h:6379/1', '--x', 'rediss://user:pw2@h2']), ['node', 'graph.js', '--queue', 'redis://:***@h:6379/1', '--x', 'rediss://user:***@h2']);
  t.same(redactArgs(['--queue=redis://:pw@h']), ['--queue=redis://:***@h']);
});
