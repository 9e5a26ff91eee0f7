/**
 * Turns what the user passed for a model (nothing, an .onnx file, or a weights file) into an ONNX file the
 * workers load, checked up front so a wrong file is a clear error (exit code 2) before any slide is opened.
 */
import { createHash } from 'node:crypto';
import { access, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import ort from 'onnxruntime-node';
import { checkModel, type ModelKind } from '../check.js';
import { buildStainNet } from '../build.js';
import { importEmbedder } from '../embedders.js';
import { importStainNet } from '../weights/import.js';
import { ModelError } from '../errors.js';

const WEIGHT_EXTENSIONS = new Set(['.pth', '.pt', '.bin', '.safetensors']);

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/** Checks input/output names, shapes and dtypes with a throw-away session. */
async function checkOnnxFile(file: string, kind: ModelKind): Promise<void> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
  } catch (err) {
    throw new ModelError('E_MODEL', `${file}: not a loadable ONNX model: ${(err as Error).message}`);
  }
  try {
    checkModel(session, kind, file);
  } finally {
    await session.release();
  }
}

/** The ONNX bytes for a weights file: StainNet, or the embedder recognised from the keys (or named by `arch`). */
async function buildFromWeights(given: string, kind: ModelKind, arch: string | undefined): Promise<Uint8Array> {
  if (kind === 'stainnet') return buildStainNet(await importStainNet(given));
  const built = await importEmbedder(given, arch);
  return built.bytes;
}

/**
 * `given` undefined: the demo model. `.onnx`: used as is, after the check. A weights file (.pth, .bin,
 * .safetensors): imported and built into `buildDir/stainnet-<sha>.onnx` or `buildDir/embedder-<sha>.onnx` (sha of
 * the weights file, and of `arch` when given; built once, later runs reuse it).
 * For the embedder the architecture is recognised from the state dict, or named by `arch` (then part of the name).
 */
export async function prepareModel(given: string | undefined, kind: ModelKind, demoFile: string, buildDir: string, arch?: string): Promise<string> {
  if (given === undefined) return demoFile;
  if (!(await exists(given))) throw new ModelError('E_MODEL', `${kind} file not found: ${given}`);
  const ext = extname(given).toLowerCase();
  if (ext === '.onnx') {
    await checkOnnxFile(given, kind);
    return given;
  }
  if (!WEIGHT_EXTENSIONS.has(ext)) {
    throw new ModelError('E_MODEL', `${given}: expected an .onnx model or a weights file (.pth, .safetensors) for ${kind}`);
  }
  const hash = createHash('sha256').update(await readFile(given));
  if (arch !== undefined) hash.update(`\0${arch}`);
  const digest = hash.digest('hex').slice(0, 16);
  const out = join(buildDir, `${kind === 'stainnet' ? kind : 'embedder'}-${digest}.onnx`);
  if (!(await exists(out))) {
    const bytes = await buildFromWeights(given, kind, arch);
    await mkdir(buildDir, { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    await writeFile(tmp, bytes);
    await rename(tmp, out);
  }
  await checkOnnxFile(out, kind);
  return out;
}
