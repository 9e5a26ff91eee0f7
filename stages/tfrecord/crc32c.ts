/** CRC32C (Castagnoli) and TensorFlow's masked form, as used by TFRecord framing. */
import { crc32c as nativeCrc32c } from '@node-rs/crc32';

/**
 * CRC32C of `data`, continuing from `previous` (the CRC of the bytes before it) so a record can be
 * checksummed chunk by chunk: crc32c(b, crc32c(a)) === crc32c(a ++ b).
 */
export function crc32c(data: Uint8Array, previous?: number): number {
  return previous === undefined ? nativeCrc32c(data) >>> 0 : nativeCrc32c(data, previous) >>> 0;
}

/** TensorFlow's mask: rotate right by 15 and add a constant, so CRCs of CRCs do not degenerate. */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** Inverse of maskCrc. */
export function unmaskCrc(masked: number): number {
  const rot = (masked - 0xa282ead8) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}
