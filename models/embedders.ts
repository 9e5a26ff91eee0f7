/**
 * The embedders we build from published weights: which architecture a state dict is (from its keys and shapes, or
 * named by the user), and its ONNX model. Every embedder takes `tiles` uint8 [N,S,S,3] and resizes/normalises
 * inside the graph; its outputs are named in the model.
 */
import { buildEfficientNetB0, effnetShapes } from './efficientnet.js';
import { ModelError } from './errors.js';
import { buildResNetTrunc, looksLikeResNet, RESNET_ARCH, resnetLayout, resnetShapes } from './resnet.js';
import { checkShapes, type Weights } from './tensor.js';
import { buildVit, HF_LN_EPS, hfVitToTimm, looksLikeHfVit, looksLikeVit, VIT_ARCH, vitLayout, vitShapes, type VitOptions } from './vit.js';
import { loadStateDict } from './weights/import.js';

interface Arch {
  readonly name: string;
  /** What the recogniser looks for, as told to the user when nothing matches. */
  readonly signature: string;
  /** Outputs of the built model: avg/max keep the record's CNN schema; others are named features (stages/tfrecord/example.ts). */
  readonly outputs: readonly string[];
  readonly recognise: (w: Weights) => boolean;
  /** E_WEIGHTS naming `w.origin` on the first missing or misshapen tensor. */
  readonly check: (w: Weights) => void;
  readonly build: (w: Weights) => Uint8Array;
}

const ARCHS: readonly Arch[] = [
  {
    name: 'efficientnet_b0',
    signature: 'torchvision efficientnet_b0: features.0.0.weight ... features.8.0.weight',
    outputs: ['avg', 'max'],
    recognise: (w) => w.tensors.has('features.0.0.weight') && w.tensors.has('features.8.0.weight'),
    check: (w) => checkShapes(w, effnetShapes()),
    build: buildEfficientNetB0,
  },
  {
    name: RESNET_ARCH,
    signature: 'torchvision/timm bottleneck ResNet: conv1.weight [C,3,7,7], bn1.*, layer1..layer3.N.conv1..3 (layer4/fc ignored)',
    outputs: ['avg', 'max'],
    recognise: (w) => looksLikeResNet(w.tensors),
    check: (w) => checkShapes(w, resnetShapes(resnetLayout(w))),
    build: buildResNetTrunc,
  },
  vitArch(VIT_ARCH, 'timm VisionTransformer: patch_embed.proj.weight, cls_token, pos_embed, blocks.N.attn.qkv.weight (ImageNet mean/std)', {}, true),
  // Bioptimus H-optimus-0 (a timm ViT-g/14 with 4 registers): its card's own mean/std; named only, the keys cannot tell.
  vitArch('h_optimus_0', 'named only: vit with H-optimus-0 mean/std', { mean: [0.707223, 0.578729, 0.703617], std: [0.211883, 0.230117, 0.177517] }, false),
  {
    // Hugging Face transformers ViTModel (Phikon): renamed onto timm names, LayerNorm eps 1e-12.
    name: 'vit_hf',
    signature: 'transformers ViTModel: embeddings.patch_embeddings.projection.weight, encoder.layer.N.attention.attention.query.weight',
    outputs: ['cls', 'mean'],
    recognise: (w) => looksLikeHfVit(w.tensors),
    check: (w) => {
      const m = hfVitToTimm(w);
      try {
        checkShapes(m, vitShapes(vitLayout(m)));
      } catch (err) {
        if (!(err instanceof ModelError)) throw err;
        throw new ModelError(err.code, `${err.message} (timm names, after renaming the transformers keys)`, { cause: err });
      }
    },
    build: (w) => buildVit(hfVitToTimm(w), { eps: HF_LN_EPS }),
  },
];

function vitArch(name: string, signature: string, opts: VitOptions, recognised: boolean): Arch {
  return {
    name,
    signature,
    outputs: ['cls', 'mean'],
    recognise: (w) => recognised && looksLikeVit(w.tensors),
    check: (w) => checkShapes(w, vitShapes(vitLayout(w, opts))),
    build: (w) => buildVit(w, opts),
  };
}

/** The names `--embedder-arch` accepts. */
export const EMBEDDER_ARCHS: readonly string[] = ARCHS.map((a) => a.name);

function supported(): string {
  return ARCHS.map((a) => `${a.name} (${a.signature})`).join('; ');
}

/** A few keys with their shapes, for messages about a state dict nobody recognised. */
function sample(w: Weights): string {
  const keys = [...w.tensors.keys()];
  const shown = keys.slice(0, 6).map((k) => `${k} [${w.tensors.get(k)!.shape.join(',')}]`);
  return `${keys.length} tensors: ${shown.join(', ')}${keys.length > shown.length ? ', ...' : ''}`;
}

/** The architecture of `w`: `named` when given (checked to exist), else recognised; E_WEIGHTS otherwise. */
export function embedderArch(w: Weights, named?: string): Arch {
  if (named !== undefined) {
    const a = ARCHS.find((x) => x.name === named);
    if (!a) throw new ModelError('E_WEIGHTS', `unknown embedder architecture '${named}'; supported: ${EMBEDDER_ARCHS.join(', ')}`);
    return a;
  }
  const a = ARCHS.find((x) => x.recognise(w));
  if (!a) throw new ModelError('E_WEIGHTS', `${w.origin}: not a state dict of a supported embedder (${sample(w)}). Supported: ${supported()}`);
  return a;
}

/** The embedder's ONNX bytes from already-read weights; `arch` names it when recognition is not wanted. */
export function buildEmbedder(w: Weights, arch?: string): { arch: string; outputs: readonly string[]; bytes: Uint8Array } {
  const a = embedderArch(w, arch);
  a.check(w);
  return { arch: a.name, outputs: a.outputs, bytes: a.build(w) };
}

/** Reads a .pth/.bin/.safetensors state dict and builds its embedder (E_WEIGHTS naming the file). */
export async function importEmbedder(file: string, arch?: string): Promise<{ arch: string; outputs: readonly string[]; bytes: Uint8Array }> {
  if (arch !== undefined) embedderArch({ tensors: new Map(), origin: file }, arch); // an unknown name fails before reading
  const w = await loadStateDict(file);
  // Errors name the full path the user gave; the model's metadata only the base name.
  const named: Weights = { ...w, origin: file };
  const a = embedderArch(named, arch);
  a.check(named);
  return { arch: a.name, outputs: a.outputs, bytes: a.build({ ...named, origin: w.origin }) };
}
