/**
 * Synthetic whole-slide images for the demo, tests and benchmarks: a pyramidal, tiled, JPEG-compressed
 * BigTIFF whose content is an analytic function of the level-0 position (tissue shapes with H&E-like
 * colours and texture on an off-white background). Each output tile is computed and encoded on its own,
 * so memory stays bounded at any size (100,000 x 100,000 and more).
 */
import sharp from 'sharp';
import { BigTiffWriter, type TileRef } from './tiff-write.js';
import { mulberry32 } from '../../models/prng.js';

export type Rgb = readonly [r: number, g: number, b: number];

/** Tissue shapes, in level-0 pixels. A pixel is tissue when its centre is inside any shape. */
export type TissueShape =
  | { readonly kind: 'rect'; readonly x: number; readonly y: number; readonly w: number; readonly h: number }
  | { readonly kind: 'ellipse'; readonly cx: number; readonly cy: number; readonly rx: number; readonly ry: number }
  /** A wobbly disc: radius r * (1 + wobble * sin(lobes * angle + phase)). */
  | { readonly kind: 'blob'; readonly cx: number; readonly cy: number; readonly r: number; readonly wobble: number; readonly lobes: number; readonly phase: number }
  /** A thick segment from (x0,y0) to (x1,y1). */
  | { readonly kind: 'band'; readonly x0: number; readonly y0: number; readonly x1: number; readonly y1: number; readonly halfWidth: number };

export interface BackgroundSpec {
  /** Colour at the top-left corner. */
  readonly color: Rgb;
  /** How much darker (per channel) the bottom-right corner is: a slow gradient. */
  readonly gradient: number;
  /** Amplitude of a faint fixed noise pattern (+-). */
  readonly noise: number;
}

export interface SyntheticSlideSpec {
  readonly path: string;
  readonly width: number;
  readonly height: number;
  readonly seed: number;
  /** TIFF tile side (256). */
  readonly tileSize?: number;
  /** JPEG quality (85). */
  readonly quality?: number;
  /** Tissue shapes; default: a few random shapes from the seed. */
  readonly tissue?: readonly TissueShape[];
  /** Default: off-white (246,244,247), gradient 8, noise 3 (always > 190 per channel). */
  readonly background?: BackgroundSpec;
  /** H&E texture (nuclei, fibres) inside tissue (default true); false paints `tissueColor` flat. */
  readonly texture?: boolean;
  /** Flat tissue colour when texture is false (default (120,60,160)). */
  readonly tissueColor?: Rgb;
  /** JPEG chroma subsampling (default '4:2:0'); '4:4:4' keeps flat-colour edges exact. */
  readonly chroma?: '4:2:0' | '4:4:4';
  /** 'single': level 0 only, no pyramid (the slides whose thumbnail is made from level 0). Default 'pyramid'. */
  readonly levels?: 'pyramid' | 'single';
  /** Huffman tables optimised per tile (default true); false: the standard tables, the same in every tile, as scanners write. */
  readonly optimiseCoding?: boolean;
}

export interface GeneratedLevel {
  readonly width: number;
  readonly height: number;
  readonly downsample: number;
}

const DEFAULT_BG: BackgroundSpec = { color: [246, 244, 247], gradient: 8, noise: 3 };

/** Deterministic PRNG (mulberry32). */
export const rng = mulberry32;

/** A few random tissue shapes for a slide of this size (about 10-30% of the area). */
export function randomTissue(width: number, height: number, seed: number): TissueShape[] {
  const r = rng(seed);
  const m = Math.min(width, height);
  const shapes: TissueShape[] = [];
  const n = 2 + Math.floor(r() * 3);
  for (let i = 0; i < n; i++) {
    const cx = width * (0.2 + 0.6 * r());
    const cy = height * (0.2 + 0.6 * r());
    const k = r();
    if (k < 0.4) shapes.push({ kind: 'blob', cx, cy, r: m * (0.08 + 0.1 * r()), wobble: 0.1 + 0.2 * r(), lobes: 3 + Math.floor(r() * 5), phase: r() * 6.28 });
    else if (k < 0.75) shapes.push({ kind: 'ellipse', cx, cy, rx: width * (0.05 + 0.1 * r()), ry: height * (0.05 + 0.1 * r()) });
    else shapes.push({ kind: 'band', x0: cx, y0: cy, x1: width * (0.1 + 0.8 * r()), y1: height * (0.1 + 0.8 * r()), halfWidth: m * (0.015 + 0.03 * r()) });
  }
  return shapes;
}

interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

function bbox(s: TissueShape): Box {
  switch (s.kind) {
    case 'rect':
      return { x0: s.x, y0: s.y, x1: s.x + s.w, y1: s.y + s.h };
    case 'ellipse':
      return { x0: s.cx - s.rx, y0: s.cy - s.ry, x1: s.cx + s.rx, y1: s.cy + s.ry };
    case 'blob': {
      const r = s.r * (1 + Math.abs(s.wobble));
      return { x0: s.cx - r, y0: s.cy - r, x1: s.cx + r, y1: s.cy + r };
    }
    case 'band':
      return { x0: Math.min(s.x0, s.x1) - s.halfWidth, y0: Math.min(s.y0, s.y1) - s.halfWidth, x1: Math.max(s.x0, s.x1) + s.halfWidth, y1: Math.max(s.y0, s.y1) + s.halfWidth };
  }
}

function inside(s: TissueShape, x: number, y: number): boolean {
  switch (s.kind) {
    case 'rect':
      return x >= s.x && x < s.x + s.w && y >= s.y && y < s.y + s.h;
    case 'ellipse': {
      const dx = (x - s.cx) / s.rx;
      const dy = (y - s.cy) / s.ry;
      return dx * dx + dy * dy <= 1;
    }
    case 'blob': {
      const dx = x - s.cx;
      const dy = y - s.cy;
      const rr = s.r * (1 + s.wobble * Math.sin(s.lobes * Math.atan2(dy, dx) + s.phase));
      return dx * dx + dy * dy <= rr * rr;
    }
    case 'band': {
      const vx = s.x1 - s.x0;
      const vy = s.y1 - s.y0;
      const len2 = vx * vx + vy * vy || 1;
      const t = Math.max(0, Math.min(1, ((x - s.x0) * vx + (y - s.y0) * vy) / len2));
      const ex = x - (s.x0 + t * vx);
      const ey = y - (s.y0 + t * vy);
      return ex * ex + ey * ey <= s.halfWidth * s.halfWidth;
    }
  }
}

/** The slide's tissue shapes (the spec's or the seed's random ones). */
export function tissueOf(spec: Pick<SyntheticSlideSpec, 'width' | 'height' | 'seed' | 'tissue'>): readonly TissueShape[] {
  return spec.tissue ?? randomTissue(spec.width, spec.height, spec.seed);
}

/** True when the level-0 point (x, y) (pixel centre: column + 0.5) is tissue. Tests use it for expected tile sets. */
export function tissueMaskAt(shapes: readonly TissueShape[], x: number, y: number): boolean {
  for (const s of shapes) if (inside(s, x, y)) return true;
  return false;
}

function hash2(x: number, y: number, seed: number): number {
  let h = Math.imul(x, 374761393) + Math.imul(y, 668265263) + Math.imul(seed, 2246822519);
  h = Math.imul(h ^ (h >>> 13), 1274126177);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

/**
 * H&E-like colour at level-0 tissue points: pink stroma with fibres, purple nuclei on a 20 px cell grid. One
 * painter per tile row: what depends on y only (the cell row, the fibre phase) is computed once per row, a cell's
 * nucleus once per run of pixels in that cell. Every value is the same floating-point expression, evaluated in the
 * same order, as a per-pixel evaluation would be, so the bytes never depend on this caching.
 */
class TexturePainter {
  private y = 0;
  private cy = 0;
  private y03 = 0;
  private fibre = 0;
  private cellX = Number.NaN;
  private nucleus = false;
  private nx = 0;
  private r2 = 0;
  private dy2 = 0;

  constructor(private readonly seed: number) {}

  /** Starts a row at level-0 y. */
  row(y: number): void {
    this.y = y;
    this.cy = Math.floor(y / 20);
    this.y03 = y * 0.3;
    this.fibre = 2 * Math.sin(y / 45);
    this.cellX = Number.NaN;
  }

  private cell(cx: number): void {
    const { cy, seed } = this;
    this.cellX = cx;
    const h = hash2(cx, cy, seed);
    this.nucleus = h < 0.45;
    if (!this.nucleus) return;
    const r = 3 + h * 8;
    this.nx = cx * 20 + 10 + (hash2(cy, cx, seed) - 0.5) * (20 - 2 * r);
    const ny = cy * 20 + 10 + (hash2(cx + 7, cy + 3, seed) - 0.5) * (20 - 2 * r);
    this.dy2 = (this.y - ny) * (this.y - ny);
    this.r2 = r * r;
  }

  /** The colour at (x, this row's y) into out[o..o+2]. `x07` is x * 0.7, `cx` Math.floor(x / 20). */
  paint(x: number, x07: number, cx: number, out: Uint8Array, o: number): void {
    if (cx !== this.cellX) this.cell(cx);
    if (this.nucleus) {
      const d2 = ((x - this.nx) * (x - this.nx) + this.dy2) / this.r2;
      if (d2 <= 1) {
        const k = 1 - 0.3 * d2;
        out[o] = 120 - 30 * k;
        out[o + 1] = 70 - 30 * k;
        out[o + 2] = 165 - 20 * k;
        return;
      }
    }
    const f = 0.5 + 0.5 * Math.sin((x07 + this.y03) / 6 + this.fibre);
    out[o] = 232 - 22 * f;
    out[o + 1] = 150 - 40 * f;
    out[o + 2] = 190 - 25 * f;
  }
}

/** Levels /1, /4, /16, ... (floor of the level-0 size) until a level fits in one tile. */
export function pyramidLevels(width: number, height: number, tileSize: number): GeneratedLevel[] {
  const levels: GeneratedLevel[] = [{ width, height, downsample: 1 }];
  for (;;) {
    const prev = levels[levels.length - 1]!;
    if (Math.max(prev.width, prev.height) <= tileSize) break;
    const ds = prev.downsample * 4;
    const w = Math.floor(width / ds);
    const h = Math.floor(height / ds);
    if (w < 1 || h < 1) break;
    levels.push({ width: w, height: h, downsample: ds });
  }
  return levels;
}

/** Writes the slide; returns its levels. Memory: two batches of tiles at a time plus the offset tables. */
export async function generateSlide(spec: SyntheticSlideSpec): Promise<GeneratedLevel[]> {
  const T = spec.tileSize ?? 256;
  const quality = spec.quality ?? 85;
  const chroma = spec.chroma ?? '4:2:0';
  const bg = spec.background ?? DEFAULT_BG;
  const shapes = tissueOf(spec);
  const boxes = shapes.map(bbox);
  const levels = spec.levels === 'single' ? pyramidLevels(spec.width, spec.height, T).slice(0, 1) : pyramidLevels(spec.width, spec.height, T);
  const noiseRand = rng(spec.seed ^ 0x5eed);
  const noise = new Int8Array(T * T);
  for (let i = 0; i < noise.length; i++) noise[i] = Math.round((noiseRand() * 2 - 1) * bg.noise);
  const backgrounds = new BackgroundTiles(T, noise);
  const painter = new TissuePainter(T, spec);
  // Tiles that are all background repeat (the gradient is constant per tile): encode each kind once.
  const bgCache = new Map<string, Buffer>();
  const encode = (raw: Uint8Array): Promise<Buffer> =>
    sharp(raw, { raw: { width: T, height: T, channels: 3 } }).jpeg({ quality, chromaSubsampling: chroma, optimiseCoding: spec.optimiseCoding ?? true }).toBuffer();

  const writer = await BigTiffWriter.create(spec.path);
  try {
    // One batch of tiles is encoded (sharp, on libuv threads) while the next one is painted; tiles are written in order.
    let pending: Promise<Buffer[]> | undefined;
    for (const lvl of levels) {
      const ds = lvl.downsample;
      const cols = Math.ceil(lvl.width / T);
      const rows = Math.ceil(lvl.height / T);
      if (pending !== undefined) for (const jpeg of await pending) await writer.addTile(jpeg);
      pending = undefined;
      writer.beginLevel({ width: lvl.width, height: lvl.height, tileSize: T, subsampling: chroma === '4:4:4' ? [1, 1] : [2, 2], description: `synthetic slide seed=${spec.seed} level downsample=${ds}` });
      const BATCH = 8; // tiles encoded concurrently
      for (let ty = 0; ty < rows; ty++) {
        for (let tx0 = 0; tx0 < cols; tx0 += BATCH) {
          const jobs: Promise<Buffer>[] = [];
          for (let tx = tx0; tx < Math.min(cols, tx0 + BATCH); tx++) {
            // The tile's level-0 box; shapes that miss it are not evaluated.
            const X0 = tx * T * ds;
            const Y0 = ty * T * ds;
            const X1 = X0 + T * ds;
            const Y1 = Y0 + T * ds;
            const hit = shapes.filter((_, i) => boxes[i]!.x1 >= X0 && boxes[i]!.x0 <= X1 && boxes[i]!.y1 >= Y0 && boxes[i]!.y0 <= Y1);
            const g = (bg.gradient * ((X0 + X1) / 2 / spec.width + (Y0 + Y1) / 2 / spec.height)) / 2;
            const base = bg.color.map((c) => Math.round(c - g));
            if (hit.length === 0) {
              const key = base.join(',');
              let jpeg = bgCache.get(key);
              if (jpeg === undefined) {
                jpeg = await encode(backgrounds.copy(base));
                if (bgCache.size < 256) bgCache.set(key, jpeg);
              }
              jobs.push(Promise.resolve(jpeg));
              continue;
            }
            const raw = backgrounds.copy(base);
            painter.paint(raw, tx, ty, ds, hit);
            jobs.push(encode(raw));
          }
          const previous = pending;
          pending = Promise.all(jobs);
          // An encode that fails while the previous batch is written is caught when its batch is awaited.
          pending.catch(() => undefined);
          if (previous !== undefined) for (const jpeg of await previous) await writer.addTile(jpeg);
        }
      }
    }
    if (pending !== undefined) for (const jpeg of await pending) await writer.addTile(jpeg);
  } catch (err) {
    await writer.abort();
    throw err;
  }
  await writer.close();
  return levels;
}

/** Paints the tissue pixels of a tile (level-0 pixel centres inside a shape) over its background. */
class TissuePainter {
  private readonly texture: TexturePainter;
  private readonly xs: Float64Array;
  private readonly x07: Float64Array;
  private readonly cellX: Float64Array;
  private readonly flat: Rgb;
  private readonly textured: boolean;

  constructor(private readonly T: number, spec: Pick<SyntheticSlideSpec, 'seed' | 'texture' | 'tissueColor'>) {
    this.texture = new TexturePainter(spec.seed);
    this.textured = spec.texture ?? true;
    this.flat = spec.tissueColor ?? [120, 60, 160];
    this.xs = new Float64Array(T);
    this.x07 = new Float64Array(T);
    this.cellX = new Float64Array(T);
  }

  paint(raw: Uint8Array, tx: number, ty: number, ds: number, hit: readonly TissueShape[]): void {
    const { T, xs, x07, cellX, flat, texture } = this;
    // The tile's column positions, the same in every row.
    for (let i = 0; i < T; i++) {
      const x = (tx * T + i + 0.5) * ds;
      xs[i] = x;
      x07[i] = x * 0.7;
      cellX[i] = Math.floor(x / 20);
    }
    for (let j = 0; j < T; j++) {
      const y = (ty * T + j + 0.5) * ds;
      if (this.textured) texture.row(y);
      for (let i = 0; i < T; i++) {
        const x = xs[i]!;
        if (!tissueMaskAt(hit, x, y)) continue;
        const o = (j * T + i) * 3;
        if (this.textured) texture.paint(x, x07[i]!, cellX[i]!, raw, o);
        else {
          raw[o] = flat[0];
          raw[o + 1] = flat[1];
          raw[o + 2] = flat[2];
        }
      }
    }
  }
}

/** Background tiles (colour plus the fixed noise pattern), filled once per colour and copied. */
class BackgroundTiles {
  private readonly filled = new Map<string, Uint8Array>();

  constructor(private readonly T: number, private readonly noise: Int8Array) {}

  /** A fresh copy of the background tile of this colour. */
  copy(base: readonly number[]): Uint8Array {
    const key = base.join(',');
    let tile = this.filled.get(key);
    if (tile === undefined) {
      tile = fillBackground(this.T, base, this.noise);
      if (this.filled.size < 256) this.filled.set(key, tile);
      else return tile;
    }
    return tile.slice();
  }
}

function fillBackground(T: number, base: readonly number[], noise: Int8Array): Uint8Array {
  const raw = new Uint8Array(T * T * 3);
  const [r, g, b] = base as [number, number, number];
  for (let p = 0, o = 0; p < T * T; p++, o += 3) {
    const n = noise[p]!;
    raw[o] = clamp(r + n);
    raw[o + 1] = clamp(g + n);
    raw[o + 2] = clamp(b + n);
  }
  return raw;
}

const clamp = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);

/** A slide whose tiles are each one of two JPEGs, stored once: any size in a file of a few kB (offset tables). */
export interface RepeatedTileSlideSpec {
  readonly path: string;
  readonly width: number;
  readonly height: number;
  /** TIFF tile side (default 512). */
  readonly tileSize?: number;
  /** A tile is a flat tissue tile when its centre is inside a shape (default: randomTissue of seed 1). */
  readonly tissue?: readonly TissueShape[];
  /** Default 'single'. */
  readonly levels?: 'pyramid' | 'single';
}

/**
 * Writes a JPEG-tiled BigTIFF (level 0 only by default) whose tiles all point to one of two streams written
 * once: off-white background, or flat tissue colour (120,60,160). Returns its levels.
 */
export async function generateRepeatedTileSlide(spec: RepeatedTileSlideSpec): Promise<GeneratedLevel[]> {
  const T = spec.tileSize ?? 512;
  const shapes = spec.tissue ?? randomTissue(spec.width, spec.height, 1);
  const all = pyramidLevels(spec.width, spec.height, T);
  const levels = (spec.levels ?? 'single') === 'single' ? all.slice(0, 1) : all;
  const flat = (c: Rgb): Promise<Buffer> => sharp({ create: { width: T, height: T, channels: 3, background: { r: c[0], g: c[1], b: c[2] } } }).jpeg({ quality: 85, optimiseCoding: false }).toBuffer();
  const jpegs = [await flat([246, 244, 247]), await flat([120, 60, 160])];
  const writer = await BigTiffWriter.create(spec.path);
  try {
    const refs: Array<TileRef | undefined> = [undefined, undefined];
    for (const lvl of levels) {
      writer.beginLevel({ width: lvl.width, height: lvl.height, tileSize: T, subsampling: [2, 2], description: `repeated-tile slide level downsample=${lvl.downsample}` });
      for (let ty = 0; ty < Math.ceil(lvl.height / T); ty++) {
        for (let tx = 0; tx < Math.ceil(lvl.width / T); tx++) {
          const k = tissueMaskAt(shapes, (tx + 0.5) * T * lvl.downsample, (ty + 0.5) * T * lvl.downsample) ? 1 : 0;
          const ref = refs[k];
          if (ref === undefined) refs[k] = await writer.addTile(jpegs[k]!);
          else writer.addTileRef(ref);
        }
      }
    }
  } catch (err) {
    await writer.abort();
    throw err;
  }
  await writer.close();
  return levels;
}
