/** Reads a safetensors file (8-byte header length, JSON header, raw little-endian data) into float32 tensors. */
import { DTYPE_BYTES, readerFor, type DType } from './dtype.js';
import type { NamedTensor } from '../tensor.js';

const DTYPES: Record<string, DType> = {
  F32: 'float32', F64: 'float64', F16: 'float16', BF16: 'bfloat16', I64: 'int64', I32: 'int32', I16: 'int16',
  I8: 'int8', U8: 'uint8', BOOL: 'bool',
};

interface Header {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export function readSafetensors(buf: Buffer): Map<string, NamedTensor> {
  if (buf.length < 8) throw new Error('too short for safetensors');
  const len = Number(buf.readBigUInt64LE(0));
  if (len > buf.length - 8 || len > 100_000_000) throw new Error(`header length ${len} beyond the file`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.toString('utf8', 8, 8 + len)) as Record<string, unknown>;
  } catch (cause) {
    throw new Error('safetensors header is not JSON', { cause });
  }
  const data = buf.subarray(8 + len);
  const out = new Map<string, NamedTensor>();
  for (const [key, v] of Object.entries(header)) {
    if (key === '__metadata__') continue;
    const h = v as Header;
    const dtype = DTYPES[h?.dtype];
    if (!dtype || !Array.isArray(h.shape) || !Array.isArray(h.data_offsets)) throw new Error(`tensor '${key}': bad header entry`);
    const [begin, end] = h.data_offsets;
    const count = h.shape.reduce((a, b) => a * b, 1);
    if (begin < 0 || end > data.length || end - begin !== count * DTYPE_BYTES[dtype]) {
      throw new Error(`tensor '${key}': data offsets [${begin},${end}] do not fit shape [${h.shape.join(',')}] ${h.dtype}`);
    }
    const read = readerFor(dtype, data.subarray(begin, end));
    const arr = new Float32Array(count);
    for (let i = 0; i < count; i++) arr[i] = read(i);
    out.set(key, { shape: h.shape, data: arr });
  }
  return out;
}
