/**
 * Figure 2, no engine: the stages with no engine at all (bench/ideal.ts), one process alone and then one process
 * per core at once, all started together behind a barrier: how this machine's cores really scale, and what a
 * perfect engine with no start-up could reach on them.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { CORES, ROOT } from './options.js';
import { median, type BenchRecord } from './record.js';

/** Aggregate tiles/s of a set of no-engine copies run at once, and their CPU ms per tile. */
export interface NoEngineRun {
  tilesPerS: number;
  cpuMsPerTile: number;
}

interface IdealOutput {
  tiles: number;
  wall_ms: number;
  cpu_ms: number;
}

/** One bench/ideal.js copy per slide, all at once; `only` times one stage alone (see bench/ideal.ts). */
export async function noEngine(slides: readonly string[], tiles: number, lutFile: string, model: string, only = 'all'): Promise<NoEngineRun> {
  const script = join(ROOT, 'dist/bench/ideal.js');
  const children = slides.map((s) => spawn(process.execPath, [script, s, String(tiles), lutFile, model, only], { stdio: ['pipe', 'pipe', 'inherit'] }));
  try {
    const outputs = children.map((child) => {
      let out = '';
      let onReady: () => void = () => undefined;
      const ready = new Promise<void>((res) => (onReady = res));
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.startsWith('ready\n')) onReady();
      });
      const done = new Promise<IdealOutput>((res, rej) => {
        child.on('error', rej);
        child.on('exit', (code) => (code === 0 ? res(JSON.parse(out.trim().split('\n').pop()!) as IdealOutput) : rej(new Error(`bench/ideal ${only} exited ${code}`))));
      });
      return { ready: Promise.race([ready, done]), done };
    });
    // Every copy set up (tiles read, session created) before any starts its clock.
    await Promise.all(outputs.map((o) => o.ready));
    for (const child of children) child.stdin.end('go\n');
    const runs = await Promise.all(outputs.map((o) => o.done));
    return {
      tilesPerS: runs.reduce((a, r) => a + (r.tiles * 1000) / r.wall_ms, 0),
      cpuMsPerTile: runs.reduce((a, r) => a + r.cpu_ms, 0) / runs.reduce((a, r) => a + r.tiles, 0),
    };
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill();
  }
}

/** Records the no-engine figures: medians of the runs alone and on every core, and how the cores scale. */
export function recordNoEngine(record: BenchRecord, alone: readonly NoEngineRun[], all: readonly NoEngineRun[]): void {
  const { result, show } = record;
  const aloneRate = median(alone.map((x) => x.tilesPerS));
  const allRate = median(all.map((x) => x.tilesPerS));
  result.no_engine = {
    one_process_tiles_per_s: aloneRate,
    one_process_cpu_ms_per_tile: median(alone.map((x) => x.cpuMsPerTile)),
    all_cores_tiles_per_s: allRate,
    all_cores_cpu_ms_per_tile: median(all.map((x) => x.cpuMsPerTile)),
    scaling: allRate / (CORES * aloneRate),
    runs: { alone, all },
  };
  show('no engine, 1 process (stages back to back, after the first tile)', `${aloneRate.toFixed(1)} tiles/s, ${median(alone.map((x) => x.cpuMsPerTile)).toFixed(1)} CPU ms/tile`);
  show(`no engine, ${CORES} processes at once (what the cores really give)`, `${allRate.toFixed(1)} tiles/s, ${median(all.map((x) => x.cpuMsPerTile)).toFixed(1)} CPU ms/tile; scaling ${(allRate / (CORES * aloneRate)).toFixed(2)} of ${CORES}x`);
}
