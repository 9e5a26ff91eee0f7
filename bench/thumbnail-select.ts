/**
 * Peak RSS and wall time of a slide's thumbnail + tile selection + report pictures, whole-thumbnail path
 * (what produce-tiles did before the band path) against the band path, each in a fresh child process
 * (peak = the child's VmHWM). Slides: the memory suite's cached flat slides (.cache/bench/memory).
 *   node dist/bench/thumbnail-select.js [runs=3]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { openSlide } from '../stages/slides/open.js';
import { configureSharpForWorker } from '../stages/slides/backend-sharp.js';
import { ReportPictures } from '../stages/report/pictures.js';
import { thumbnailBands, thumbnailPlan } from '../stages/slides/thumbnail-bands.js';
import { BandSelector, selectTiles } from '../stages/slides/tile-select.js';
import { DEFAULT_TILE_PARAMS } from '../stages/slides/tile-params.js';

const SIZES = [16384, 65536, 100000];
const slidePath = (n: number): string => `.cache/bench/memory/mem-${n}.tiff`;

async function child(mode: string, path: string): Promise<void> {
  configureSharpForWorker();
  const p = DEFAULT_TILE_PARAMS;
  const t0 = performance.now();
  const s = await openSlide(path, 'bench');
  let kept: number;
  if (mode === 'whole') {
    const { image } = await s.thumbnail(p.downsample);
    const sel = selectTiles(s.width, s.height, image, p);
    const fit = { width: 1024, height: 1024, fit: 'inside', withoutEnlargement: true } as const;
    await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).resize(fit).png().toBuffer();
    const maskPx = new Uint8Array(sel.mask.length);
    for (let i = 0; i < maskPx.length; i++) maskPx[i] = sel.mask[i] ? 255 : 0;
    await sharp(maskPx, { raw: { width: image.width, height: image.height, channels: 1 } }).resize({ ...fit, kernel: 'nearest' }).png().toBuffer();
    kept = sel.positions.length;
  } else {
    const plan = thumbnailPlan(s, p.downsample);
    const sel = new BandSelector(s.width, s.height, p);
    const pics = new ReportPictures(plan.width, plan.height, 1024, p.backgroundThreshold);
    for await (const band of thumbnailBands(s, p.downsample, sel.cuts(), plan)) {
      if (!sel.done) sel.addBand(band.y, band.image);
      pics.add(band.y, band.image);
      if (process.env.BENCH_GC && globalThis.gc) globalThis.gc();
    }
    await pics.png();
    kept = sel.positions.length;
  }
  await s.close();
  const ms = performance.now() - t0;
  const hwm = Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024;
  process.stdout.write(JSON.stringify({ ms, peakMb: hwm, kept }) + '\n');
}

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return child(process.argv[3]!, process.argv[4]!);
  const runs = Number(process.argv[2] ?? 3);
  const self = fileURLToPath(import.meta.url);
  console.log(`nproc ${cpus().length}, ${cpus()[0]?.model}, node ${process.version}; median of ${runs} runs, fresh process each`);
  console.log('| slide | path | peak RSS MB | thumbnail+selection+pictures ms | kept |');
  console.log('|---|---|---|---|---|');
  for (const n of SIZES) {
    if (!existsSync(slidePath(n))) {
      console.log(`| ${n} | missing ${slidePath(n)} (run the memory suite once) | | | |`);
      continue;
    }
    for (const mode of ['whole', 'bands']) {
      const res = Array.from({ length: runs }, () => JSON.parse(execFileSync(process.execPath, [self, '--child', mode, slidePath(n)], { encoding: 'utf8' })) as { ms: number; peakMb: number; kept: number });
      console.log(`| ${n} | ${mode} | ${median(res.map((r) => r.peakMb)).toFixed(0)} | ${median(res.map((r) => r.ms)).toFixed(0)} | ${res[0]!.kept} |`);
    }
  }
}

await main();
