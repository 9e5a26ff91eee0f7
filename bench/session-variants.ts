/**
 * Named onnxruntime session-option sets the embedding A/B (bench/embed-ab.ts) compares against the stages' own
 * (`base`, models/runtime/session-options.ts). Each is the base plus one change, so a difference is that change's.
 */
import type { InferenceSession } from 'onnxruntime-node';
import { sessionOptions } from '../models/runtime/session-options.js';

type Options = InferenceSession.SessionOptions;

/** The base options with these session config entries added (`extra`, flattened by the binding to `a.b.c` keys). */
function withConfig(threads: number, entries: Record<string, string>): Options {
  const base = sessionOptions(threads);
  const extra: Record<string, Record<string, unknown>> = { ...(base.extra as Record<string, Record<string, unknown>>) };
  for (const [key, value] of Object.entries(entries)) {
    const [area, ...rest] = key.split('.');
    // One level of nesting is enough for these keys; the rest of the key stays dotted (the binding joins with '.').
    extra[area!] = { ...(extra[area!] ?? {}), [rest.join('.')]: value };
  }
  return { ...base, extra };
}

export const SESSION_VARIANTS: Readonly<Record<string, (threads: number) => Options>> = {
  base: (t) => sessionOptions(t),
  // SiLU (x * Sigmoid(x)) is fused into com.microsoft QuickGelu, which has no NCHWc kernel: the blocked layout is
  // reordered back to NCHW around every activation. Without the fusion, Sigmoid and Mul stay in the blocked layout.
  'no-quickgelu': (t) => withConfig(t, { 'optimization.disable_specified_optimizers': 'QuickGeluFusion' }),
  // 'extended' leaves out the layout optimizations (no NCHWc at all).
  extended: (t) => ({ ...sessionOptions(t), graphOptimizationLevel: 'extended' }),
  'no-mem-pattern': (t) => ({ ...sessionOptions(t), enableMemPattern: false }),
  // Flush denormals to zero (random or poorly trained weights can produce them; changes results in the last bits).
  daz: (t) => withConfig(t, { 'session.set_denormal_as_zero': '1' }),
  'no-quickgelu+daz': (t) => withConfig(t, { 'optimization.disable_specified_optimizers': 'QuickGeluFusion', 'session.set_denormal_as_zero': '1' }),
};

/** The option set named `name`, or an error listing the known ones. */
export function sessionVariant(name: string, threads: number): Options {
  const make = SESSION_VARIANTS[name];
  if (make === undefined) throw new Error(`unknown session variant '${name}' (known: ${Object.keys(SESSION_VARIANTS).join(', ')})`);
  return make(threads);
}
