import t from 'tap';
import { crc32c, maskCrc, unmaskCrc } from '../../stages/tfrecord/crc32c.js';

const ascii = (s: string) => new TextEncoder().encode(s);

t.test('known CRC32C vectors', async (t) => {
  t.equal(crc32c(ascii('123456789')), 0xe3069283);
  t.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  t.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  const inc = new Uint8Array(32).map((_, i) => i);
  t.equal(crc32c(inc), 0x46dd794e);
  t.equal(crc32c(new Uint8Array(0)), 0);
});

t.test('incremental computation equals one-shot', async (t) => {
  const data = new Uint8Array(10_007).map((_, i) => (i * 31 + 7) & 0xff);
  const whole = crc32c(data);
  for (const cut of [0, 1, 13, 4096, 10_006, 10_007]) {
    t.equal(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut))), whole, `cut at ${cut}`);
  }
  let crc = 0;
  for (let i = 0; i < data.length; i += 100) crc = crc32c(data.subarray(i, i + 100), crc);
  t.equal(crc, whole, 'many small chunks');
});

t.test('masked form', async (t) => {
  // An independent BigInt form of TensorFlow's crc32c::Mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8, mod 2^32.
  const reference = (c: number) => {
    const x = BigInt(c);
    const rot = (x >> 15n) | ((x << 17n) & 0xffffffffn);
    return Number((rot + 0xa282ead8n) & 0xffffffffn);
  };
  t.equal(maskCrc(0), 0xa282ead8);
  for (const c of [0, 1, 0xe3069283, 0x8a9136aa, 0xffffffff, 0x80000000, 0x7fff]) {
    t.equal(maskCrc(c), reference(c), `mask(${c.toString(16)})`);
    t.equal(unmaskCrc(maskCrc(c)), c, `unmask(mask(${c.toString(16)}))`);
  }
  t.not(maskCrc(0xe3069283), 0xe3069283);
  t.not(maskCrc(maskCrc(0xe3069283)), 0xe3069283);
});
