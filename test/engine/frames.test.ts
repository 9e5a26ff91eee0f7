import t from 'tap';
import { encodeFrame, FrameDecoder } from '../../engine/frames.js';
import { mulberry32 } from '../../models/prng.js';

/** Frames of several sizes (a 10 KB embedding-like record among them), as one byte stream. */
const values: unknown[] = [
  { t: 'r', id: 1, v: { kind: 'embedding', avg: new Float32Array(1280).map((_, i) => i / 7), max: new Float32Array(1280).fill(2) } },
  { t: 'end', id: 1, n: 1 },
  'x',
  { t: 'm', id: 2, stages: [{ name: 'a', busyMs: 1.5 }] },
  new Uint8Array(70_000).map((_, i) => i & 255),
];
const stream = Buffer.concat(values.flatMap((v) => encodeFrame(v)));

function decodeInChunks(sizes: () => number): { out: unknown[]; decoder: FrameDecoder } {
  const decoder = new FrameDecoder();
  const out: unknown[] = [];
  for (let at = 0; at < stream.length; ) {
    const n = Math.min(stream.length - at, Math.max(1, sizes()));
    out.push(...decoder.push(stream.subarray(at, at + n)));
    at += n;
  }
  return { out, decoder };
}

t.test('frames come out whole and in order however the stream is cut', async (t) => {
  for (const [name, sizes] of [
    ['one chunk', () => stream.length],
    ['1-byte chunks', () => 1],
    ['3-byte chunks (length prefixes split)', () => 3],
    ['64 KB chunks', () => 65536],
  ] as const) {
    const { out, decoder } = decodeInChunks(sizes);
    t.same(out, values, name);
    t.equal(decoder.pending, 0, `${name}: nothing left over`);
  }
  const rand = mulberry32(9);
  for (let r = 0; r < 20; r++) t.same(decodeInChunks(() => Math.floor(rand() * 20_000)).out, values, `random cuts ${r}`);
});

t.test('a truncated stream leaves its incomplete frame pending', async (t) => {
  const decoder = new FrameDecoder();
  const cut = stream.length - 10;
  const out = [...decoder.push(stream.subarray(0, 5)), ...decoder.push(stream.subarray(5, cut))];
  t.same(out, values.slice(0, -1), 'every complete frame');
  t.equal(decoder.pending, cut - (stream.length - encodeFrame(values[4]).reduce((a, b) => a + b.length, 0)), 'the partial last frame is pending');
});
