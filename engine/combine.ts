/**
 * Keyed reducer (CombineFn): one accumulator per key, each with a private spill directory under the
 * run's temp dir. At the end of input emits `[key, extractOutput(acc)]` in sorted key order, then
 * disposes the accumulator and removes its spill directory. On any failure every accumulator is
 * disposed and every spill directory removed.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { CombineContext, CombineFn, KV, StageContext } from './types.js';
import { EngineError } from './types.js';

interface Entry<A> {
  acc: A;
  readonly ctx: CombineContext;
  disposed: boolean;
}

export async function* combineStage<I, A, O>(
  source: AsyncIterable<I>,
  ctx: StageContext,
  tmpDir: string,
  keyOf: (value: I) => string,
  fn: CombineFn<I, A, O>,
): AsyncGenerator<KV<string, O>> {
  const entries = new Map<string, Entry<A>>();
  const base = join(tmpDir, `combine-${ctx.name.replace(/[^\w.-]/g, '_')}`);
  let n = 0;
  const cleanup = async (e: Entry<A>): Promise<void> => {
    try {
      if (!e.disposed) {
        e.disposed = true;
        await fn.dispose?.(e.acc);
      }
    } finally {
      await rm(e.ctx.spillDir, { recursive: true, force: true });
    }
  };
  try {
    for await (const v of source) {
      const key = keyOf(v);
      let e = entries.get(key);
      if (e === undefined) {
        const spillDir = join(base, String(n++));
        await mkdir(spillDir, { recursive: true });
        const cctx: CombineContext = { key, spillDir, signal: ctx.signal };
        // Registered before createAccumulator resolves, so its spill dir is removed even if that throws.
        const placeholder: Entry<A> = { acc: undefined as A, ctx: cctx, disposed: true };
        entries.set(key, placeholder);
        try {
          placeholder.acc = await fn.createAccumulator(cctx);
        } catch (err) {
          throw new EngineError('E_STAGE', ctx.name, key, `createAccumulator failed: ${String((err as Error)?.message ?? err)}`, { cause: err });
        }
        placeholder.disposed = false;
        e = placeholder;
      }
      try {
        e.acc = await fn.addInput(e.acc, v);
      } catch (err) {
        throw new EngineError(codeOf(err), ctx.name, key, `addInput failed: ${String((err as Error)?.message ?? err)}`, { cause: err });
      }
    }
    const keys = [...entries.keys()].sort(compareKeys);
    for (const key of keys) {
      const e = entries.get(key) as Entry<A>;
      let out: O;
      try {
        out = await fn.extractOutput(e.acc);
      } catch (err) {
        throw new EngineError(codeOf(err), ctx.name, key, `extractOutput failed: ${String((err as Error)?.message ?? err)}`, { cause: err });
      }
      entries.delete(key);
      await cleanup(e);
      yield [key, out] as const;
    }
  } finally {
    const errors: unknown[] = [];
    for (const e of entries.values()) {
      try {
        await cleanup(e);
      } catch (err) {
        errors.push(err); // keep disposing the others; the first run error already wins
      }
    }
    await rm(base, { recursive: true, force: true });
    if (errors.length > 0 && !ctx.signal.aborted) {
      // eslint-disable-next-line no-unsafe-finally
      throw new EngineError('E_STAGE', ctx.name, undefined, `dispose failed for ${errors.length} accumulator(s)`, { cause: errors[0] });
    }
  }
}

/** Code-unit order: deterministic and locale-independent. */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function codeOf(e: unknown): string {
  const c = (e as { code?: unknown })?.code;
  return typeof c === 'string' ? c : 'E_STAGE';
}
