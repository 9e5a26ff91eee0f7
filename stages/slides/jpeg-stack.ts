/**
 * A column of a TIFF level's JPEG tiles as ONE JPEG stream, without decoding: the tiles' entropy-coded data,
 * unchanged, one after the other, separated by restart markers (a restart interval of one tile's MCUs resets
 * the DC predictors exactly where each tile's own stream started). Tiles of the same column stacked top to
 * bottom are then the column's pixels, which libjpeg decodes in one call, and at 1/2, 1/4 or 1/8 scale
 * (shrink-on-load) when sharp resizes it: one sharp call per stack instead of ~1 ms of overhead per tile.
 * Tiles that cannot be stacked (progressive, own restart markers, tables differing from their neighbour's) are
 * wrapped one by one into a full JPEG (JPEGTables + tile), as libtiff would decode them.
 */

/** One tile's stream cut into what stacking needs. */
interface TileParts {
  /** Marker segments before SOS except APPn/COM/SOF/DRI (tables), JPEGTables' first. */
  readonly tables: Buffer[];
  readonly sof: Buffer;
  readonly sos: Buffer;
  /** Everything after the SOS header: entropy data (and, for non-stackable tiles, more scans), up to EOI. */
  readonly rest: Buffer;
  /** True when `rest` is one scan's entropy data of all components, with no marker inside, and no DRI was set. */
  readonly stackable: boolean;
  /** MCUs in the tile (stackable tiles only). */
  readonly mcus: number;
  /** Tables + SOF + SOS bytes: two tiles stack when their keys are equal. */
  readonly key: string;
}

/** Photometric 2 (RGB in JPEG, e.g. Aperio) or 6 (YCbCr): told to libjpeg by an Adobe APP14 marker's transform flag. */
function adobeMarker(photometric: number): Buffer {
  const b = Buffer.from([0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00]);
  b[15] = photometric === 2 ? 0 : 1;
  return b;
}

/** Marker segments of a JPEG stream up to SOS (or EOI, for a JPEGTables stream), and where the scan starts. */
function segments(buf: Uint8Array): { segs: Buffer[]; sosEnd: number } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) throw new Error('JPEG tile does not start with SOI');
  const segs: Buffer[] = [];
  let pos = 2;
  for (;;) {
    while (pos < b.length && b[pos] === 0xff && b[pos + 1] === 0xff) pos++; // fill bytes
    if (pos + 2 > b.length || b[pos] !== 0xff) throw new Error(`JPEG tile: no marker at byte ${pos}`);
    const m = b[pos + 1]!;
    if (m === 0xd9) return { segs, sosEnd: -1 };
    if (pos + 4 > b.length) throw new Error('JPEG tile cut short in its header');
    const len = b.readUInt16BE(pos + 2);
    const seg = b.subarray(pos, pos + 2 + len);
    if (seg.length !== 2 + len) throw new Error('JPEG tile cut short in its header');
    segs.push(seg);
    pos += 2 + len;
    if (m === 0xda) return { segs, sosEnd: pos };
  }
}

/** Splits a tile (with the level's JPEGTables, if any) for stacking. */
export function tileParts(tile: Uint8Array, jpegTables: Uint8Array | undefined, tileW: number, tileH: number): TileParts {
  const shared = jpegTables === undefined ? [] : segments(jpegTables).segs;
  const { segs, sosEnd } = segments(tile);
  if (sosEnd < 0) throw new Error('JPEG tile has no scan');
  const tables = [...shared];
  let sof: Buffer | undefined;
  let restart = 0;
  for (const s of segs.slice(0, -1)) {
    const m = s[1]!;
    if (m >= 0xe0 && m <= 0xef) continue; // APPn: colour transform is ours to state (Adobe marker)
    if (m === 0xfe) continue; // COM
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) sof = s;
    else if (m === 0xdd) restart = s.readUInt16BE(4);
    else tables.push(s);
  }
  if (sof === undefined) throw new Error('JPEG tile has no frame header');
  const sos = segs[segs.length - 1]!;
  const b = Buffer.from(tile.buffer, tile.byteOffset, tile.byteLength);
  let end = b.length;
  while (end >= 2 && !(b[end - 2] === 0xff && b[end - 1] === 0xd9)) end--;
  if (end < sosEnd + 2) throw new Error('JPEG tile has no EOI');
  const rest = b.subarray(sosEnd, end - 2);
  // Baseline / extended Huffman, 3 components in one scan, sampling that tiles the tile exactly.
  const nf = sof[9]!;
  let hmax = 1;
  let vmax = 1;
  for (let i = 0; i < nf; i++) {
    hmax = Math.max(hmax, sof[11 + i * 3]! >> 4);
    vmax = Math.max(vmax, sof[11 + i * 3]! & 15);
  }
  const mcuW = 8 * hmax;
  const mcuH = 8 * vmax;
  const mcus = (tileW / mcuW) * (tileH / mcuH);
  let stackable =
    (sof[1] === 0xc0 || sof[1] === 0xc1) && restart === 0 && nf === 3 && sos[4] === nf && sof.readUInt16BE(5) === tileH && sof.readUInt16BE(7) === tileW && Number.isInteger(mcus) && mcus <= 0xffff;
  // Any marker inside the entropy data (RSTn, DNL, a second scan) rules stacking out.
  for (let i = rest.indexOf(0xff); stackable && i >= 0 && i + 1 < rest.length; i = rest.indexOf(0xff, i + 2)) {
    if (rest[i + 1] !== 0x00 && rest[i + 1] !== 0xff) stackable = false;
  }
  const key = Buffer.concat([...tables, sof, sos]).toString('latin1');
  return { tables, sof, sos, rest, stackable, mcus, key };
}

/** A JPEG of the given tiles (top to bottom), or of one non-stackable tile; `count` tiles tall. */
export function stackTiles(parts: readonly TileParts[], photometric: number, tileH: number): Buffer {
  const first = parts[0]!;
  if (parts.length === 1 && !first.stackable) {
    return Buffer.concat([Buffer.from([0xff, 0xd8]), adobeMarker(photometric), ...first.tables, first.sof, first.sos, first.rest, Buffer.from([0xff, 0xd9])]);
  }
  const sof = Buffer.from(first.sof);
  const height = tileH * parts.length;
  if (height > 0xffff) throw new RangeError(`a stack of ${parts.length} tiles is taller than a JPEG can be`);
  sof.writeUInt16BE(height, 5);
  const chunks: Buffer[] = [Buffer.from([0xff, 0xd8]), adobeMarker(photometric), ...first.tables, sof];
  if (parts.length > 1) chunks.push(Buffer.from([0xff, 0xdd, 0x00, 0x04, first.mcus >> 8, first.mcus & 0xff]));
  chunks.push(first.sos);
  parts.forEach((p, k) => {
    chunks.push(p.rest);
    if (k + 1 < parts.length) chunks.push(Buffer.from([0xff, 0xd0 + (k % 8)]));
  });
  chunks.push(Buffer.from([0xff, 0xd9]));
  return Buffer.concat(chunks);
}

/** Cuts a column of tiles into runs that stack (equal keys, all stackable); a non-stackable tile is a run alone. */
export function stackRuns(parts: readonly TileParts[]): TileParts[][] {
  const runs: TileParts[][] = [];
  for (const p of parts) {
    const last = runs[runs.length - 1];
    if (last !== undefined && p.stackable && last[0]!.stackable && last[0]!.key === p.key) last.push(p);
    else runs.push([p]);
  }
  return runs;
}
