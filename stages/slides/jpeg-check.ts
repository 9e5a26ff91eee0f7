/**
 * A structural check of one JPEG tile's entropy-coded data, without decoding pixels: the Huffman codes are walked
 * MCU by MCU (lengths only: no coefficient values, no IDCT), so the faults libjpeg reports as warnings are found
 * with libjpeg's own words. Why it exists: libvips 8.17 decodes the JPEG tiles of a tiled TIFF itself and drops
 * those warnings (sharp's `failOn` does not reach them), so a corrupt tile would otherwise give wrong pixels
 * silently. What is found, as libjpeg finds it:
 * - "premature end of data segment": the scan (or a restart interval) ends before its last MCU (zeroed or cut data);
 * - "bad Huffman code": a code that is in no table;
 * - "N extraneous bytes before marker 0xXX": data left after the last MCU of the scan or of a restart interval;
 * - "found marker 0xXX instead of RSTn": restart markers missing, out of order, or another marker in the scan;
 * - "Premature end of JPEG file": no EOI after the scan.
 * Not checked (undefined, as clean): progressive, arithmetic-coded, lossless and multi-scan streams.
 * Damage that stays a valid Huffman stream of the right length (a flipped bit inside a coefficient's value
 * bits) is invisible to any decoder, libjpeg's included.
 */

/** A canonical Huffman table as libjpeg builds it: a 9-bit lookup, then maxcode/valptr by code length. */
interface Huffman {
  /** Indexed by the next 9 bits: (length << 8) | symbol, or 0 for a code longer than 9 bits. */
  readonly fast: Uint16Array;
  /** Per code length 1..16: the largest code of that length (-1: none), and where its symbols start. */
  readonly maxcode: Int32Array;
  readonly valoff: Int32Array;
  readonly values: Uint8Array;
}

const FAST_BITS = 9;

function buildHuffman(counts: Uint8Array, values: Uint8Array): Huffman {
  const fast = new Uint16Array(1 << FAST_BITS);
  const maxcode = new Int32Array(18).fill(-1);
  const valoff = new Int32Array(18);
  let code = 0;
  let k = 0;
  for (let len = 1; len <= 16; len++) {
    const n = counts[len - 1]!;
    valoff[len] = k - code; // symbol index = code + valoff[len]
    for (let i = 0; i < n; i++, k++, code++) {
      if (len <= FAST_BITS) {
        const shift = FAST_BITS - len;
        const entry = (len << 8) | values[k]!;
        for (let j = 0; j < 1 << shift; j++) fast[(code << shift) | j] = entry;
      }
    }
    if (n > 0) maxcode[len] = code - 1;
    code <<= 1;
  }
  return { fast, maxcode, valoff, values };
}

/** What the marker segments before the scan say. */
interface Header {
  /** Huffman tables (their DHT counts and values, built only when walked) by class*4 + id (DC 0..3, AC 4..7). */
  readonly huff: Array<readonly [counts: Uint8Array, values: Uint8Array] | undefined>;
  width: number;
  height: number;
  /** Per frame component: [id, h, v]. */
  comps: Array<[id: number, h: number, v: number]>;
  restart: number;
  /** SOFn marker (0xc0 baseline, 0xc1 extended Huffman; others are not checked). */
  sof: number;
}

/** Raised for a malformed header (a segment cut short): the caller reports it as a corrupt tile too. */
function fault(message: string): never {
  throw new JpegFault(message);
}

export class JpegFault extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JpegFault';
  }
}

/** Reads marker segments from `pos` (just past SOI) to SOS (returns the scan's start) or EOI (returns -1). */
function readHeader(b: Uint8Array, h: Header): { pos: number; scan?: Array<[dc: number, ac: number, comp: number]> } {
  let pos = 2;
  for (;;) {
    while (pos + 1 < b.length && b[pos] === 0xff && b[pos + 1] === 0xff) pos++;
    if (pos + 1 >= b.length) fault('Premature end of JPEG file');
    if (b[pos] !== 0xff) fault(`Corrupt JPEG data: no marker at byte ${pos} of the header`);
    const m = b[pos + 1]!;
    if (m === 0xd9) return { pos: -1 };
    if (pos + 4 > b.length) fault('Premature end of JPEG file');
    const len = (b[pos + 2]! << 8) | b[pos + 3]!;
    const end = pos + 2 + len;
    if (len < 2 || end > b.length) fault('Premature end of JPEG file');
    let p = pos + 4;
    if (m === 0xc4) {
      while (p + 17 <= end) {
        const tc = b[p]! >> 4;
        const th = b[p]! & 15;
        const counts = b.subarray(p + 1, p + 17);
        let n = 0;
        for (let i = 0; i < 16; i++) n += counts[i]!;
        if (p + 17 + n > end || tc > 1 || th > 3) fault('Corrupt JPEG data: bad Huffman table');
        h.huff[tc * 4 + th] = [counts, b.subarray(p + 17, p + 17 + n)];
        p += 17 + n;
      }
    } else if (m === 0xdd) {
      if (len < 4) fault('Corrupt JPEG data: bad restart interval');
      h.restart = (b[p]! << 8) | b[p + 1]!;
    } else if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
      h.sof = m;
      if (len < 8) fault('Corrupt JPEG data: bad frame header');
      h.height = (b[p + 1]! << 8) | b[p + 2]!;
      h.width = (b[p + 3]! << 8) | b[p + 4]!;
      const nf = b[p + 5]!;
      if (len < 8 + nf * 3) fault('Corrupt JPEG data: bad frame header');
      h.comps = [];
      for (let i = 0; i < nf; i++) h.comps.push([b[p + 6 + i * 3]!, b[p + 7 + i * 3]! >> 4, b[p + 7 + i * 3]! & 15]);
    } else if (m === 0xda) {
      const ns = b[p]!;
      if (len < 6 + ns * 2) fault('Corrupt JPEG data: bad scan header');
      const scan: Array<[number, number, number]> = [];
      for (let i = 0; i < ns; i++) {
        const id = b[p + 1 + i * 2]!;
        const t = b[p + 2 + i * 2]!;
        const comp = h.comps.findIndex((c) => c[0] === id);
        if (comp < 0) fault(`Corrupt JPEG data: scan component ${id} is not in the frame`);
        scan.push([t >> 4, 4 + (t & 15), comp]);
      }
      return { pos: end, scan };
    }
    pos = end;
  }
}

/** segmentsFrom's buffer, grown as needed. */
let scratch = new Uint8Array(0);

/**
 * The entropy-coded segments from `pos`: each one's bytes unstuffed (0xFF00 -> 0xFF), padded with 4 zero bytes (what
 * libjpeg feeds past a marker), its length in bits, and the marker that ends it (-1: the data ran out).
 */
function segmentsFrom(b: Uint8Array, pos: number): Array<{ data: Uint8Array; bits: number; marker: number }> {
  const out: Array<{ data: Uint8Array; bits: number; marker: number }> = [];
  // One scratch buffer for all segments, each followed by its 4 zero bytes: at most 3x the input (a 2-byte marker
  // adds 4), reused from call to call (the segments are walked before the next call).
  const need = 3 * (b.length - pos) + 8;
  if (scratch.length < need) scratch = new Uint8Array(need);
  const buf = scratch;
  let start = 0;
  let n = 0;
  const close = (marker: number): void => {
    buf.fill(0, n, n + 4);
    out.push({ data: buf.subarray(start, n + 4), bits: (n - start) * 8, marker });
    n += 4;
    start = n;
  };
  let i = pos;
  for (;;) {
    if (i >= b.length) {
      close(-1);
      return out;
    }
    const c = b[i++]!;
    if (c !== 0xff) {
      buf[n++] = c;
      continue;
    }
    while (i < b.length && b[i] === 0xff) i++;
    if (i >= b.length) continue; // an FF run at the very end: no marker
    const m = b[i++]!;
    if (m === 0x00) {
      buf[n++] = 0xff;
      continue;
    }
    close(m);
    if (m < 0xd0 || m > 0xd7) return out; // EOI, or another marker: the scan ends here
  }
}

/**
 * How much of each tile is checked. 'quick': the markers of the entropy-coded data (only stuffed 0xFF00 and the
 * restart markers in order, then EOI) with native byte searches, and the full walk only for a tile holding a run of
 * ZERO_RUN zero bytes (overwritten or lost data; a flat area coded with optimised tables is such a run too, which the
 * walk then clears). 'full': every tile's Huffman codes walked (bench: several times the quick cost).
 */
export type JpegCheckMode = 'quick' | 'full';

/** Zero bytes in a row that make the quick check walk the tile (real tiles measured: at most 4). */
export const ZERO_RUN = 16;
const ZEROS = new Uint8Array(ZERO_RUN);

/**
 * The first fault libjpeg would warn about in this tile (a complete JPEG stream, or an abbreviated one read
 * with the level's JPEGTables), or undefined when the tile is clean or of a kind not checked.
 */
export function jpegTileFault(tile: Uint8Array, jpegTables: Uint8Array | undefined, mode: JpegCheckMode): string | undefined {
  try {
    checkTile(tile, jpegTables, mode);
    return undefined;
  } catch (err) {
    if (err instanceof JpegFault) return err.message;
    throw err;
  }
}

/** The scan's geometry: which scan component each block of an MCU belongs to, MCUs, MCUs per restart interval. */
interface ScanShape {
  readonly blocks: readonly number[];
  readonly mcus: number;
  readonly interval: number;
}

function checkTile(tile: Uint8Array, jpegTables: Uint8Array | undefined, mode: JpegCheckMode): void {
  const h: Header = { huff: [], width: 0, height: 0, comps: [], restart: 0, sof: 0 };
  if (jpegTables !== undefined && jpegTables.length >= 4 && jpegTables[0] === 0xff && jpegTables[1] === 0xd8) readHeader(jpegTables, h);
  if (tile.length < 4 || tile[0] !== 0xff || tile[1] !== 0xd8) fault('Not a JPEG file: no SOI marker');
  const { pos, scan } = readHeader(tile, h);
  if (pos < 0 || scan === undefined) fault('JPEG tile has no scan');
  if (h.sof !== 0xc0 && h.sof !== 0xc1) return; // progressive, lossless, arithmetic: not checked
  if (scan.length !== h.comps.length && h.comps.length !== 1) return; // several scans of a baseline frame: not checked
  const shape = scanShape(h, scan);
  const b = Buffer.from(tile.buffer, tile.byteOffset, tile.byteLength);
  if (mode === 'quick') {
    markerScan(b, pos, Math.ceil(shape.mcus / shape.interval));
    if (b.indexOf(ZEROS, pos) < 0) return;
  }
  const tables = scan.map(([dc, ac]) => {
    const d = h.huff[dc];
    const a = h.huff[ac];
    if (d === undefined || a === undefined) fault(`Huffman table 0x${(d === undefined ? dc : ac - 4).toString(16).padStart(2, '0')} was not defined`);
    return [buildHuffman(...d), buildHuffman(...a)] as const;
  });
  walkScan(b, pos, shape, tables);
}

function scanShape(h: Header, scan: ReadonlyArray<readonly [number, number, number]>): ScanShape {
  let hmax = 1;
  let vmax = 1;
  for (const [, ch, cv] of h.comps) {
    hmax = Math.max(hmax, ch);
    vmax = Math.max(vmax, cv);
  }
  const blocks: number[] = [];
  let mcus: number;
  if (scan.length === 1) {
    // One component: one block per MCU, over that component's own size.
    const [, ch, cv] = h.comps[scan[0]![2]]!;
    mcus = Math.ceil(Math.ceil((h.width * ch) / hmax) / 8) * Math.ceil(Math.ceil((h.height * cv) / vmax) / 8);
    blocks.push(0);
  } else {
    mcus = Math.ceil(h.width / (8 * hmax)) * Math.ceil(h.height / (8 * vmax));
    scan.forEach(([, , comp], s) => {
      const [, ch, cv] = h.comps[comp]!;
      for (let k = 0; k < ch * cv; k++) blocks.push(s);
    });
  }
  if (mcus === 0) fault('Corrupt JPEG data: empty frame');
  return { blocks, mcus, interval: h.restart > 0 ? h.restart : mcus };
}

/** The quick check: inside the scan only stuffed 0xFF00, fill bytes and RST0..7 in order (intervals - 1 of them), then EOI. */
function markerScan(b: Buffer, pos: number, intervals: number): void {
  let rst = 0;
  for (let i = b.indexOf(0xff, pos); i >= 0; i = b.indexOf(0xff, i + 1)) {
    let j = i + 1;
    while (j < b.length && b[j] === 0xff) j++;
    if (j >= b.length) break;
    const m = b[j]!;
    i = j;
    if (m === 0x00) continue;
    if (m === 0xd9) {
      if (rst !== intervals - 1) fault(`Corrupt JPEG data: found marker 0xd9 instead of RST${rst % 8}`);
      return;
    }
    if (m !== 0xd0 + (rst % 8) || rst >= intervals - 1) fault(`Corrupt JPEG data: found marker 0x${m.toString(16)} instead of ${rst < intervals - 1 ? `RST${rst % 8}` : 'EOI'}`);
    rst++;
  }
  fault('Premature end of JPEG file');
}

/** The full check: every restart interval's MCUs walked, ending exactly at its marker (RSTn in order, EOI last). */
function walkScan(b: Buffer, pos: number, shape: ScanShape, tables: ReadonlyArray<readonly [Huffman, Huffman]>): void {
  const { mcus, interval, blocks } = shape;
  const segs = segmentsFrom(b, pos);
  let done = 0;
  for (let s = 0; done < mcus; s++) {
    const seg = segs[s];
    if (seg === undefined) fault('Corrupt JPEG data: premature end of data segment');
    const n = Math.min(interval, mcus - done);
    const used = walkMcus(seg.data, n, blocks, tables);
    if (used < 0 || used > seg.bits) fault(used === -2 ? 'Corrupt JPEG data: bad Huffman code' : 'Corrupt JPEG data: premature end of data segment');
    done += n;
    const extra = (seg.bits - used) >> 3;
    const next = done < mcus ? 0xd0 + (s % 8) : 0xd9;
    const found = seg.marker < 0 ? 'end of data' : `marker 0x${seg.marker.toString(16)}`;
    if (extra > 0) fault(`Corrupt JPEG data: ${extra} extraneous bytes before ${found}`);
    if (seg.marker < 0) fault('Premature end of JPEG file');
    if (seg.marker !== next) fault(`Corrupt JPEG data: found marker 0x${seg.marker.toString(16)} instead of ${next === 0xd9 ? 'EOI' : `RST${s % 8}`}`);
  }
}

/**
 * Walks `mcus` MCUs of Huffman codes from bit 0 of `d` (lengths only) as libjpeg's decode_mcu does; returns the
 * bits used (more than the segment holds: the data ended early), or -2 for a code in no table.
 */
function walkMcus(d: Uint8Array, mcus: number, blocks: readonly number[], tables: ReadonlyArray<readonly [Huffman, Huffman]>): number {
  let p = 0;
  const limit = (d.length - 4) * 8;
  const nb = blocks.length;
  for (let m = 0; m < mcus; m++) {
    // Past the data (zero fill): stop, the caller sees p > bits.
    if (p > limit) return p;
    for (let b = 0; b < nb; b++) {
      const [dc, ac] = tables[blocks[b]!]!;
      let sym = decode(d, p, dc);
      if (sym < 0) return -2;
      p += (sym >> 8) + (sym & 0xff);
      for (let k = 1; k < 64; k++) {
        sym = decode(d, p, ac);
        if (sym < 0) return -2;
        p += sym >> 8;
        const r = (sym >> 4) & 15;
        const s = sym & 15;
        if (s !== 0) {
          k += r;
          p += s;
        } else if (r === 15) {
          k += 15;
        } else {
          break;
        }
      }
      if (p > limit + 32) return p;
    }
  }
  return p;
}

/** The next code at bit `p`: (length << 8) | symbol, or -1 for a code in no table. */
function decode(d: Uint8Array, p: number, t: Huffman): number {
  const i = p >> 3;
  // 24 bits from byte i (zero past the end, as libjpeg pads after a marker), aligned so bit p is the top of 16.
  const w = i + 2 < d.length ? ((d[i]! << 16) | (d[i + 1]! << 8) | d[i + 2]!) : 0;
  const look = (w >>> (8 - (p & 7))) & 0xffff;
  const f = t.fast[look >>> (16 - FAST_BITS)]!;
  if (f !== 0) return f;
  for (let len = FAST_BITS + 1; len <= 16; len++) {
    const code = look >>> (16 - len);
    if (code <= t.maxcode[len]!) return (len << 8) | t.values[code + t.valoff[len]!]!;
  }
  return -1;
}
