/**
 * Length-prefixed `v8.serialize` frames: [u32 BE length][payload]. Typed arrays (tile pixels,
 * embedding vectors) cross as raw bytes, with no JSON or base64. Used on the worker data pipe (fd 3)
 * and in staging/checkpoint files.
 */
import { deserialize, serialize } from 'node:v8';

export function encodeFrame(value: unknown): Buffer[] {
  const body = serialize(value);
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(body.length, 0);
  return [head, body];
}

/** Splits a byte stream into decoded frames; feed chunks in order. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private have = 0;

  /** Returns the values of every frame completed by this chunk. */
  push(chunk: Buffer): unknown[] {
    this.chunks.push(chunk);
    this.have += chunk.length;
    const out: unknown[] = [];
    for (;;) {
      if (this.have < 4) break;
      const len = this.peekLength();
      if (this.have < 4 + len) break;
      const all = this.take(4 + len);
      out.push(deserialize(all.subarray(4)));
    }
    return out;
  }

  /** Bytes of an incomplete trailing frame (a truncated file). */
  get pending(): number {
    return this.have;
  }

  private peekLength(): number {
    const first = this.chunks[0] as Buffer;
    if (first.length >= 4) return first.readUInt32BE(0);
    // The 4 length bytes span chunks: join just the first few chunks (at most 4 non-empty ones hold them).
    const head = Buffer.concat(this.chunks.slice(0, 4));
    return head.readUInt32BE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    let res: Buffer;
    if (first.length >= n) {
      res = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      // A frame across chunks: copy just its bytes (the rest stays where it is, not copied with it).
      res = Buffer.allocUnsafe(n);
      let at = 0;
      while (at < n) {
        const c = this.chunks[0] as Buffer;
        const k = Math.min(c.length, n - at);
        c.copy(res, at, 0, k);
        at += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.have -= n;
    return res;
  }
}
