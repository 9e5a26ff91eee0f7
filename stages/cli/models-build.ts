/**
 * `models build --out DIR [--stainnet FILE.pth] [--efficientnet FILE.pth|FILE.safetensors]`: writes
 * DIR/stainnet.onnx and DIR/efficientnet_b0.onnx (demo, untrained weights when no file is given).
 * `ensureModels` is what the app calls: it builds whatever is absent.
 */
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildEfficientNetB0, buildStainNet } from '../../models/build.js';
import { importEfficientNetB0, importStainNet } from '../../models/weights/import.js';

export const STAINNET_FILE = 'stainnet.onnx';
export const EFFICIENTNET_FILE = 'efficientnet_b0.onnx';

export interface EnsureModelsOptions {
  /** StainNet checkpoint (.pth) to import; demo weights when absent. */
  readonly stainnetWeights?: string;
  /** torchvision efficientnet_b0 state dict (.pth or .safetensors); demo weights when absent. */
  readonly efficientnetWeights?: string;
  /** Rebuild even when the .onnx files exist. */
  readonly force?: boolean;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Writes via a temp file + rename so a concurrent reader never sees half a model. */
async function writeAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, file);
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Builds DIR/stainnet.onnx and DIR/efficientnet_b0.onnx when absent (or `force`); returns their paths. */
export async function ensureModels(dir: string, opts: EnsureModelsOptions = {}): Promise<{ stainnet: string; efficientnet: string }> {
  await mkdir(dir, { recursive: true });
  const stainnet = path.join(dir, STAINNET_FILE);
  const efficientnet = path.join(dir, EFFICIENTNET_FILE);
  if (opts.force || !(await exists(stainnet))) {
    const w = opts.stainnetWeights ? await importStainNet(opts.stainnetWeights) : undefined;
    await writeAtomic(stainnet, buildStainNet(w));
  }
  if (opts.force || !(await exists(efficientnet))) {
    const w = opts.efficientnetWeights ? await importEfficientNetB0(opts.efficientnetWeights) : undefined;
    await writeAtomic(efficientnet, buildEfficientNetB0(w));
  }
  return { stainnet, efficientnet };
}

/** The `models build` sub-command (argv after `models build`). Returns the exit code. */
export async function modelsBuild(argv: readonly string[], log: (line: string) => void = console.log): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { out: { type: 'string' }, stainnet: { type: 'string' }, efficientnet: { type: 'string' } },
    strict: true,
  });
  if (!values.out) {
    log('usage: models build --out DIR [--stainnet FILE.pth] [--efficientnet FILE.pth|FILE.safetensors]');
    return 2;
  }
  const paths = await ensureModels(values.out, {
    stainnetWeights: values.stainnet,
    efficientnetWeights: values.efficientnet,
    force: true,
  });
  log(`wrote ${paths.stainnet} (${values.stainnet ? path.basename(values.stainnet) : 'demo-untrained weights'})`);
  log(`wrote ${paths.efficientnet} (${values.efficientnet ? path.basename(values.efficientnet) : 'demo-untrained weights'})`);
  return 0;
}
