/**
 * Writes small uncompressed TIFFs of any sample layout for the format tests: pages of 1..n samples of 8, 16 or 32
 * bits (unsigned or float), tiled or one strip, an ImageDescription (OME-XML, QPTIFF XML), resolution tags, and
 * SubIFDs (an OME-TIFF pyramid: page 0's reduced levels). Little-endian classic TIFF, written by hand so every tag
 * is exactly what the test says (sharp cannot write SubIFDs or OME channel pages).
 */
import { writeFileSync } from 'node:fs';

export interface PageSpec {
  readonly width: number;
  readonly height: number;
  readonly samples: number;
  readonly bits: 8 | 16 | 32;
  /** 1 unsigned (default), 2 signed, 3 float (bits 32). */
  readonly sampleFormat?: 1 | 2 | 3;
  /** 1 MinIsBlack (default for < 3 samples), 2 RGB (default for >= 3). */
  readonly photometric?: number;
  /** Sample (x, y, s) of the page. */
  readonly sample: (x: number, y: number, s: number) => number;
  /** Tile side (a multiple of 16); undefined: one strip. */
  readonly tile?: number;
  readonly description?: string;
  /** XResolution = YResolution (pixels per unit) and ResolutionUnit (2 inch, 3 cm). */
  readonly resolution?: { readonly perUnit: number; readonly unit: 2 | 3 };
  /** Reduced levels stored as this page's SubIFDs. */
  readonly subIfds?: readonly PageSpec[];
}

interface Entry {
  readonly tag: number;
  readonly type: number; // 2 ASCII, 3 SHORT, 4 LONG, 5 RATIONAL
  readonly values: readonly number[] | Buffer;
}

/** Little-endian sample bytes of a pixel block (x0, y0, w, h) of the page; outside the page: 0. */
function block(p: PageSpec, x0: number, y0: number, w: number, h: number): Buffer {
  const bytes = p.bits / 8;
  const out = Buffer.alloc(w * h * p.samples * bytes);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (x0 + x >= p.width || y0 + y >= p.height) continue;
      for (let s = 0; s < p.samples; s++) {
        const v = p.sample(x0 + x, y0 + y, s);
        const o = ((y * w + x) * p.samples + s) * bytes;
        if (p.sampleFormat === 3) out.writeFloatLE(v, o);
        else if (p.sampleFormat === 2 && bytes === 2) out.writeInt16LE(v, o);
        else if (bytes === 1) out.writeUInt8(v, o);
        else if (bytes === 2) out.writeUInt16LE(v, o);
        else out.writeUInt32LE(v, o);
      }
    }
  }
  return out;
}

class Out {
  private parts: Buffer[] = [];
  size = 8;

  add(b: Buffer): number {
    if (this.size % 2 === 1) this.push(Buffer.alloc(1));
    const at = this.size;
    this.push(b);
    return at;
  }

  private push(b: Buffer): void {
    this.parts.push(b);
    this.size += b.length;
  }

  bytes(first: number): Buffer {
    const head = Buffer.from([0x49, 0x49, 42, 0, 0, 0, 0, 0]);
    head.writeUInt32LE(first, 4);
    return Buffer.concat([head, ...this.parts]);
  }
}

/** Writes the page's pixel data and directory; returns the directory's offset (its next-IFD field patched later). */
function writePage(out: Out, p: PageSpec, patches: Array<{ at: number; page: number }>, pageNo: number): number {
  const entries: Entry[] = [];
  const offsets: number[] = [];
  const counts: number[] = [];
  if (p.tile !== undefined) {
    for (let ty = 0; ty < p.height; ty += p.tile) {
      for (let tx = 0; tx < p.width; tx += p.tile) {
        const b = block(p, tx, ty, p.tile, p.tile);
        offsets.push(out.add(b));
        counts.push(b.length);
      }
    }
  } else {
    const b = block(p, 0, 0, p.width, p.height);
    offsets.push(out.add(b));
    counts.push(b.length);
  }
  const subOffsets = (p.subIfds ?? []).map((sp) => writePage(out, sp, patches, -1));
  entries.push({ tag: 254, type: 4, values: [pageNo === -1 ? 1 : 0] });
  entries.push({ tag: 256, type: 4, values: [p.width] });
  entries.push({ tag: 257, type: 4, values: [p.height] });
  entries.push({ tag: 258, type: 3, values: Array<number>(p.samples).fill(p.bits) });
  entries.push({ tag: 259, type: 3, values: [1] });
  entries.push({ tag: 262, type: 3, values: [p.photometric ?? (p.samples >= 3 ? 2 : 1)] });
  if (p.description !== undefined) entries.push({ tag: 270, type: 2, values: Buffer.from(p.description + '\0', 'latin1') });
  if (p.tile === undefined) entries.push({ tag: 273, type: 4, values: offsets });
  entries.push({ tag: 277, type: 3, values: [p.samples] });
  if (p.tile === undefined) {
    entries.push({ tag: 278, type: 4, values: [p.height] });
    entries.push({ tag: 279, type: 4, values: counts });
  }
  if (p.resolution !== undefined) {
    entries.push({ tag: 282, type: 5, values: [p.resolution.perUnit] });
    entries.push({ tag: 283, type: 5, values: [p.resolution.perUnit] });
  }
  entries.push({ tag: 284, type: 3, values: [1] });
  if (p.resolution !== undefined) entries.push({ tag: 296, type: 3, values: [p.resolution.unit] });
  if (p.tile !== undefined) {
    entries.push({ tag: 322, type: 4, values: [p.tile] });
    entries.push({ tag: 323, type: 4, values: [p.tile] });
    entries.push({ tag: 324, type: 4, values: offsets });
    entries.push({ tag: 325, type: 4, values: counts });
  }
  if (subOffsets.length > 0) entries.push({ tag: 330, type: 4, values: subOffsets });
  if (p.sampleFormat !== undefined) entries.push({ tag: 339, type: 3, values: Array<number>(p.samples).fill(p.sampleFormat) });
  // Out-of-line values first, then the directory.
  const SIZE: Record<number, number> = { 2: 1, 3: 2, 4: 4, 5: 8 };
  const fields = entries.map((e) => {
    const n = Buffer.isBuffer(e.values) ? e.values.length : e.values.length;
    const data = Buffer.alloc(Math.max(4, n * SIZE[e.type]!));
    if (Buffer.isBuffer(e.values)) e.values.copy(data);
    else
      e.values.forEach((v, i) => {
        if (e.type === 3) data.writeUInt16LE(v, i * 2);
        else if (e.type === 4) data.writeUInt32LE(v, i * 4);
        else {
          data.writeUInt32LE(Math.round(v * 1000), i * 8);
          data.writeUInt32LE(1000, i * 8 + 4);
        }
      });
    const inline = n * SIZE[e.type]! <= 4;
    return { e, n, data, at: inline ? -1 : out.add(data) };
  });
  const dir = Buffer.alloc(2 + fields.length * 12 + 4);
  dir.writeUInt16LE(fields.length, 0);
  fields.forEach((f, i) => {
    const o = 2 + i * 12;
    dir.writeUInt16LE(f.e.tag, o);
    dir.writeUInt16LE(f.e.type, o + 2);
    dir.writeUInt32LE(f.n, o + 4);
    if (f.at === -1) f.data.copy(dir, o + 8, 0, 4);
    else dir.writeUInt32LE(f.at, o + 8);
  });
  const at = out.add(dir);
  if (pageNo >= 0) patches.push({ at: at + 2 + fields.length * 12, page: pageNo });
  return at;
}

/** Writes the pages as the main IFD chain (with their SubIFDs) to `path`. */
export function writeTiffPages(path: string, pages: readonly PageSpec[]): void {
  const out = new Out();
  const patches: Array<{ at: number; page: number }> = [];
  const dirs = pages.map((p, i) => writePage(out, p, patches, i));
  const file = out.bytes(dirs[0]!);
  for (const { at, page } of patches) file.writeUInt32LE(dirs[page + 1] ?? 0, at);
  writeFileSync(path, file);
}

/** A minimal OME-XML for `channels` channel pages of `w` x `h` (one sample each unless `samples`). */
export function omeXml(w: number, h: number, channels: readonly string[], o: { samples?: number; type?: string; mpp?: number; magnification?: number } = {}): string {
  const ch = channels.map((name, i) => `<Channel ID="Channel:0:${i}" Name="${name}" SamplesPerPixel="${o.samples ?? 1}"/>`).join('');
  const inst = o.magnification === undefined ? '' : `<Instrument ID="Instrument:0"><Objective ID="Objective:0" NominalMagnification="${o.magnification}"/></Instrument>`;
  const phys = o.mpp === undefined ? '' : ` PhysicalSizeX="${o.mpp}" PhysicalSizeY="${o.mpp}" PhysicalSizeXUnit="µm" PhysicalSizeYUnit="µm"`;
  const sizeC = channels.length * (o.samples ?? 1);
  return `<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">${inst}<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="${o.type ?? 'uint16'}" SizeX="${w}" SizeY="${h}" SizeC="${sizeC}" SizeZ="1" SizeT="1"${phys}>${ch}<TiffData/></Pixels></Image></OME>`;
}
