/**
 * The TIFF parser against damaged values: every offset, count and size read from the file is checked against the
 * file size and the explicit limits before anything is allocated or read, and the slide fails with E_SLIDE_FORMAT
 * naming the directory, the tag or the tile (and the slide). On a pyramidal BigTIFF (our writer) and on a classic
 * single-level TIFF (libvips' writer). Before these checks, a tile byte count of 0xE0000000 aborted the process on
 * a Node assertion in fs.read.
 */
import t from 'tap';
import { open, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { tempDir } from '../helpers/e2e.js';
import { entryOf, tiffLayout, withCount, withValue, withValueOffset, writeUint, type TiffLayout } from '../helpers/tiff-layout.js';
import { generateSlide } from '../../stages/slides/synthetic.js';
import { BoundedFile, parseTiff, TIFF_LIMITS, TiffFormatError, type TiffLimits } from '../../stages/slides/tiff-parse.js';
import { openSlide } from '../../stages/slides/open.js';

const dir = await tempDir(t, 'tiff-parse-');
const pyramid = join(dir, 'pyramid.tiff');
await generateSlide({ path: pyramid, width: 1100, height: 900, seed: 5 });
const single = join(dir, 'single.tif');
await sharp(pyramid, { page: 0 }).tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 80 }).toFile(single);

interface Case {
  readonly name: string;
  readonly bytes: Buffer;
  readonly layout: TiffLayout;
}
const cases: Case[] = [];
for (const [name, path] of [['pyramidal BigTIFF', pyramid], ['single-level classic TIFF', single]] as const) {
  const bytes = await readFile(path);
  cases.push({ name, bytes, layout: tiffLayout(bytes) });
}

/** parseTiff on these bytes (written to a file); resolves to the error it throws. */
async function parseError(bytes: Buffer, limits?: TiffLimits): Promise<TiffFormatError> {
  const path = join(dir, 'damaged.tif');
  await writeFile(path, bytes);
  const fh = await open(path);
  try {
    await parseTiff(fh, limits);
  } catch (err) {
    if (err instanceof TiffFormatError) return err;
    throw err;
  } finally {
    await fh.close();
  }
  throw new Error('parseTiff accepted the damaged file');
}

/** The damaged bytes as slide `bad`: openSlide fails with E_SLIDE_FORMAT naming the slide and matching `what`. */
async function slideFails(t: Tap.Test, bytes: Buffer, what: RegExp): Promise<void> {
  const path = join(dir, 'bad.tif');
  await writeFile(path, bytes);
  await t.rejects(openSlide(path, 'bad'), { code: 'E_SLIDE_FORMAT', image_id: 'bad', message: new RegExp(`^E_SLIDE_FORMAT: slide "bad" \\(${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\): .*${what.source}`) });
}

t.test('the two generated slides parse, and their tiles lie inside the file', async (t) => {
  for (const c of cases) {
    const fh = await open(c.name.startsWith('pyramidal') ? pyramid : single);
    const tiff = await parseTiff(fh);
    await fh.close();
    t.equal(tiff.bigTiff, c.layout.big, c.name);
    t.equal(tiff.ifds.length, c.layout.ifds.length, `${c.name}: directories`);
    t.ok(c.layout.tiles.length >= 16 && c.layout.tiles.every((x) => x.at + x.bytes <= c.bytes.length), `${c.name}: ${c.layout.tiles.length} tiles`);
  }
});

t.test('a tile byte count of 0xE0000000: E_SLIDE_FORMAT naming the tile', async (t) => {
  for (const c of cases) {
    const bytes = withValue(c.bytes, c.layout, entryOf(c.layout, 0, 325), 5, 0xe0000000);
    const err = await parseError(bytes);
    t.match(err.message, /^TIFF directory 0, tile 5 \(tags 324\/325\): 3758096384 bytes at offset \d+ run past the end of the file/, c.name);
    t.equal(err.kind, 'damaged');
    await slideFails(t, bytes, /tile 5 .*3758096384 bytes/);
  }
});

t.test('a file that holds 0xE0000000 bytes (sparse): the tile size limit catches the byte count', async (t) => {
  const c = cases[0]!;
  const path = join(dir, 'sparse.tiff');
  await writeFile(path, withValue(c.bytes, c.layout, entryOf(c.layout, 0, 325), 2, 0xe0000000));
  await truncate(path, 0x100000000); // 4 GiB, no blocks written: the directories still say where everything is
  await t.rejects(openSlide(path, 'sparse'), { code: 'E_SLIDE_FORMAT', message: /TIFF directory 0, tile 2 \(tags 324\/325\): byte count 3758096384 is over 1441792, twice the raw size of a 256x256 tile/ });
});

t.test('a tag count of 0x3FFFFFFF: E_SLIDE_FORMAT naming the tag', async (t) => {
  for (const c of cases) {
    for (const tag of [324, 325]) {
      const bytes = withCount(c.bytes, c.layout, entryOf(c.layout, 0, tag), 0x3fffffff);
      const name = tag === 324 ? 'TileOffsets' : 'TileByteCounts';
      t.match((await parseError(bytes)).message, new RegExp(`^TIFF directory 0 \\(at offset \\d+, from the header\\), tag ${tag} \\(${name}\\), 1073741823 values: \\d+ bytes at offset \\d+ run past the end`), `${c.name} ${name}`);
      await slideFails(t, bytes, new RegExp(`tag ${tag} \\(${name}\\), 1073741823 values`));
    }
  }
  // In a file large enough to hold them, the values limit says no before anything is read.
  const c = cases[1]!;
  const path = join(dir, 'sparse-count.tif');
  await writeFile(path, withCount(c.bytes, c.layout, entryOf(c.layout, 0, 324), 0x3fffffff));
  await truncate(path, 0x200000000);
  await t.rejects(openSlide(path, 'sparse'), { code: 'E_SLIDE_FORMAT', message: /tag 324 \(TileOffsets\): count 1073741823 is over the limit of 4194304 values/ });
});

t.test('an offset past the end: a tile, a tag value, a directory', async (t) => {
  for (const c of cases) {
    const size = c.bytes.length;
    const tile = withValue(c.bytes, c.layout, entryOf(c.layout, 0, 324), 3, size + 10);
    t.match((await parseError(tile)).message, new RegExp(`^TIFF directory 0, tile 3 \\(tags 324/325\\): \\d+ bytes at offset ${size + 10} run past the end of the file \\(${size} bytes`), c.name);
    await slideFails(t, tile, /tile 3 /);
    const desc = c.layout.ifds[0]!.entries.find((e) => e.tag === 270 && e.dataAt !== e.valueFieldAt);
    if (desc !== undefined) {
      const bytes = withValueOffset(c.bytes, c.layout, desc, size - 4);
      await slideFails(t, bytes, /tag 270 \(ImageDescription\), \d+ values: \d+ bytes at offset \d+ run past the end/);
    }
    const head = Buffer.from(c.bytes);
    writeUint(head, c.layout.big ? 8 : 4, c.layout.big ? 8 : 4, c.layout.le, size);
    await slideFails(t, head, new RegExp(`TIFF directory 0 \\(at offset ${size}, from the header\\): entry count: \\d bytes at offset ${size} run past the end`));
    if (c.layout.ifds.length > 1) {
      const next = Buffer.from(c.bytes);
      const off = c.layout.big ? 8 : 4;
      writeUint(next, c.layout.ifds[0]!.end - off, off, c.layout.le, 2 ** 40);
      await slideFails(t, next, /TIFF directory 1 \(at offset 1099511627776, from directory 0\): entry count/);
    }
  }
});

t.test('a tile offset table that runs past the end', async (t) => {
  for (const c of cases) {
    const e = entryOf(c.layout, 0, 324);
    const bytes = withValueOffset(c.bytes, c.layout, e, c.bytes.length - 8);
    t.match((await parseError(bytes)).message, new RegExp(`tag 324 \\(TileOffsets\\), ${e.count} values: ${e.dataBytes} bytes at offset ${c.bytes.length - 8} run past the end`), c.name);
    await slideFails(t, bytes, /tag 324 \(TileOffsets\)/);
  }
});

t.test('geometry: a table shorter than the tiles, a zero tile width, a zero image width', async (t) => {
  for (const c of cases) {
    const e = entryOf(c.layout, 0, 325);
    const short = withCount(c.bytes, c.layout, e, e.count - 1);
    await slideFails(t, short, new RegExp(`tag 325 \\(TileByteCounts\\): ${e.count - 1} entries for the ${e.count} tiles`));
    await slideFails(t, withValue(c.bytes, c.layout, entryOf(c.layout, 0, 322), 0, 0), /tag 322 \(TileWidth\): 0 is not a size from 1 to 16384/);
    await slideFails(t, withValue(c.bytes, c.layout, entryOf(c.layout, 0, 322), 0, 16385), /tag 322 \(TileWidth\): 16385 is not a size/);
    await slideFails(t, withValue(c.bytes, c.layout, entryOf(c.layout, 0, 256), 0, 0), /tag 256 \(ImageWidth\): 0 is not a size/);
  }
});

t.test('the directory chain: a loop, more directories than the limit', async (t) => {
  const c = cases[0]!;
  const off = c.layout.big ? 8 : 4;
  const loop = Buffer.from(c.bytes);
  writeUint(loop, c.layout.ifds[1]!.end - off, off, c.layout.le, c.layout.ifds[0]!.at);
  await slideFails(t, loop, new RegExp(`TIFF directory chain loops: directory 2 \\(from directory 1\\) is at offset ${c.layout.ifds[0]!.at}, seen before`));
  t.match((await parseError(c.bytes, { ...TIFF_LIMITS, maxIfds: 2 })).message, /^TIFF has more than 2 directories$/);
});

t.test('limits: entries of a directory, values of all directories together', async (t) => {
  const c = cases[0]!;
  const n = c.layout.ifds[0]!.entries.length;
  t.match((await parseError(c.bytes, { ...TIFF_LIMITS, maxEntries: n - 1 })).message, new RegExp(`TIFF directory 0 .* has ${n} entries`));
  // Every directory's values count against one budget: one directory's worth (all its entries) leaves too little for the next.
  const one = c.layout.ifds[0]!.entries.reduce((s, e) => s + e.count, 0);
  const err = await parseError(c.bytes, { ...TIFF_LIMITS, maxTotalValues: one });
  t.match(err.message, new RegExp(`^TIFF directory 1 .*tag \\d+ \\(\\w+\\): count \\d+ is over what is left of the limit of ${one} values for all directories`));
});

t.test('not a TIFF is kind not-tiff (another backend may try it); a damaged TIFF is not handed to OpenSlide', async (t) => {
  t.equal((await parseError(Buffer.from('hello, not a slide'))).kind, 'not-tiff');
  t.equal((await parseError(Buffer.from('II*\0'))).kind, 'not-tiff');
  const c = cases[1]!;
  const path = join(dir, 'damaged-for-openslide.tif');
  await writeFile(path, withValue(c.bytes, c.layout, entryOf(c.layout, 0, 325), 0, 0xe0000000));
  // With OpenSlide missing, open.ts would add "OpenSlide might read it": it does not, the parse's own message stands.
  const err = await openSlide(path, 'x', { openslideLibrary: '/nonexistent/libopenslide.so' }).catch((e: Error) => e);
  t.match(err, { code: 'E_SLIDE_FORMAT', message: /tile 0 \(tags 324\/325\): 3758096384 bytes/ });
  t.notMatch((err as Error).message, /OpenSlide/);
});

t.test('BoundedFile: a span outside the file, a non-integer position, a file that shrank under the reader', async (t) => {
  const path = join(dir, 'shrinks.bin');
  await writeFile(path, Buffer.alloc(1000, 7));
  const fh = await open(path);
  t.teardown(() => fh.close());
  const f = await BoundedFile.of(fh);
  t.equal(f.size, 1000);
  t.same([...(await f.read(990, 10, 'end'))], Array(10).fill(7));
  t.throws(() => f.need(999, 2, 'thing'), { message: 'thing: 2 bytes at offset 999 run past the end of the file (1000 bytes; truncated or damaged)' });
  t.throws(() => f.need(2.5, 1, 'thing'), { message: /thing: offset 2.5 is not a file position/ });
  t.throws(() => f.need(0, 2 ** 64, 'thing'), { message: /thing: length 18446744073709552000 is not a byte count/ });
  await truncate(path, 500);
  await t.rejects(f.read(400, 200, 'tail'), { message: 'tail: the file ended after 100 of 200 bytes at offset 400 (truncated)' });
});
