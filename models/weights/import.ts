/** Weight importers: PyTorch .pth (zip) or .safetensors state dicts -> checked Weights for the builders. */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { effnetShapes, type EffNetWeights } from '../efficientnet.js';
import { ModelError } from '../errors.js';
import { STAINNET_SHAPES, type StainNetWeights } from '../stainnet.js';
import { checkShapes, type Weights } from '../tensor.js';
import { readSafetensors } from './safetensors.js';
import { readTorchZip } from './torch-load.js';

/** Reads every tensor of a state dict file; E_WEIGHTS naming the file on any problem. */
export async function loadStateDict(file: string): Promise<Weights> {
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (cause) {
    throw new ModelError('E_WEIGHTS', `${file}: cannot read weights: ${(cause as Error).message}`, { cause });
  }
  const sha256 = createHash('sha256').update(buf).digest('hex');
  const isZip = buf.length >= 4 && buf.readUInt32LE(0) === 0x04034b50;
  try {
    if (isZip) return { tensors: readTorchZip(buf), origin: path.basename(file), sha256 };
    if (file.endsWith('.safetensors')) return { tensors: readSafetensors(buf), origin: path.basename(file), sha256 };
  } catch (cause) {
    throw new ModelError('E_WEIGHTS', `${file}: ${(cause as Error).message}`, { cause });
  }
  throw new ModelError(
    'E_WEIGHTS',
    `${file}: not a PyTorch zip checkpoint or .safetensors file (legacy pre-1.6 torch.save files: re-save with a current torch)`,
  );
}

function withFile(w: Weights, file: string): Weights {
  // Errors name the full path the user gave, the model metadata only its base name.
  return { ...w, origin: file };
}

/** A StainNet checkpoint (`rgb_trans.{0,2,4}.{weight,bias}`), shape-checked. */
export async function importStainNet(file: string): Promise<StainNetWeights> {
  const w = await loadStateDict(file);
  checkShapes(withFile(w, file), STAINNET_SHAPES);
  return w;
}

/** A torchvision efficientnet_b0 state dict (`features.*`; the classifier is ignored), shape-checked. */
export async function importEfficientNetB0(file: string): Promise<EffNetWeights> {
  const w = await loadStateDict(file);
  checkShapes(withFile(w, file), effnetShapes());
  return w;
}
