/**
 * A restricted unpickler for PyTorch state dicts. It never executes code: the only globals it resolves are the few
 * torch/collections names a state dict uses, mapped to plain JS constructors here; anything else is refused.
 * Supports protocols 2-5 opcodes that torch.save emits.
 */

/** A reference to an allowed Python global (class or function). */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** What a REDUCE of an allowed global produced (interpreted by the caller via `reduce`). */
export type Reducer = (fn: PyGlobal, args: unknown[]) => unknown;

export interface UnpickleOptions {
  /** Globals allowed, as 'module.name'. */
  readonly allowed: ReadonlySet<string>;
  /** Resolves BINPERSID ids (torch storages). */
  readonly persistentLoad: (pid: unknown) => unknown;
  /** Applies an allowed callable to its arguments. */
  readonly reduce: Reducer;
}

const MARK = Symbol('mark');

/** Unpickles `data`; throws Errors naming the offending opcode or global. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let p = 0;
  const need = (n: number): void => {
    if (p + n > buf.length) throw new Error('pickle: truncated');
  };
  const u8 = (): number => (need(1), buf[p++]!);
  const u16 = (): number => (need(2), (p += 2), buf.readUInt16LE(p - 2));
  const u32 = (): number => (need(4), (p += 4), buf.readUInt32LE(p - 4));
  const str = (n: number): string => (need(n), (p += n), buf.toString('utf8', p - n, p));
  const line = (): string => {
    const end = buf.indexOf(0x0a, p);
    if (end < 0) throw new Error('pickle: truncated');
    const s = buf.toString('latin1', p, end);
    p = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) throw new Error('pickle: stack underflow');
    return stack.pop();
  };
  const popMark = (): unknown[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) throw new Error('pickle: no MARK');
    const items = stack.slice(i + 1);
    stack.length = i;
    return items;
  };
  const global = (module: string, name: string): PyGlobal => {
    const g = new PyGlobal(module, name);
    if (!opts.allowed.has(g.qualified)) throw new Error(`pickle: refusing global '${g.qualified}' (not a tensor state dict)`);
    return g;
  };
  const setItems = (target: unknown, items: unknown[]): void => {
    if (!(target instanceof Map)) throw new Error('pickle: SETITEMS on a non-dict');
    for (let i = 0; i + 1 < items.length; i += 2) target.set(items[i], items[i + 1]);
  };
  const top = (): unknown => stack[stack.length - 1];

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: need(8); p += 8; break; // FRAME
      case 0x2e: return pop(); // STOP
      case 0x28: stack.push(MARK); break; // MARK
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: stack.push([pop()]); break; // TUPLE1
      case 0x86: { const b = pop(); stack.push([pop(), b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); stack.push([pop(), b, c]); break; } // TUPLE3
      case 0x64: { const m = new Map(); setItems(m, popMark()); stack.push(m); break; } // DICT
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x4a: need(4); stack.push(buf.readInt32LE(p)); p += 4; break; // BININT
      case 0x8a: { // LONG1
        const n = u8();
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[p + i]!);
        if (n > 0 && buf[p + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        p += n;
        stack.push(Number(v));
        break;
      }
      case 0x47: need(8); stack.push(buf.readDoubleBE(p)); p += 8; break; // BINFLOAT
      case 0x58: stack.push(str(u32())); break; // BINUNICODE
      case 0x8c: stack.push(str(u8())); break; // SHORT_BINUNICODE
      case 0x8d: { need(8); const n = Number(buf.readBigUInt64LE(p)); p += 8; stack.push(str(n)); break; } // BINUNICODE8
      case 0x55: { const n = u8(); need(n); stack.push(buf.subarray(p, p + n)); p += n; break; } // SHORT_BINSTRING
      case 0x43: { const n = u8(); need(n); stack.push(buf.subarray(p, p + n)); p += n; break; } // SHORT_BINBYTES
      case 0x42: { const n = u32(); need(n); stack.push(buf.subarray(p, p + n)); p += n; break; } // BINBYTES
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) throw new Error(`pickle: memo ${k} undefined`);
        stack.push(memo.get(k));
        break;
      }
      case 0x63: { const module = line(); stack.push(global(module, line())); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw new Error('pickle: bad STACK_GLOBAL');
        stack.push(global(module, name));
        break;
      }
      case 0x51: stack.push(opts.persistentLoad(pop())); break; // BINPERSID
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyGlobal) || !Array.isArray(args)) throw new Error('pickle: bad REDUCE');
        stack.push(opts.reduce(fn, args));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = pop();
        const cls = pop();
        if (!(cls instanceof PyGlobal) || !Array.isArray(args)) throw new Error('pickle: bad NEWOBJ');
        stack.push(opts.reduce(cls, args));
        break;
      }
      case 0x62: pop(); break; // BUILD: object state (an OrderedDict's _metadata) is not needed
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x61: { const v = pop(); (top() as unknown[]).push(v); break; } // APPEND
      case 0x65: { const items = popMark(); const l = top(); if (!Array.isArray(l)) throw new Error('pickle: APPENDS on a non-list'); l.push(...items); break; } // APPENDS
      default:
        throw new Error(`pickle: unsupported opcode 0x${op.toString(16)} at byte ${p - 1}`);
    }
  }
}
