/**
 * Where things are in a TIFF or BigTIFF file's bytes (header, directories, each entry's count and value, the tile
 * offset/count tables, the tile data), walked here independently of the product parser, so the tests can damage
 * one precise value: a tag's count, a tile's byte count, an offset.
 */

export interface EntryAt {
  readonly ifd: number;
  readonly tag: number;
  readonly type: number;
  readonly count: number;
  /** Position of the entry, of its count field and of its value field (the value inline, or its offset). */
  readonly at: number;
  readonly countAt: number;
  readonly valueFieldAt: number;
  /** Where the values are: valueFieldAt when inline, else the offset the field holds. */
  readonly dataAt: number;
  readonly dataBytes: number;
}

export interface IfdAt {
  readonly at: number;
  /** End of the directory (entry count, entries, next offset). */
  readonly end: number;
  readonly entries: readonly EntryAt[];
}

export interface TiffLayout {
  readonly big: boolean;
  readonly le: boolean;
  readonly ifds: readonly IfdAt[];
  /** Every tile (or strip) of every directory: its data span. */
  readonly tiles: ReadonlyArray<{ readonly ifd: number; readonly index: number; readonly at: number; readonly bytes: number }>;
}

const SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8 };

/** Reads one unsigned integer of `bytes` (2, 4 or 8) at `o`. */
function uint(b: Buffer, o: number, bytes: number, le: boolean): number {
  if (bytes === 2) return le ? b.readUInt16LE(o) : b.readUInt16BE(o);
  if (bytes === 4) return le ? b.readUInt32LE(o) : b.readUInt32BE(o);
  return Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o));
}

/** Writes one unsigned integer of `bytes` (1, 2, 4 or 8) at `o`. */
export function writeUint(b: Buffer, o: number, bytes: number, le: boolean, v: number): void {
  if (bytes === 1) b.writeUInt8(v, o);
  else if (bytes === 2) le ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o);
  else if (bytes === 4) le ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o);
  else le ? b.writeBigUInt64LE(BigInt(v), o) : b.writeBigUInt64BE(BigInt(v), o);
}

/** The layout of a well-formed file (the generators' output). */
export function tiffLayout(b: Buffer): TiffLayout {
  const le = b.toString('latin1', 0, 2) === 'II';
  const big = uint(b, 2, 2, le) === 43;
  const off = big ? 8 : 4;
  const ifds: IfdAt[] = [];
  const tiles: Array<TiffLayout['tiles'][number]> = [];
  let next = uint(b, big ? 8 : 4, off, le);
  while (next !== 0) {
    const n = uint(b, next, big ? 8 : 2, le);
    const first = next + (big ? 8 : 2);
    const esize = big ? 20 : 12;
    const entries: EntryAt[] = [];
    for (let i = 0; i < n; i++) {
      const at = first + i * esize;
      const type = uint(b, at + 2, 2, le);
      const count = uint(b, at + 4, off, le);
      const valueFieldAt = at + 4 + off;
      const dataBytes = (SIZE[type] ?? 1) * count;
      entries.push({ ifd: ifds.length, tag: uint(b, at, 2, le), type, count, at, countAt: at + 4, valueFieldAt, dataAt: dataBytes <= off ? valueFieldAt : uint(b, valueFieldAt, off, le), dataBytes });
    }
    const end = first + n * esize + off;
    const values = (tag: number): number[] => {
      const e = entries.find((x) => x.tag === tag);
      if (e === undefined) return [];
      const s = SIZE[e.type]!;
      return Array.from({ length: e.count }, (_, k) => uint(b, e.dataAt + k * s, s, le));
    };
    const offsets = values(324).length > 0 ? values(324) : values(273);
    const counts = values(325).length > 0 ? values(325) : values(279);
    offsets.forEach((at, index) => tiles.push({ ifd: ifds.length, index, at, bytes: counts[index] ?? 0 }));
    ifds.push({ at: next, end, entries });
    next = uint(b, end - off, off, le);
  }
  return { big, le, ifds, tiles };
}

/** The entry of `tag` in directory `ifd` (throws when absent: the test's premise is wrong). */
export function entryOf(layout: TiffLayout, ifd: number, tag: number): EntryAt {
  const e = layout.ifds[ifd]?.entries.find((x) => x.tag === tag);
  if (e === undefined) throw new Error(`no tag ${tag} in directory ${ifd}`);
  return e;
}

/** A copy of `b` with value `index` of the entry set to `v` (in the entry's own type and byte order). */
export function withValue(b: Buffer, layout: TiffLayout, e: EntryAt, index: number, v: number): Buffer {
  const out = Buffer.from(b);
  const s = SIZE[e.type]!;
  writeUint(out, e.dataAt + index * s, s, layout.le, v);
  return out;
}

/** A copy of `b` with the entry's count field set to `count`. */
export function withCount(b: Buffer, layout: TiffLayout, e: EntryAt, count: number): Buffer {
  const out = Buffer.from(b);
  writeUint(out, e.countAt, layout.big ? 8 : 4, layout.le, count);
  return out;
}

/** A copy of `b` with the entry's value field (the offset of out-of-line values) set to `offset`. */
export function withValueOffset(b: Buffer, layout: TiffLayout, e: EntryAt, offset: number): Buffer {
  const out = Buffer.from(b);
  writeUint(out, e.valueFieldAt, layout.big ? 8 : 4, layout.le, offset);
  return out;
}
