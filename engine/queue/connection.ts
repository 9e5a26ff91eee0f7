/**
 * The Redis connection of a queue run: `redis://[:password@]host:port[/db]` or `rediss://` (TLS), the password from
 * the URL, a file or REDIS_PASSWORD (in that order of precedence: file, URL, environment), never printed: every text
 * that may hold it goes through `redact`. `checkReachable` answers before any work whether Redis is there.
 */
import { readFile } from 'node:fs/promises';
import type { RedisOptions } from 'bullmq';
import { Redis, type RedisOptions as IoRedisOptions } from 'ioredis';
import { EngineError } from '../types.js';

export interface QueueConnection {
  /** ioredis options for BullMQ (which opens its own connections from them). */
  readonly options: RedisOptions;
  /** The URL without its password, for messages and reports. */
  readonly display: string;
  /** Removes the password from `text` (an error message, say). */
  redact(text: string): string;
}

/** Where the password may come from besides the URL. */
export interface PasswordSources {
  /** A file holding the password (its first line). */
  readonly passwordFile?: string;
  /** The environment (REDIS_PASSWORD). */
  readonly env?: NodeJS.ProcessEnv;
}

const STAGE = 'queue';

/** Parses `url` and finds its password (E_QUEUE_URL on a malformed URL, naming it without its password). */
export async function queueConnection(url: string, sources: PasswordSources = {}): Promise<QueueConnection> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new EngineError('E_QUEUE_URL', STAGE, undefined, `--queue must be redis://[:password@]host:port[/db] or rediss://..., got "${url.includes('@') ? `***@${url.slice(url.lastIndexOf('@') + 1)}` : url}"`);
  }
  const display = redactUrl(u);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new EngineError('E_QUEUE_URL', STAGE, undefined, `--queue must start with redis:// or rediss://, got ${display}`);
  if (u.hostname === '') throw new EngineError('E_QUEUE_URL', STAGE, undefined, `--queue names no host: ${display}`);
  const dbText = u.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) throw new EngineError('E_QUEUE_URL', STAGE, undefined, `--queue database must be a number, got "${dbText}" in ${display}`);
  const password = await findPassword(u, sources);
  const options: RedisOptions = {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port === '' ? 6379 : Number(u.port),
    db,
    ...(u.username !== '' && { username: decodeURIComponent(u.username) }),
    ...(password !== undefined && { password }),
    ...(u.protocol === 'rediss:' && { tls: { servername: u.hostname } }),
    // BullMQ's blocking connections need it (a command waits through a Redis restart instead of failing).
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    // Reconnects for ever, at most a second apart: a Redis restarted mid-run is found again.
    retryStrategy: (times: number) => Math.min(1000, 50 * times),
  };
  return { options, display, redact: (text) => redactText(text, password) };
}

async function findPassword(u: URL, sources: PasswordSources): Promise<string | undefined> {
  if (sources.passwordFile !== undefined) {
    const text = await readFile(sources.passwordFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new EngineError('E_QUEUE_URL', STAGE, undefined, `cannot read the Redis password file ${sources.passwordFile}: ${err.code ?? err.message}`);
    });
    return text.split(/\r?\n/)[0];
  }
  if (u.password !== '') return decodeURIComponent(u.password);
  const env = (sources.env ?? process.env).REDIS_PASSWORD;
  return env === undefined || env === '' ? undefined : env;
}

/** The URL with its password (if any) replaced by ***. */
function redactUrl(u: URL): string {
  const c = new URL(u.href);
  if (c.password !== '') c.password = '***';
  return c.href;
}

/** A command line with the password of every redis:// or rediss:// URL in it replaced by *** (for lock files and logs). */
export function redactArgs(argv: readonly string[]): string[] {
  return argv.map((a) => redactText(a, undefined));
}

function redactText(text: string, password: string | undefined): string {
  let out = text.replace(/(rediss?:\/\/[^:@/\s]*:)[^@\s]*@/g, '$1***@');
  if (password !== undefined && password !== '') out = out.split(password).join('***');
  return out;
}

/**
 * Connects once, with no retries, and pings (E_QUEUE_UNREACHABLE within `timeoutMs`: wrong host, port or password,
 * Redis down). Also refuses a Redis older than 6.2 (E_QUEUE_REDIS), which BullMQ needs.
 */
export async function checkReachable(conn: QueueConnection, timeoutMs = 5000): Promise<void> {
  const redis = new Redis({ ...(conn.options as IoRedisOptions), lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  redis.on('error', () => undefined); // reported by the failed connect below
  try {
    await redis.connect();
    await redis.ping();
    const info = await redis.info('server');
    const version = /redis_version:(\d+)\.(\d+)/.exec(info);
    if (version !== null && (Number(version[1]) < 6 || (Number(version[1]) === 6 && Number(version[2]) < 2))) {
      throw new EngineError('E_QUEUE_REDIS', STAGE, undefined, `Redis at ${conn.display} is ${version[1]}.${version[2]}; BullMQ needs 6.2 or later`);
    }
  } catch (err) {
    if (err instanceof EngineError) throw err;
    throw new EngineError('E_QUEUE_UNREACHABLE', STAGE, undefined, `cannot reach Redis at ${conn.display}: ${conn.redact((err as Error).message)}`);
  } finally {
    redis.disconnect();
  }
}
