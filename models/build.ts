/** The models' public building API: ONNX bytes for StainNet and EfficientNet-B0, demo or imported weights. */
export { buildStainNet, demoStainNetWeights, STAINNET_SHAPES, type StainNetWeights } from './stainnet.js';
export { buildEfficientNetB0, demoEffNetWeights, effnetShapes, EMBED_DIM, type EffNetWeights } from './efficientnet.js';
