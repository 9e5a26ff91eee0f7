/**
 * The suite's generated slides and CSVs (cached under .cache/bench; generating them is excluded from every
 * figure). Tissue is a rectangle or ellipse scaled with the side, so the kept fraction is the same at every size.
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateSlide, type TissueShape } from '../stages/slides/synthetic.js';
import { SLIDES } from './options.js';
import { log } from './record.js';

/** A centred rectangle covering 36% of the slide (memory series: flat colour, fast to generate at 100k). */
export const rectTissue = (n: number): TissueShape[] => [{ kind: 'rect', x: n * 0.2, y: n * 0.2, w: n * 0.6, h: n * 0.6 }];
/** A large textured ellipse (~44%) for throughput slides: real JPEG decoding work per tile. */
export const ellipseTissue = (n: number): TissueShape[] => [{ kind: 'ellipse', cx: n / 2, cy: n / 2, rx: n * 0.4, ry: n * 0.35 }];

/** `<dir>/<name>.tiff`, generated once. */
export async function slide(dir: string, name: string, side: number, seed: number, tissue: TissueShape[], texture: boolean): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.tiff`);
  if (!existsSync(path)) {
    const t0 = performance.now();
    await generateSlide({ path: `${path}.part`, width: side, height: side, seed, tissue, texture });
    renameSync(`${path}.part`, path);
    log(`generated ${path} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return path;
}

/** Where the suite's CSVs go. */
export const CSV_DIR = join(SLIDES, 'csv');

/** A job's CSV naming `ids` (two slides per patient), in CSV_DIR. */
export function writeCsv(ids: readonly string[]): string {
  mkdirSync(CSV_DIR, { recursive: true });
  const csv = join(CSV_DIR, `${ids.length}-${ids[0]}.csv`);
  writeFileSync(csv, ['image_id,center_id,patient_id,image_num,label', ...ids.map((id, i) => `${id},${Math.floor(i / 2) % 2},p${Math.floor(i / 2)},${i % 2},${Math.floor(i / 2) % 3 === 0 ? 1 : 0}`)].join('\n') + '\n');
  return csv;
}

/** A set of generated slides in one folder. */
export interface SlideSet {
  readonly dir: string;
  readonly ids: readonly string[];
}

/** The path of the i-th slide of a set (wrapping around). */
export const slidePath = (set: SlideSet, i: number): string => join(set.dir, `${set.ids[i % set.ids.length]}.tiff`);

/**
 * Side of the throughput job's 4 slides: 20k px, about 850 tissue tiles each, 3,400 in all (~35 s on this host).
 * A real slide has thousands of tiles and a real run hundreds of slides; with 4 slides of 12k (1,220 tiles, ~15 s),
 * the job's fixed cost (start-up, models, output: 2-3 s) was a fifth of the figure.
 */
export const TPUT_SIDE = 20480;

/** The throughput slides (stage costs, no engine, pipeline, scaling): `count` textured slides of `side` px. */
export async function throughputSlides(side = TPUT_SIDE, count = 4): Promise<SlideSet> {
  const dir = join(SLIDES, 'throughput');
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    ids.push(`tput${side}-${i}`);
    await slide(dir, `tput${side}-${i}`, side, 200 + i, ellipseTissue(side), true);
  }
  return { dir, ids };
}

/** For the per-slide overhead and the first tile: 8 small all-tissue slides (16 tiles each) and `one-big`. */
export async function smallSlides(): Promise<SlideSet> {
  const dir = join(SLIDES, 'small');
  const ids: string[] = [];
  for (let i = 0; i < 8; i++) {
    ids.push(`small-${i}`);
    await slide(dir, `small-${i}`, 2048, 300 + i, [{ kind: 'rect', x: 0, y: 0, w: 2048, h: 2048 }], true);
  }
  await slide(dir, 'one-big', 16384, 400, ellipseTissue(16384), true);
  return { dir, ids };
}
