/**
 * `models build --out DIR [--stainnet FILE.pth] [--efficientnet FILE.pth|FILE.safetensors]`: writes
 * DIR/stainnet.onnx and DIR/efficientnet_b0.onnx (demo, untrained weights when no file is given).
 * `models build --out DIR --embedder FILE [--embedder-arch NAME] [--stainnet FILE.pth]`: writes DIR/<arch>.onnx,
 * the embedder recognised from the state dict (or named), and DIR/stainnet.onnx only when --stainnet is given.
 * `ensureModels` is what the app calls: it builds whatever is absent.
 */
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildEfficientNetB0, buildStainNet } from '../../models/build.js';
import { EMBEDDER_ARCHS, importEmbedder } from '../../models/embedders.js';
import { checkInt8Gate, describeGate } from '../../models/int8-gate.js';
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

const USAGE = [
  'usage: models build --out DIR [--stainnet FILE.pth] [--efficientnet FILE.pth|FILE.safetensors]',
  `       models build --out DIR --embedder FILE.pth|FILE.bin|FILE.safetensors [--embedder-arch ${EMBEDDER_ARCHS.join('|')}] [--int8] [--stainnet FILE.pth]`,
  '       --int8 (ViTs): Linear MatMuls dynamically quantized, written as DIR/<arch>-int8.onnx only if it passes the accuracy gate against fp32',
];

/** `--embedder FILE`: DIR/<arch>.onnx (and DIR/stainnet.onnx when a StainNet checkpoint is given too). */
async function buildEmbedderFile(out: string, file: string, arch: string | undefined, int8: boolean, stainnet: string | undefined, log: (line: string) => void): Promise<void> {
  const built = await importEmbedder(file, arch, { int8 });
  // int8: measured against its fp32 build before anything is written (E_INT8_GATE, exit 2, when it does not pass).
  const gate = built.reference === undefined ? undefined : await checkInt8Gate(built.bytes, built.reference, file);
  await mkdir(out, { recursive: true });
  const target = path.join(out, `${built.arch}${int8 ? '-int8' : ''}.onnx`);
  await writeAtomic(target, built.bytes);
  log(`wrote ${target} (${built.arch}${int8 ? ', int8 MatMuls' : ''}, outputs ${built.outputs.join(', ')}, from ${path.basename(file)})`);
  if (gate !== undefined) log(`int8 against fp32 on ${gate[0]?.tiles ?? 0} generated tiles (cosine per tile): ${describeGate(gate)}`);
  if (stainnet) {
    const target = path.join(out, STAINNET_FILE);
    await writeAtomic(target, buildStainNet(await importStainNet(stainnet)));
    log(`wrote ${target} (${path.basename(stainnet)})`);
  }
}

/** The `models build` sub-command (argv after `models build`). Returns the exit code. */
export async function modelsBuild(argv: readonly string[], log: (line: string) => void = console.log): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      out: { type: 'string' },
      stainnet: { type: 'string' },
      efficientnet: { type: 'string' },
      embedder: { type: 'string' },
      'embedder-arch': { type: 'string' },
      int8: { type: 'boolean' },
    },
    strict: true,
  });
  const arch = values['embedder-arch'];
  const misuse =
    !values.out ? 'no --out' :
    values.embedder && values.efficientnet ? '--embedder and --efficientnet together' :
    arch !== undefined && !values.embedder ? '--embedder-arch without --embedder' :
    values.int8 && !values.embedder ? '--int8 without --embedder' :
    arch !== undefined && !EMBEDDER_ARCHS.includes(arch) ? `unknown --embedder-arch '${arch}'` : undefined;
  if (misuse !== undefined || !values.out) {
    log(`models build: ${misuse}`);
    for (const line of USAGE) log(line);
    return 2;
  }
  if (values.embedder) {
    await buildEmbedderFile(values.out, values.embedder, arch, values.int8 ?? false, values.stainnet, log);
    return 0;
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
