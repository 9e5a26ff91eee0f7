/**
 * Reads a PyTorch zip checkpoint (torch.save since 1.6: `<any folder>/data.pkl` + `<folder>/data/<key>` blobs)
 * into float32 tensors, with the restricted unpickler. Honours storage offset and strides; the saved device
 * (cuda:0...) is ignored since the bytes are the same.
 */
import { readZipEntries, readZipEntry } from './zip.js';
import { PyGlobal, unpickle } from './pickle.js';
import { DTYPE_BYTES, readerFor, type DType } from './dtype.js';
import type { NamedTensor } from '../tensor.js';

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32', DoubleStorage: 'float64', HalfStorage: 'float16', BFloat16Storage: 'bfloat16',
  LongStorage: 'int64', IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8', ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

const ALLOWED = new Set([
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

class Storage {
  constructor(readonly dtype: DType, readonly bytes: Buffer) {}
}

function rebuildTensor(args: unknown[]): NamedTensor {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof Storage) || typeof offset !== 'number' || !Array.isArray(size) || !Array.isArray(stride)) {
    throw new Error('pickle: malformed _rebuild_tensor_v2 arguments');
  }
  const shape = size as number[];
  const strides = stride as number[];
  const count = shape.reduce((a, b) => a * b, 1);
  const available = storage.bytes.length / DTYPE_BYTES[storage.dtype];
  const read = readerFor(storage.dtype, storage.bytes);
  const data = new Float32Array(count);
  // Walk the logical indices in row-major order, mapping each through the strides.
  const idx = new Array<number>(shape.length).fill(0);
  for (let n = 0; n < count; n++) {
    let off = offset;
    for (let d = 0; d < shape.length; d++) off += idx[d]! * strides[d]!;
    if (off < 0 || off >= available) throw new Error(`tensor element at storage offset ${off} beyond its storage of ${available}`);
    data[n] = read(off);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d]! < shape[d]!) break;
      idx[d] = 0;
    }
  }
  return { shape, data };
}

/** Every tensor in the checkpoint's top-level dict (or its nested `state_dict` / `model`), by key. */
export function readTorchZip(buf: Buffer): Map<string, NamedTensor> {
  const entries = readZipEntries(buf);
  const pkl = [...entries.keys()].find((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
  if (!pkl) throw new Error('no data.pkl in the archive (not a torch.save file?)');
  const prefix = pkl.slice(0, pkl.length - 'data.pkl'.length);
  const storages = new Map<string, Storage>();
  const root = unpickle(readZipEntry(buf, entries.get(pkl)!), {
    allowed: ALLOWED,
    persistentLoad: (pid) => {
      if (!Array.isArray(pid) || pid[0] !== 'storage' || !(pid[1] instanceof PyGlobal) || typeof pid[2] !== 'string') {
        throw new Error('pickle: unexpected persistent id');
      }
      const [, type, key] = pid as [string, PyGlobal, string];
      const cached = storages.get(key);
      if (cached) return cached;
      const dtype = STORAGE_DTYPES[type.name];
      const entry = entries.get(`${prefix}data/${key}`);
      if (!dtype || !entry) throw new Error(`storage ${key} (${type.qualified}) missing from the archive`);
      const s = new Storage(dtype, readZipEntry(buf, entry));
      storages.set(key, s);
      return s;
    },
    reduce: (fn, args) => {
      switch (fn.qualified) {
        case 'collections.OrderedDict': return new Map();
        case 'torch._utils._rebuild_tensor_v2': return rebuildTensor(args);
        case 'torch._utils._rebuild_parameter': return args[0];
        default: throw new Error(`pickle: cannot call '${fn.qualified}'`);
      }
    },
  });
  return tensorsOf(root);
}

function isTensor(v: unknown): v is NamedTensor {
  return typeof v === 'object' && v !== null && 'data' in v && (v as NamedTensor).data instanceof Float32Array;
}

function tensorsOf(root: unknown): Map<string, NamedTensor> {
  if (!(root instanceof Map)) throw new Error('the checkpoint is not a dict');
  for (const nested of ['state_dict', 'model']) {
    const inner = root.get(nested);
    if (inner instanceof Map) return tensorsOf(inner);
  }
  const out = new Map<string, NamedTensor>();
  for (const [k, v] of root) {
    // DataParallel checkpoints prefix every key with `module.`.
    if (typeof k === 'string' && isTensor(v)) out.set(k.startsWith('module.') ? k.slice(7) : k, v);
  }
  return out;
}
