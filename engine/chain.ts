/** Composes in-process stages into one stage with it-pipe (no channel between them: one node, one edge). */
import { pipe } from 'it-pipe';
import type { Stage, StageContext } from './types.js';

export function chain<A, B>(s1: Stage<A, B>): Stage<A, B>;
export function chain<A, B, C>(s1: Stage<A, B>, s2: Stage<B, C>): Stage<A, C>;
export function chain<A, B, C, D>(s1: Stage<A, B>, s2: Stage<B, C>, s3: Stage<C, D>): Stage<A, D>;
export function chain<A, B, C, D, E>(s1: Stage<A, B>, s2: Stage<B, C>, s3: Stage<C, D>, s4: Stage<D, E>): Stage<A, E>;
export function chain<A, B, C, D, E, F>(s1: Stage<A, B>, s2: Stage<B, C>, s3: Stage<C, D>, s4: Stage<D, E>, s5: Stage<E, F>): Stage<A, F>;
export function chain(...stages: Stage<unknown, unknown>[]): Stage<unknown, unknown> {
  return (source: AsyncIterable<unknown>, ctx: StageContext) => {
    let it: AsyncIterable<unknown> = source;
    for (const s of stages) it = pipe(it, (src: AsyncIterable<unknown>) => s(src, ctx));
    return it;
  };
}
