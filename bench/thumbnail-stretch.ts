/**
 * The 'stretch' thumbnail (stages/slides/thumbnail-stretch.ts) against what it replaced (the level read whole and
 * resized by libvips: `SlideReader.thumbnail`, the old 'whole' band method), on a pyramidal slide whose /16 level
 * is one row short of the thumbnail (64000 x 48012: the /16 level is 4000 x 3000, the thumbnail 4000 x 3000 from
 * 2999 source rows). Each run is a fresh child process; pairs alternate (whole, bands, whole, bands...); figures are
 * medians of CPU ms (process.cpuUsage: all threads), peak RSS (VmHWM) and the bytes each path holds by count.
 *   node dist/bench/thumbnail-stretch.js [pairs=3]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { configureSharpForWorker } from '../stages/slides/backend-sharp.js';
import { openSlide } from '../stages/slides/open.js';
import { generateRepeatedTileSlide } from '../stages/slides/synthetic.js';
import { thumbnailBands, thumbnailPlan } from '../stages/slides/thumbnail-bands.js';
import { BandSelector } from '../stages/slides/tile-select.js';
import { DEFAULT_TILE_PARAMS } from '../stages/slides/tile-params.js';

const W = 64000;
const H = 48012;
const DIR = '.cache/bench/stretch';
const SLIDE = `${DIR}/stretch-${W}x${H}.tiff`;

interface Run {
  readonly cpuMs: number;
  readonly peakMb: number;
  readonly heldMb: number;
  readonly method: string;
}

async function child(mode: 'whole' | 'bands'): Promise<void> {
  configureSharpForWorker();
  const p = DEFAULT_TILE_PARAMS;
  const s = await openSlide(SLIDE, 'bench');
  const c0 = process.cpuUsage();
  const plan = thumbnailPlan(s, p.downsample);
  let held: number;
  if (mode === 'whole') {
    const { image } = await s.thumbnail(p.downsample);
    held = (plan.source.width * plan.source.height + image.width * image.height) * 3;
  } else {
    const stats = { maxReadBytes: 0, maxBandBytes: 0 };
    const sel = new BandSelector(s.width, s.height, p);
    for await (const band of thumbnailBands(s, p.downsample, sel.cuts(), plan, stats)) if (!sel.done) sel.addBand(band.y, band.image);
    held = stats.maxReadBytes + stats.maxBandBytes;
  }
  const c = process.cpuUsage(c0);
  await s.close();
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
  const run: Run = { cpuMs: (c.user + c.system) / 1000, peakMb: hwm, heldMb: held / 2 ** 20, method: mode === 'whole' ? 'whole (libvips)' : plan.method };
  process.stdout.write(JSON.stringify(run) + '\n');
}

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return child(process.argv[3] as 'whole' | 'bands');
  const pairs = Number(process.argv[2] ?? 3);
  if (!existsSync(SLIDE)) {
    mkdirSync(DIR, { recursive: true });
    await generateRepeatedTileSlide({ path: SLIDE, width: W, height: H, levels: 'pyramid' });
  }
  const self = fileURLToPath(import.meta.url);
  const runs: Record<'whole' | 'bands', Run[]> = { whole: [], bands: [] };
  for (let i = 0; i < pairs; i++) {
    for (const mode of ['whole', 'bands'] as const) runs[mode].push(JSON.parse(execFileSync(process.execPath, [self, '--child', mode], { encoding: 'utf8' })) as Run);
  }
  console.log(`nproc ${cpus().length}, ${cpus()[0]?.model}, node ${process.version}; ${pairs} alternated pairs, fresh process each, medians`);
  console.log(`| ${W}x${H}, /16 level stretched | CPU ms | peak RSS MB | held by count MB |`);
  console.log('|---|---|---|---|');
  for (const mode of ['whole', 'bands'] as const) {
    const r = runs[mode];
    console.log(`| ${r[0]!.method} | ${median(r.map((x) => x.cpuMs)).toFixed(0)} | ${median(r.map((x) => x.peakMb)).toFixed(0)} | ${median(r.map((x) => x.heldMb)).toFixed(1)} |`);
  }
  const ratio = median(runs.bands.map((b, i) => b.cpuMs / runs.whole[i]!.cpuMs));
  console.log(`CPU ratio bands/whole, median of the pairs: ${ratio.toFixed(2)}`);
}

await main();
