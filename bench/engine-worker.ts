/** Worker module for bench/engine.ts: emits `n` binary payloads of `bytes` bytes per item. */
import type { ItemFn } from '../engine/index.js';

export function payloads(config: { bytes: number }): ItemFn<{ key: string; n: number }, { i: number; pixels: Uint8Array }> {
  const block = new Uint8Array(config.bytes).fill(7);
  return async function* (item) {
    for (let i = 0; i < item.n; i++) yield { i, pixels: block };
  };
}
