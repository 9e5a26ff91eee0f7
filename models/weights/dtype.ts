/** Converting little-endian tensor bytes of the dtypes checkpoints use into float32. */

export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'uint8' | 'int8' | 'int16' | 'bool';

export const DTYPE_BYTES: Record<DType, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, uint8: 1, int8: 1, bool: 1,
};

function half(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Element `i` of `bytes` (a view of `count` elements) as a number. */
export function readerFor(dtype: DType, bytes: Buffer): (i: number) => number {
  switch (dtype) {
    case 'float32': return (i) => bytes.readFloatLE(i * 4);
    case 'float64': return (i) => bytes.readDoubleLE(i * 8);
    case 'float16': return (i) => half(bytes.readUInt16LE(i * 2));
    case 'bfloat16': {
      const f = new Float32Array(1);
      const u = new Uint32Array(f.buffer);
      return (i) => ((u[0] = bytes.readUInt16LE(i * 2) << 16), f[0]!);
    }
    case 'int64': return (i) => Number(bytes.readBigInt64LE(i * 8));
    case 'int32': return (i) => bytes.readInt32LE(i * 4);
    case 'int16': return (i) => bytes.readInt16LE(i * 2);
    case 'int8': return (i) => bytes.readInt8(i);
    case 'uint8': case 'bool': return (i) => bytes[i]!;
  }
}
