import t from 'tap';
import { selectTiles, backgroundMask } from '../../stages/slides/tile-select.js';
import { DEFAULT_TILE_PARAMS, checkTileParams } from '../../stages/slides/tile-params.js';
import type { RgbImage } from '../../stages/slides/reader.js';

/** A thumbnail where `bg(x,y)` pixels are white (background) and the others purple. */
function thumb(w: number, h: number, bg: (x: number, y: number) => boolean): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) data.set(bg(x, y) ? [255, 255, 255] : [120, 60, 160], (y * w + x) * 3);
  return { width: w, height: h, data };
}

t.test('10% boundary: 78/784 background kept, 79/784 dropped; partial edge tiles dropped', async (t) => {
  // 3 x 1 full tiles (448 at ds 16 = 28 thumbnail px) plus a partial column: W = 1400 -> thumbnail 87 px.
  const W = 1400;
  const H = 448;
  const img = thumb(Math.floor(W / 16), Math.floor(H / 16), (x, y) => {
    const tx = Math.floor(x / 28);
    const cx = x % 28;
    if (tx === 0) return cx < 2 || (cx === 2 && y < 22); // 56 + 22 = 78
    if (tx === 1) return cx < 2 || (cx === 2 && y < 23); // 79
    return false; // tile 2 and the partial edge: all tissue
  });
  const sel = selectTiles(W, H, img, DEFAULT_TILE_PARAMS);
  t.equal(sel.total, 3, 'three full tiles');
  t.same(sel.positions, [[0, 0], [896, 0]]);
  t.equal(sel.mask.reduce((a, b) => a + b, 0), 78 + 79);
});

t.test('row-major order and maxTiles', async (t) => {
  const img = thumb(56, 56, () => false);
  t.same(selectTiles(896, 896, img, DEFAULT_TILE_PARAMS).positions, [[0, 0], [448, 0], [0, 448], [448, 448]]);
  t.same(selectTiles(896, 896, img, { ...DEFAULT_TILE_PARAMS, maxTiles: 3 }).positions, [[0, 0], [448, 0], [0, 448]]);
  t.same(selectTiles(896, 896, img, { ...DEFAULT_TILE_PARAMS, maxTiles: 0 }).positions, []);
});

t.test('coverage with a non-integer ratio: tile 100 at ds 16 covers floor(x/16)..floor((x+100)/16)-1', async (t) => {
  // Tile at x=100 covers columns 6..11 (6 px); tile at x=0 covers 0..5. Column 6 background only.
  const img = thumb(12, 6, (x) => x === 6);
  const p = { ...DEFAULT_TILE_PARAMS, tileSize: 100, maxBackground: 0.1 };
  // tile 1 has 6 background of 36 (16.7%) -> dropped; tile 0 has none.
  t.same(selectTiles(200, 100, img, p).positions, [[0, 0]]);
  t.same(selectTiles(200, 100, img, { ...p, maxBackground: 1 / 6 }).positions, [[0, 0], [100, 0]]);
});

t.test('threshold is strict: 190 is tissue, 191 background', async (t) => {
  const data = new Uint8Array([190, 255, 255, 191, 191, 191, 255, 255, 100]);
  t.same([...backgroundMask({ width: 3, height: 1, data }, 190)], [0, 1, 0]);
});

t.test('thumbnail size is checked', async (t) => {
  t.throws(() => selectTiles(896, 896, thumb(55, 56, () => false), DEFAULT_TILE_PARAMS), /expected 56x56/);
});

t.test('parameter checks', async (t) => {
  t.doesNotThrow(() => checkTileParams(DEFAULT_TILE_PARAMS));
  for (const bad of [{ tileSize: 0 }, { tileSize: 8, downsample: 16 }, { downsample: 0.5 }, { maxBackground: 2 }, { backgroundThreshold: 300 }, { maxTiles: -1 }]) {
    t.throws(() => checkTileParams({ ...DEFAULT_TILE_PARAMS, ...bad }), { code: 'E_TILE_PARAMS' }, JSON.stringify(bad));
  }
});
