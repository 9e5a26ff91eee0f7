/**
 * Writes checkpoint-shaped files for importer tests: a torch.save-like zip (pickle protocol 2 with
 * _rebuild_tensor_v2 + BINPERSID storages) and safetensors. Only what the tests need.
 */
import { deflateRawSync } from 'node:zlib';

export interface TensorSpec {
  readonly shape: readonly number[];
  /** Storage contents (float32 unless `dtype` says otherwise). */
  readonly storage: readonly number[];
  readonly offset?: number;
  readonly stride?: readonly number[];
  readonly dtype?: 'float32' | 'int64' | 'float16';
  /** Share the storage of another tensor key (same bytes). */
  readonly storageKey?: string;
}

class Pickler {
  private readonly parts: Buffer[] = [];
  private memo = 0;
  op(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }
  raw(s: string): this {
    this.parts.push(Buffer.from(s, 'latin1'));
    return this;
  }
  global(module: string, name: string): this {
    return this.op(0x63).raw(`${module}\n${name}\n`).put();
  }
  put(): this {
    return this.op(0x71, this.memo++ & 255);
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    this.parts.push(Buffer.from([0x58]), len, b);
    return this;
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.op(0x4b, n);
    const b = Buffer.alloc(4);
    b.writeInt32LE(n);
    this.parts.push(Buffer.from([0x4a]), b);
    return this;
  }
  tuple(items: readonly number[]): this {
    this.op(0x28);
    for (const i of items) this.int(i);
    return this.op(0x74);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function storageBytes(spec: TensorSpec): Buffer {
  const dtype = spec.dtype ?? 'float32';
  if (dtype === 'int64') return Buffer.from(BigInt64Array.from(spec.storage.map((v) => BigInt(v))).buffer);
  if (dtype === 'float16') {
    // Exact for small integers and halves: enough for the test.
    const b = Buffer.alloc(spec.storage.length * 2);
    spec.storage.forEach((v, i) => {
      const f = new Float32Array([v]);
      const u = new Uint32Array(f.buffer)[0]!;
      const sign = (u >>> 16) & 0x8000;
      const exp = ((u >>> 23) & 0xff) - 127 + 15;
      const mant = (u >>> 13) & 0x3ff;
      b.writeUInt16LE(v === 0 ? 0 : sign | (exp << 10) | mant, i * 2);
    });
    return b;
  }
  return Buffer.from(Float32Array.from(spec.storage).buffer);
}

/** The pickle torch.save writes for an OrderedDict of tensors, plus storage blobs by key. */
export function torchPickle(
  tensors: ReadonlyMap<string, TensorSpec>,
  opts: { extraGlobal?: [string, string] } = {},
): { pkl: Buffer; storages: Map<string, Buffer> } {
  const p = new Pickler().op(0x80, 2).global('collections', 'OrderedDict').op(0x29, 0x52).put().op(0x28);
  const storages = new Map<string, Buffer>();
  let k = 0;
  for (const [name, spec] of tensors) {
    const key = spec.storageKey ?? String(k++);
    if (!storages.has(key)) storages.set(key, storageBytes(spec));
    const stType = { float32: 'FloatStorage', int64: 'LongStorage', float16: 'HalfStorage' }[spec.dtype ?? 'float32'];
    p.str(name).global('torch._utils', '_rebuild_tensor_v2');
    p.op(0x28, 0x28).str('storage').global('torch', stType).str(key).str('cuda:0').int(spec.storage.length).op(0x74).op(0x51);
    const shape = spec.shape;
    const stride = spec.stride ?? shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    p.int(spec.offset ?? 0).tuple(shape).tuple(stride).op(0x89);
    p.global('collections', 'OrderedDict').op(0x29, 0x52).op(0x74, 0x52).put();
  }
  p.op(0x75);
  if (opts.extraGlobal) p.global(...opts.extraGlobal).op(0x29, 0x52, 0x30);
  p.op(0x2e);
  return { pkl: p.bytes(), storages };
}

/** A zip with the given entries, stored (method 0) unless listed in `deflate`. */
export function zipFiles(files: ReadonlyMap<string, Buffer>, deflate: ReadonlySet<string> = new Set()): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of files) {
    const nameBuf = Buffer.from(name, 'utf8');
    const method = deflate.has(name) ? 8 : 0;
    const body = method === 8 ? deflateRawSync(data) : data;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(method, 8);
    lh.writeUInt32LE(body.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(nameBuf.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(method, 10);
    ch.writeUInt32LE(body.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(nameBuf.length, 28);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, nameBuf, body);
    central.push(ch, nameBuf);
    offset += 30 + nameBuf.length + body.length;
  }
  const cd = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(files.size, 8);
  eocd.writeUInt16LE(files.size, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, eocd]);
}

/** A torch.save-shaped .pth: `<folder>/data.pkl`, `<folder>/data/<key>`, `<folder>/version`. */
export function torchZip(
  tensors: ReadonlyMap<string, TensorSpec>,
  opts: { folder?: string; deflate?: boolean; extraGlobal?: [string, string] } = {},
): Buffer {
  const folder = opts.folder ?? 'archive';
  const { pkl, storages } = torchPickle(tensors, opts);
  const files = new Map<string, Buffer>([[`${folder}/data.pkl`, pkl]]);
  for (const [k, b] of storages) files.set(`${folder}/data/${k}`, b);
  files.set(`${folder}/version`, Buffer.from('3\n'));
  return zipFiles(files, opts.deflate ? new Set(files.keys()) : new Set());
}

/** A safetensors file of float32 tensors. */
export function safetensors(tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const blobs: Buffer[] = [];
  let off = 0;
  for (const [k, t] of tensors) {
    const b = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[k] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + b.length] };
    blobs.push(b);
    off += b.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...blobs]);
}

/** Tensors (name -> shape + float32 data) as the writers' TensorSpecs. */
export function tensorSpecs(tensors: ReadonlyMap<string, { readonly shape: readonly number[]; readonly data: Float32Array }>): Map<string, TensorSpec> {
  return new Map([...tensors].map(([k, v]) => [k, { shape: v.shape, storage: [...v.data] }]));
}
