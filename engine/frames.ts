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
    const joined = Buffer.concat(this.chunks);
    this.chunks = [joined];
    return joined.readUInt32BE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    let res: Buffer;
    if (first.length >= n) {
      res = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const joined = Buffer.concat(this.chunks);
      res = joined.subarray(0, n);
      this.chunks = joined.length > n ? [joined.subarray(n)] : [];
    }
    this.have -= n;
    return res;
  }
}
