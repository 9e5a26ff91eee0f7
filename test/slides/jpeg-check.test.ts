/**
 * The JPEG tile check (stages/slides/jpeg-check.ts) against the decoder it stands in for: libjpeg through sharp with
 * failOn 'warning' on the same stream (JPEGTables merged), on clean tiles of generated slides and of the shared
 * Aperio SVS, on seeded mutations of them, and on the streams with restart markers jpeg-stack.ts makes.
 */
import t from 'tap';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { jpegTileFault, ZERO_RUN } from '../../stages/slides/jpeg-check.js';
import { stackTiles, tileParts } from '../../stages/slides/jpeg-stack.js';
import { generateSlide, rng } from '../../stages/slides/synthetic.js';
import { parseTiff } from '../../stages/slides/tiff-parse.js';

const dir = mkdtempSync(join(tmpdir(), 'jpeg-check-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const CMU = fileURLToPath(new URL('../../../shared/testdata/slides/cmu-1-small-region.svs', import.meta.url));

interface Tiles {
  readonly tiles: Buffer[];
  readonly tables: Uint8Array | undefined;
  readonly size: number;
}

/** Level 0's stored JPEG tiles (at most `max`). */
async function level0Tiles(path: string, max = 64): Promise<Tiles> {
  const fh = await open(path, 'r');
  try {
    const ifd = (await parseTiff(fh)).ifds[0]!;
    const tiles: Buffer[] = [];
    for (let i = 0; i < Math.min(max, ifd.offsets.length); i++) {
      const b = Buffer.alloc(ifd.byteCounts[i]!);
      await fh.read(b, 0, b.length, ifd.offsets[i]!);
      tiles.push(b);
    }
    return { tiles, tables: ifd.jpegTables, size: ifd.tileWidth! };
  } finally {
    await fh.close();
  }
}

/** The tile as a complete JPEG: the JPEGTables' segments, then the tile's (what libtiff hands libjpeg). */
function complete(tile: Buffer, tables: Uint8Array | undefined): Buffer {
  return tables === undefined ? tile : Buffer.concat([Buffer.from(tables.subarray(0, tables.length - 2)), tile.subarray(2)]);
}

/**
 * What libjpeg says of the stream: its warnings as sharp relays them ('warning' events), or undefined when it says
 * nothing. Not sharp's failOn 'warning' error: that misses warnings libjpeg gives late in the decode (measured: a
 * tile with a byte lost decodes without an error while libjpeg warns "premature end of data segment").
 */
async function libjpegSays(jpeg: Buffer): Promise<string | undefined> {
  const warnings: string[] = [];
  const img = sharp(jpeg, { failOn: 'none' });
  img.on('warning', (w: string) => {
    if (!/^read gave \d+ warnings/.test(w)) warnings.push(w.trim());
  });
  await img.raw().toBuffer();
  return warnings.length === 0 ? undefined : warnings.join('; ');
}

/** The stream decoded (libjpeg, whatever it warns). */
async function pixels(jpeg: Buffer): Promise<Buffer> {
  return sharp(jpeg, { failOn: 'none' }).raw().toBuffer();
}

/** Where the entropy-coded data of a tile starts (past the SOS header). */
function scanStart(tile: Buffer): number {
  const sos = tile.indexOf(Buffer.from([0xff, 0xda]));
  return sos + 2 + tile.readUInt16BE(sos + 2);
}

const synthetic = join(dir, 'syn.tiff');
await generateSlide({ path: synthetic, width: 2048, height: 1024, seed: 5, tissue: [{ kind: 'ellipse', cx: 1024, cy: 512, rx: 800, ry: 400 }] });
const flat = join(dir, 'flat.tiff');
// Flat colour and background without noise, Huffman tables optimised per tile: long runs of zero bytes that are valid.
await generateSlide({ path: flat, width: 1024, height: 512, seed: 1, texture: false, background: { color: [240, 240, 240], gradient: 0, noise: 0 }, tissue: [{ kind: 'rect', x: 0, y: 0, w: 512, h: 512 }] });
const standard = join(dir, 'standard.tiff');
await generateSlide({ path: standard, width: 1024, height: 1024, seed: 9, optimiseCoding: false });

t.test('clean tiles: no fault in either mode, and libjpeg agrees', async (t) => {
  const sets = [await level0Tiles(synthetic), await level0Tiles(flat), await level0Tiles(standard)];
  if (existsSync(CMU)) sets.push(await level0Tiles(CMU));
  else t.comment('test data missing: ../shared/testdata/slides/cmu-1-small-region.svs (the Aperio tiles are not checked)');
  let zeroRuns = 0;
  for (const { tiles, tables } of sets) {
    for (const tile of tiles) {
      t.equal(await libjpegSays(complete(tile, tables)), undefined, 'libjpeg: clean');
      t.equal(jpegTileFault(tile, tables, 'quick'), undefined);
      t.equal(jpegTileFault(tile, tables, 'full'), undefined);
      if (tile.indexOf(Buffer.alloc(ZERO_RUN), scanStart(tile)) >= 0) zeroRuns++;
    }
  }
  t.ok(zeroRuns > 0, `the flat slide has valid tiles with ${ZERO_RUN} zero bytes in a row (${zeroRuns}): the quick check walks them and passes them`);
});

t.test('the test helper\'s damage (entropy data zeroed to the end): both modes fault every tile, libjpeg only some', async (t) => {
  let silent = 0;
  for (const path of [synthetic, ...(existsSync(CMU) ? [CMU] : [])]) {
    const { tiles, tables } = await level0Tiles(path, 32);
    // Tiles with more than 100 bytes of entropy data to zero (the background ones are smaller).
    const damaged = tiles.filter((b) => b.length - 2 - scanStart(b) > 400).slice(0, 8);
    t.equal(damaged.length, 8, 'eight tiles to damage');
    for (const clean of damaged) {
      const tile = Buffer.from(clean);
      tile.fill(0, scanStart(tile) + 100, tile.length - 2);
      const says = await libjpegSays(complete(tile, tables));
      const full = jpegTileFault(tile, tables, 'full');
      t.match(full, /^Corrupt JPEG data: (premature end of data segment|\d+ extraneous bytes before marker 0xd9)$/);
      t.equal(jpegTileFault(tile, tables, 'quick'), full, 'the quick check walks a zeroed tile: the same fault');
      if (says === undefined) {
        // Zeros that decode as valid codes end the MCUs early: the data left over is what libvips never reads.
        silent++;
        t.match(full, /extraneous bytes/);
        t.not((await pixels(complete(tile, tables))).equals(await pixels(complete(clean, tables))), 'and its pixels are wrong');
      } else {
        t.match(says, /Corrupt JPEG data: premature end of data segment/, 'libjpeg warns');
        t.equal(full, 'Corrupt JPEG data: premature end of data segment', 'the same words');
      }
    }
  }
  t.comment(`${silent} damaged tile(s) libjpeg says nothing of`);
});

t.test('seeded mutations: the full check faults whenever libjpeg warns, and more; the quick check finds part of them', async (t) => {
  const sets = [await level0Tiles(synthetic, 16), await level0Tiles(standard, 16)];
  if (existsSync(CMU)) sets.push(await level0Tiles(CMU, 16));
  const rand = rng(42);
  const counts = { mutants: 0, libjpeg: 0, full: 0, quick: 0, beyond: 0 };
  for (const { tiles, tables } of sets) {
    for (const clean of tiles) {
      const reference = await pixels(complete(clean, tables));
      for (let k = 0; k < 6; k++) {
        const start = scanStart(clean);
        const at = start + Math.floor(rand() * (clean.length - 2 - start));
        const tile = mutate(clean, k, at, rand);
        const says = await libjpegSays(complete(tile, tables));
        const full = jpegTileFault(tile, tables, 'full');
        const quick = jpegTileFault(tile, tables, 'quick');
        counts.mutants++;
        if (says !== undefined) counts.libjpeg++;
        if (full !== undefined) counts.full++;
        if (quick !== undefined) counts.quick++;
        if (says !== undefined && full === undefined) t.fail(`mutation ${k} at byte ${at}: libjpeg warns ${JSON.stringify(says)}, the full check passes it`);
        if (quick !== undefined && full === undefined) t.fail(`mutation ${k} at byte ${at}: the quick check faults what the full one passes: ${quick}`);
        if (says === undefined && full !== undefined) {
          // Where libjpeg is silent (libjpeg-turbo's fast path takes a bad code as symbol 0; libvips never reads past
          // the last MCU, where extraneous bytes are seen), the check must be right: the pixels are wrong.
          counts.beyond++;
          t.match(full, /^Corrupt JPEG data: (bad Huffman code|\d+ extraneous bytes before marker 0xd9)$/, 'a fault libjpeg does not report');
          t.not((await pixels(complete(tile, tables))).equals(reference), `mutation ${k} at byte ${at} (${full}): its pixels are wrong`);
        }
      }
    }
  }
  t.ok(counts.libjpeg > counts.mutants / 2, `most mutants make libjpeg warn (${counts.libjpeg} of ${counts.mutants})`);
  t.ok(counts.quick > 0 && counts.quick < counts.full, `the quick check finds part of them (${counts.quick} of ${counts.full})`);
  t.comment(`mutants ${counts.mutants}: libjpeg warns on ${counts.libjpeg}, the full check faults ${counts.full} (${counts.beyond} libjpeg is silent on, all with wrong pixels), the quick one ${counts.quick}`);
});

/** Mutation `k` of a tile at byte `at` of its entropy data: cut short, bytes lost, bytes added, zeroed, random bytes, a stray marker. */
function mutate(clean: Buffer, k: number, at: number, rand: () => number): Buffer {
  const end = clean.length - 2;
  if (k === 0) return Buffer.concat([clean.subarray(0, at), Buffer.from([0xff, 0xd9])]);
  if (k === 1) return Buffer.concat([clean.subarray(0, at), clean.subarray(Math.min(end, at + 1 + Math.floor(rand() * 64)))]);
  if (k === 2) return Buffer.concat([clean.subarray(0, at), Buffer.from([0x5a, 0x11, 0x3c]), clean.subarray(at)]);
  if (k === 3) return Buffer.from(clean).fill(0, at, Math.min(end, at + 64));
  const tile = Buffer.from(clean);
  if (k === 4) {
    for (let i = at; i < Math.min(end, at + 32); i++) tile[i] = Math.floor(rand() * 255);
    return tile;
  }
  tile[Math.min(end - 2, at)] = 0xff;
  tile[Math.min(end - 1, at + 1)] = 0xd3;
  return tile;
}

t.test('restart markers (a stack of tiles, jpeg-stack.ts): in order passes, swapped or missing faults', async (t) => {
  const { tiles, tables, size } = await level0Tiles(standard, 4);
  const parts = tiles.slice(0, 3).map((b) => tileParts(b, tables, size, size));
  const stack = stackTiles(parts, 6, size);
  t.equal(await libjpegSays(stack), undefined, 'libjpeg: clean');
  t.equal(jpegTileFault(stack, undefined, 'quick'), undefined);
  t.equal(jpegTileFault(stack, undefined, 'full'), undefined);
  const rst0 = stack.indexOf(Buffer.from([0xff, 0xd0]));
  const rst1 = stack.indexOf(Buffer.from([0xff, 0xd1]));
  t.ok(rst0 > 0 && rst1 > rst0, 'two restart markers');
  const swapped = Buffer.from(stack);
  swapped[rst0 + 1] = 0xd1;
  swapped[rst1 + 1] = 0xd0;
  t.match(await libjpegSays(swapped), /Corrupt JPEG data/);
  for (const mode of ['quick', 'full'] as const) t.equal(jpegTileFault(swapped, undefined, mode), 'Corrupt JPEG data: found marker 0xd1 instead of RST0', mode);
  const missing = Buffer.concat([stack.subarray(0, rst0), stack.subarray(rst0 + 2)]);
  t.match(await libjpegSays(missing), /Corrupt JPEG data/);
  for (const mode of ['quick', 'full'] as const) t.match(jpegTileFault(missing, undefined, mode), /^Corrupt JPEG data: /, mode);
});

t.test('not a JPEG, or a header cut short: a fault, not a throw', async (t) => {
  const { tiles, tables } = await level0Tiles(synthetic, 1);
  t.equal(jpegTileFault(Buffer.from('not a jpeg at all'), tables, 'quick'), 'Not a JPEG file: no SOI marker');
  t.equal(jpegTileFault(tiles[0]!.subarray(0, 40), tables, 'quick'), 'Premature end of JPEG file');
  const noEoi = tiles[0]!.subarray(0, tiles[0]!.length - 2);
  t.equal(jpegTileFault(noEoi, tables, 'quick'), 'Premature end of JPEG file');
  t.match(jpegTileFault(noEoi, tables, 'full'), /Premature end of JPEG file|premature end of data segment/);
});
