/**
 * torchvision-architecture EfficientNet-B0 weights drawn as torchvision initialises them (convs kaiming-normal,
 * fan_out) with randomized BatchNorm statistics (gamma, beta, running mean and variance), and seeded tiles with
 * tissue-like structure (smooth blobs of colour plus noise) rather than white noise.
 */
import { effnetShapes, type EffNetWeights } from '../../models/efficientnet.js';
import { Prng } from '../../models/prng.js';
import type { NamedTensor } from '../../models/tensor.js';

export function randomEffNetWeights(seed: number): EffNetWeights {
  const rng = new Prng(seed);
  const tensors = new Map<string, NamedTensor>();
  for (const [key, shape] of effnetShapes()) {
    const count = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (shape.length === 4) {
      // kaiming_normal_(mode="fan_out"): std sqrt(2 / (cout * k * k / groups)); the grouped conv's fan_out is cout*k*k/groups = k*k.
      const groups = shape[1] === 1 && shape[0]! > 1 ? shape[0]! : 1;
      data = rng.normals(count, Math.sqrt(2 / ((shape[0]! * shape[2]! * shape[3]!) / groups)));
    } else if (key.endsWith('running_var')) {
      data = Float32Array.from({ length: count }, () => 0.25 + 1.5 * rng.next());
    } else if (key.endsWith('running_mean') || key.endsWith('.1.bias') || key.endsWith('fc1.bias') || key.endsWith('fc2.bias')) {
      data = rng.normals(count, 0.2);
    } else {
      data = Float32Array.from({ length: count }, () => 0.5 + rng.next()); // BN gamma
    }
    tensors.set(key, { shape, data });
  }
  return { tensors, origin: `random-torchvision-init-${seed}` };
}

/** `n` tiles of `size` with smooth coloured blobs and a little noise, seeded. */
export function structuredTiles(n: number, size: number, seed: number): Uint8Array[] {
  const rng = new Prng(seed);
  return Array.from({ length: n }, () => {
    const blobs = Array.from({ length: 6 }, () => ({ x: rng.next() * size, y: rng.next() * size, r: (0.1 + 0.3 * rng.next()) * size, c: [rng.next(), rng.next(), rng.next()].map((v) => 80 + 170 * v) }));
    const px = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const o = (y * size + x) * 3;
        for (let c = 0; c < 3; c++) {
          let v = 235;
          for (const b of blobs) if ((x - b.x) ** 2 + (y - b.y) ** 2 < b.r ** 2) v = 0.5 * v + 0.5 * b.c[c]!;
          px[o + c] = Math.max(0, Math.min(255, Math.round(v + 12 * (rng.next() - 0.5))));
        }
      }
    }
    return px;
  });
}
