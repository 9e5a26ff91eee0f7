/**
 * TFRecord framing, exactly as TensorFlow reads it. Each record is:
 *   uint64 length (little-endian) | uint32 masked CRC32C of those 8 bytes | data | uint32 masked CRC32C of data.
 * The writer streams a record from chunks (its length is known up front); the reader verifies both CRCs.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { crc32c, maskCrc } from './crc32c.js';

/** A data error in a TFRecord file: names the file and the byte offset. */
export class TfrecordError extends Error {
  readonly code = 'E_TFRECORD_CORRUPT';
  constructor(
    readonly file: string,
    readonly offset: number,
    message: string,
  ) {
    super(`${file}: byte offset ${offset}: ${message}`);
    this.name = 'TfrecordError';
  }
}

/** Bytes of framing around each record's data. */
export const RECORD_OVERHEAD = 16;

/** The 12-byte header of a record whose data is `length` bytes long. */
export function recordHeader(length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`bad record length ${length}`);
  const header = new Uint8Array(12);
  const view = new DataView(header.buffer);
  view.setBigUint64(0, BigInt(length), true);
  view.setUint32(8, maskCrc(crc32c(header.subarray(0, 8))), true);
  return header;
}

/** The 4-byte footer for data whose (unmasked) CRC32C is `crc`. */
export function recordFooter(crc: number): Uint8Array {
  const footer = new Uint8Array(4);
  new DataView(footer.buffer).setUint32(0, maskCrc(crc), true);
  return footer;
}

/** One whole record (header, data, footer) in one buffer; for small records and tests. */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length + RECORD_OVERHEAD);
  out.set(recordHeader(data.length), 0);
  out.set(data, 12);
  out.set(recordFooter(crc32c(data)), 12 + data.length);
  return out;
}

/** Coalesce small writes into this many bytes before writing; larger chunks are written directly. */
const WRITE_BUFFER_BYTES = 1 << 20;

/** Appends TFRecord records to a file, streaming each record's data from chunks. */
export class TfrecordWriter {
  private readonly buffer = new Uint8Array(WRITE_BUFFER_BYTES);
  private buffered = 0;
  /** Bytes written so far (including buffered bytes): the offset of the next record. */
  position = 0;
  records = 0;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  /** Creates (or truncates) `path`. */
  static async create(path: string): Promise<TfrecordWriter> {
    return new TfrecordWriter(path, await open(path, 'w'));
  }

  /** Writes one record whose data is the concatenation of `chunks`, which must total `length` bytes. */
  async writeRecord(length: number, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
    const start = this.position;
    await this.write(recordHeader(length));
    let crc = 0;
    let seen = 0;
    for await (const chunk of chunks) {
      seen += chunk.length;
      if (seen > length) break;
      crc = crc32c(chunk, crc);
      await this.write(chunk);
    }
    if (seen !== length) {
      throw Object.assign(
        new Error(`${this.path}: record at byte offset ${start} announced ${length} bytes but its chunks gave ${seen > length ? 'more' : seen}`),
        { code: 'E_TFRECORD_LENGTH' },
      );
    }
    await this.write(recordFooter(crc));
    this.records++;
  }

  private async write(bytes: Uint8Array): Promise<void> {
    this.position += bytes.length;
    if (this.buffered + bytes.length <= this.buffer.length) {
      this.buffer.set(bytes, this.buffered);
      this.buffered += bytes.length;
      return;
    }
    await this.flush();
    if (bytes.length >= this.buffer.length / 2) await writeAll(this.fh, bytes);
    else {
      this.buffer.set(bytes, 0);
      this.buffered = bytes.length;
    }
  }

  /** Writes buffered bytes to the file. */
  async flush(): Promise<void> {
    if (this.buffered === 0) return;
    const n = this.buffered;
    this.buffered = 0;
    await writeAll(this.fh, this.buffer.subarray(0, n));
  }

  /** Flushes, optionally fsyncs, and closes the file. */
  async close(options: { sync?: boolean } = {}): Promise<void> {
    try {
      await this.flush();
      if (options.sync) await this.fh.sync();
    } finally {
      await this.fh.close();
    }
  }

  /** Closes the file without flushing (after a failure). */
  async abandon(): Promise<void> {
    this.buffered = 0;
    await this.fh.close();
  }
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done);
    done += bytesWritten;
  }
}

/** A record read back: where it starts in the file and its data. */
export interface TfrecordEntry {
  readonly offset: number;
  readonly data: Uint8Array;
}

/**
 * Reads the records of a TFRecord file in order, verifying both CRCs of each. Throws a TfrecordError
 * (code E_TFRECORD_CORRUPT) naming the file and the offset of the bad bytes. The file is closed when
 * the iteration ends, also early.
 */
export async function* readTfrecords(path: string): AsyncGenerator<TfrecordEntry> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const header = new Uint8Array(12);
    const view = new DataView(header.buffer);
    const footer = new Uint8Array(4);
    let offset = 0;
    while (offset < size) {
      if (size - offset < 12) throw new TfrecordError(path, offset, `truncated record header (${size - offset} of 12 bytes)`);
      await readExactly(fh, header, offset);
      const lengthCrc = view.getUint32(8, true);
      if (maskCrc(crc32c(header.subarray(0, 8))) !== lengthCrc) throw new TfrecordError(path, offset, 'length CRC mismatch');
      const length = Number(view.getBigUint64(0, true));
      const dataOffset = offset + 12;
      if (length + 4 > size - dataOffset) {
        throw new TfrecordError(path, dataOffset, `truncated record: ${length} data bytes announced, ${Math.max(0, size - dataOffset - 4)} present`);
      }
      const data = new Uint8Array(length);
      await readExactly(fh, data, dataOffset);
      await readExactly(fh, footer, dataOffset + length);
      const dataCrc = new DataView(footer.buffer).getUint32(0, true);
      if (maskCrc(crc32c(data)) !== dataCrc) throw new TfrecordError(path, dataOffset, `data CRC mismatch in the record at byte offset ${offset}`);
      yield { offset, data };
      offset = dataOffset + length + 4;
    }
  } finally {
    await fh.close();
  }
}

async function readExactly(fh: FileHandle, into: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}
