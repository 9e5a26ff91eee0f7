/**
 * One onnxruntime session per (model file, threads) per process, created once and shared by the stages.
 * Threads are explicit so processes x threads never exceeds the cores.
 */
import ort from 'onnxruntime-node';
import { LRUCache } from 'lru-cache';
import { checkModel, type ModelKind } from '../check.js';
import { ModelError } from '../errors.js';
import { sessionOptions } from './session-options.js';

export { sessionOptions };

/**
 * A bounded cache: a pipeline holds two sessions per process; a long-lived process that swaps models (tests,
 * the bench) would otherwise keep every session (tens of MB each) alive. Evicted sessions are released.
 */
const MAX_SESSIONS = 4;
const releasing = new Set<Promise<void>>();
const sessions = new LRUCache<string, Promise<ort.InferenceSession>>({
  max: MAX_SESSIONS,
  dispose: (session) => {
    // A session whose creation failed has nothing to release (its error went to its callers).
    const done = session.then((s) => s.release(), () => undefined);
    releasing.add(done);
    void done.finally(() => releasing.delete(done));
  },
});

async function create(modelPath: string, kind: ModelKind, threads: number): Promise<ort.InferenceSession> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelPath, sessionOptions(threads));
  } catch (cause) {
    throw new ModelError('E_MODEL', `${modelPath}: onnxruntime cannot load the ${kind} model: ${String(cause)}`, { cause });
  }
  try {
    checkModel(session, kind, modelPath);
  } catch (err) {
    await session.release();
    throw err;
  }
  return session;
}

/** The process-wide session for `modelPath` (checked against `kind` on creation). */
export function getSession(modelPath: string, kind: ModelKind, threads = 1): Promise<ort.InferenceSession> {
  const key = `${kind}\0${threads}\0${modelPath}`;
  let s = sessions.get(key);
  if (!s) {
    s = create(modelPath, kind, threads);
    // A failed creation is not cached: the next caller gets the error afresh.
    s.catch(() => sessions.get(key) === s && sessions.delete(key));
    sessions.set(key, s);
  }
  return s;
}

/** Releases every cached session (at process exit, or in tests). */
export async function closeSessions(): Promise<void> {
  sessions.clear(); // dispose releases each one
  await Promise.all([...releasing]);
}
