/** Creates a small demo set (generated slides + CSV with labels) in a folder; skips files already there. */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateSlide, randomTissue } from '../slides/synthetic.js';

/** [image_id, center_id, patient_id, image_num, label, side px, seed] */
const DEMO: ReadonlyArray<readonly [string, number, string, number, string, number, number]> = [
  ['demo_p1_s0', 0, 'p1', 0, '1', 8192, 101],
  ['demo_p1_s1', 0, 'p1', 1, '1', 6144, 102],
  ['demo_p1_s2', 0, 'p1', 2, '1', 6144, 113],
  ['demo_p2_s0', 0, 'p2', 0, '0', 8192, 104],
  ['demo_p3_s0', 1, 'p3', 0, '1', 5120, 105],
  ['demo_p4_s0', 1, 'p4', 0, '0', 8192, 106],
];

/** Writes `<dir>/slides/*.tiff` and `<dir>/demo.csv`; returns their paths. Idempotent. */
export async function makeDemo(dir: string): Promise<{ csv: string; slidesDir: string }> {
  const slidesDir = join(dir, 'slides');
  mkdirSync(slidesDir, { recursive: true });
  for (const [id, , , , , side, seed] of DEMO) {
    const path = join(slidesDir, `${id}.tiff`);
    if (!existsSync(path)) {
      // Write under a temporary name so an interrupted run never leaves a half slide that looks done.
      // A central section plus random shapes: a few dozen kept tiles per slide.
      const tissue = [{ kind: 'ellipse' as const, cx: side / 2, cy: side / 2, rx: side * 0.3, ry: side * 0.22 }, ...randomTissue(side, side, seed)];
      await generateSlide({ path: `${path}.part`, width: side, height: side, seed, tissue });
      const { renameSync } = await import('node:fs');
      renameSync(`${path}.part`, path);
    }
  }
  const csv = join(dir, 'demo.csv');
  if (!existsSync(csv)) writeFileSync(csv, ['image_id,center_id,patient_id,image_num,label', ...DEMO.map((r) => r.slice(0, 5).join(','))].join('\n') + '\n');
  return { csv, slidesDir };
}
