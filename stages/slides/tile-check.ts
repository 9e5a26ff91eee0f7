/**
 * The corrupt-tile check of one JPEG-tiled TIFF level (--jpeg-check): each tile's compressed bytes go through
 * jpeg-check.ts before libvips decodes them, once per tile however many regions read it (a bitmap of the tiles
 * checked). A corrupt tile stops the read with CorruptTileError, which the backend reports as E_TILE_CORRUPT naming
 * the slide and the tile's position.
 */
import { jpegTileFault, type JpegCheckMode } from './jpeg-check.js';
import type { TiffIfd } from './tiff-parse.js';

/** --jpeg-check: 'quick' (default), 'full', or 'off' (no check: libvips' silent decode, as before). */
export type JpegCheckSetting = JpegCheckMode | 'off';

/** Raised by TileCheck.verify: which tile of the level (index, column, row) and what libjpeg would have said. */
export class CorruptTileError extends Error {
  constructor(
    readonly index: number,
    readonly column: number,
    readonly row: number,
    readonly fault: string,
  ) {
    super(`JPEG tile ${index} (column ${column}, row ${row}) is corrupt: ${fault}`);
    this.name = 'CorruptTileError';
  }
}

export class TileCheck {
  /** Tiles checked so far (counted: the tests and the bench read it). */
  checked = 0;
  private readonly seen: Uint8Array;
  private readonly across: number;

  constructor(
    private readonly ifd: TiffIfd,
    readonly mode: JpegCheckMode,
  ) {
    this.seen = new Uint8Array(ifd.offsets.length);
    this.across = Math.ceil(ifd.width / ifd.tileWidth!);
  }

  /** True for the levels this check applies to: JPEG-compressed tiles. */
  static applies(ifd: TiffIfd): boolean {
    return ifd.compression === 7 && ifd.tileWidth !== undefined && ifd.tileHeight !== undefined;
  }

  /** True when tile `index` was checked (and found clean). */
  has(index: number): boolean {
    return this.seen[index] === 1;
  }

  /** Checks tile `index` (its compressed bytes, as stored) unless already checked; throws CorruptTileError. */
  verify(index: number, bytes: Uint8Array): void {
    if (this.seen[index] === 1) return;
    const fault = jpegTileFault(bytes, this.ifd.jpegTables, this.mode);
    if (fault !== undefined) throw new CorruptTileError(index, index % this.across, Math.floor(index / this.across), fault);
    this.seen[index] = 1;
    this.checked++;
  }
}
