/**
 * The byte level of the slide-list CSV, before csv-parse sees it: where each line starts (csv-parse's own line
 * counter miscounts quoted multi-line fields) and that every line is valid UTF-8. csv-parse would decode an
 * invalid byte as U+FFFD, which silently makes two distinct ids (`p\xff1`, `p\xfe1`) the same one.
 */
import { isUtf8 } from 'node:buffer';
import { Transform, type TransformCallback } from 'node:stream';
import { CsvError } from './error.js';

/** Longest line accepted (bytes): a line is kept whole until its end is seen, to check its UTF-8. */
export const MAX_LINE_BYTES = 1 << 20;

/**
 * A pass-through transform that records the byte offset of every '\n' and checks each line's UTF-8 before the
 * line's last byte is passed on (a '\n' byte is never part of a multi-byte character, so lines can be checked
 * one by one). An invalid line fails the stream with an E_CSV naming its line and character column.
 */
export class LineScanner extends Transform {
  /** Byte offsets of the '\n's seen so far, in order. */
  readonly newlines: number[] = [];
  /** Bytes before the current chunk. */
  private seen = 0;
  /** The current line's bytes from earlier chunks (its end not seen yet). */
  private tail: Buffer[] = [];
  private tailBytes = 0;

  /** `kept`, when given, receives every chunk passed through (for a caller that needs the bytes too). */
  constructor(
    private readonly file: string,
    private readonly kept?: Buffer[],
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      let from = 0;
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, from)) {
        this.checkLine(chunk.subarray(from, i));
        this.newlines.push(this.seen + i);
        from = i + 1;
      }
      if (from < chunk.length) {
        this.tail.push(chunk.subarray(from));
        this.tailBytes += chunk.length - from;
        this.checkLength(0);
      }
      this.seen += chunk.length;
      this.kept?.push(chunk);
      done(null, chunk);
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      this.checkLine(Buffer.alloc(0));
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  private checkLength(more: number): void {
    if (this.tailBytes + more > MAX_LINE_BYTES) throw new CsvError(this.file, this.newlines.length + 1, `line longer than ${MAX_LINE_BYTES} bytes`);
  }

  /** Checks the current line: the tail from earlier chunks, then `end`; starts a new line. */
  private checkLine(end: Buffer): void {
    this.checkLength(end.length);
    const line = this.tail.length === 0 ? end : Buffer.concat([...this.tail, end]);
    this.tail = [];
    this.tailBytes = 0;
    if (isUtf8(line)) return;
    const bad = firstInvalid(line);
    const bytes = [...line.subarray(bad.offset, bad.offset + bad.length)].map((b) => `0x${b.toString(16).padStart(2, '0')}`);
    throw new CsvError(this.file, this.newlines.length + 1, `invalid UTF-8 (bytes ${bytes.join(' ')}, byte ${bad.offset + 1} of the line); save the CSV as UTF-8`, { column: bad.column });
  }
}

/**
 * Where the first invalid sequence of a line starts: its byte offset, how many bytes it spans (1-4) and the
 * 1-based character column (a leading BOM not counted). Found with a fatal streaming TextDecoder fed byte by
 * byte (only on the error path): it throws at the first byte that cannot continue a valid sequence.
 */
export function firstInvalid(line: Uint8Array): { offset: number; length: number; column: number } {
  const start = line[0] === 0xef && line[1] === 0xbb && line[2] === 0xbf ? 3 : 0;
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  let chars = 0;
  let charEnd = start; // byte offset just past the last complete character
  for (let i = start; i <= line.length; i++) {
    let text: string;
    try {
      text = i < line.length ? decoder.decode(line.subarray(i, i + 1), { stream: true }) : decoder.decode();
    } catch {
      // Byte i cannot start a character (it is the invalid sequence), or cannot continue the one from charEnd.
      const end = i < line.length && i === charEnd ? i + 1 : i;
      return { offset: charEnd, length: end - charEnd, column: chars + 1 };
    }
    if (text !== '') {
      chars += [...text].length;
      charEnd = i + 1;
    }
  }
  throw new RangeError('firstInvalid: the line is valid UTF-8');
}
