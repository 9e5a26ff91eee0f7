/**
 * A queue worker checks the sha256 of every model file a job names against the hash the coordinator put in the job
 * (E_QUEUE_MODEL_HASH on a mismatch: never silently different embeddings). Hashes are cached by path, size and
 * mtime, so a worker hashes each model once, not once per slide.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { EngineError } from '../types.js';

export class ModelHashes {
  private readonly cache = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

  /** Throws E_QUEUE_MODEL_HASH unless `path` hashes to `expected` (E_QUEUE_MODEL when it cannot be read). */
  async check(path: string, expected: string | undefined, stage: string, key: string): Promise<void> {
    if (expected === undefined) throw new EngineError('E_QUEUE_MODEL_HASH', stage, key, `the job names the model ${path} without its sha256; refused`);
    let actual: string;
    try {
      actual = await this.sha256(path);
    } catch (err) {
      throw new EngineError('E_QUEUE_MODEL', stage, key, `cannot read the model ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (actual !== expected) {
      throw new EngineError('E_QUEUE_MODEL_HASH', stage, key, `model ${path} has sha256 ${actual.slice(0, 16)}..., the job expects ${expected.slice(0, 16)}... (a different file on this machine's view of the shared storage)`);
    }
  }

  private async sha256(path: string): Promise<string> {
    const st = await stat(path);
    const hit = this.cache.get(path);
    if (hit !== undefined && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.sha256;
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    const sha256 = hash.digest('hex');
    this.cache.set(path, { size: st.size, mtimeMs: st.mtimeMs, sha256 });
    return sha256;
  }
}
