/**
 * Creates a small demo set (generated slides + CSV with labels) in a folder; skips files already there. Every file
 * is written under a temporary name of this call's own and renamed into place, so concurrent runs sharing a cache
 * folder (WSI_CACHE_DIR) never see, nor write into, a half file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateSlide, randomTissue } from '../slides/synthetic.js';

/** [image_id, center_id, patient_id, image_num, label, side px, seed] */
export type DemoRow = readonly [string, number, string, number, string, number, number];

const DEMO: readonly DemoRow[] = [
  ['demo_p1_s0', 0, 'p1', 0, '1', 8192, 101],
  ['demo_p1_s1', 0, 'p1', 1, '1', 6144, 102],
  ['demo_p1_s2', 0, 'p1', 2, '1', 6144, 113],
  ['demo_p2_s0', 0, 'p2', 0, '0', 8192, 104],
  ['demo_p3_s0', 1, 'p3', 0, '1', 5120, 105],
  ['demo_p4_s0', 1, 'p4', 0, '0', 8192, 106],
];

/** Writes `<dir>/slides/*.tiff` and `<dir>/demo.csv`; returns their paths. Idempotent. */
export function makeDemo(dir: string): Promise<{ csv: string; slidesDir: string }> {
  return makeSlideSet(dir, DEMO);
}

/** makeDemo's work for any rows (the tests use small ones). */
export async function makeSlideSet(dir: string, rows: readonly DemoRow[]): Promise<{ csv: string; slidesDir: string }> {
  const slidesDir = join(dir, 'slides');
  await mkdir(slidesDir, { recursive: true });
  for (const [id, , , , , side, seed] of rows) {
    const path = join(slidesDir, `${id}.tiff`);
    if (existsSync(path)) continue;
    // A central section plus random shapes: a few dozen kept tiles per slide.
    const tissue = [{ kind: 'ellipse' as const, cx: side / 2, cy: side / 2, rx: side * 0.3, ry: side * 0.22 }, ...randomTissue(side, side, seed)];
    await atomically(path, (tmp) => generateSlide({ path: tmp, width: side, height: side, seed, tissue }).then(() => undefined));
  }
  const csv = join(dir, 'demo.csv');
  const text = ['image_id,center_id,patient_id,image_num,label', ...rows.map((r) => r.slice(0, 5).join(','))].join('\n') + '\n';
  if (!existsSync(csv)) await atomically(csv, (tmp) => writeFile(tmp, text));
  return { csv, slidesDir };
}

/** `write(tmp)` into a temporary name unique to this call, then renamed to `file`; the temporary is removed on failure. */
async function atomically(file: string, write: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.part`;
  try {
    await write(tmp);
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}
