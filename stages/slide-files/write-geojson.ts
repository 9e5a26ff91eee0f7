/**
 * Stage: writes one GeoJSON FeatureCollection per slide of each kept patient, `<out>/<image_id>.geojson`, for
 * QuPath (File > Import objects): each kept tile is a Polygon feature in level-0 pixel coordinates, with
 * `"objectType": "annotation"` and a classification (name and colour), so QuPath shows the tile selection as
 * annotations over the slide. Passes the element on unchanged.
 *
 * RFC 7946 structure: rings closed (first position repeated last), exterior rings counter-clockwise in the
 * coordinates' own plane (positive signed area: (x, y) -> (x + s, y) -> (x + s, y + s) -> (x, y + s)). Pixel
 * coordinates are not WGS 84, as QuPath's GeoJSON is not; the slide's size is a foreign member, `slide`.
 *
 * No feature `id`: QuPath reads one as its object's UUID, so the tile is named in `properties.name` instead.
 *
 * Streamed: features are written as they are formatted, in blocks of about 64 KB; memory does not grow with tiles.
 */
import { open } from 'node:fs/promises';
import type { Stage } from '../../engine/types.js';
import { naming } from '../dataset/io.js';
import { AtomicFile, slidesOfPatient, type SlideFilesElement, type SlideTiles } from './slide-tiles.js';

/** QuPath's classification for the kept tiles. */
export const TILE_CLASS = { name: 'Tile', color: [0, 160, 80] } as const;
const FLUSH_BYTES = 64 * 1024;

export interface WriteGeoJsonOptions {
  readonly outDir: string;
  readonly tileSize: number;
  readonly onFile?: (file: string) => void;
}

export function writeGeoJson(opts: WriteGeoJsonOptions): Stage<SlideFilesElement, SlideFilesElement> {
  return async function* writeGeoJsonStage(source, ctx) {
    ctx.metrics.custom['files'] ??= 0;
    for await (const element of source) {
      const [patient_id, joined] = element;
      const split = slidesOfPatient(ctx.name, patient_id, joined);
      for (const slide of split?.slides ?? []) {
        ctx.signal.throwIfAborted();
        const file = new AtomicFile(opts.outDir, `${slide.facts.image_id}.geojson`);
        try {
          await naming('write', file.final, () => writeCollection(file.temp, slide, patient_id, opts.tileSize));
          await file.commit();
        } finally {
          await file.abandon();
        }
        opts.onFile?.(`${slide.facts.image_id}.geojson`);
        ctx.metrics.custom['files']++;
      }
      yield element;
    }
  };
}

/** The closed, counter-clockwise ring of a tile. */
export function tileRing(x: number, y: number, size: number): Array<[number, number]> {
  return [
    [x, y],
    [x + size, y],
    [x + size, y + size],
    [x, y + size],
    [x, y],
  ];
}

async function writeCollection(path: string, slide: SlideTiles, patient_id: string, size: number): Promise<void> {
  const { facts, tiles } = slide;
  const fh = await open(path, 'wx');
  try {
    let pending: string[] = [];
    let bytes = 0;
    const put = async (text: string): Promise<void> => {
      pending.push(text);
      bytes += text.length;
      if (bytes >= FLUSH_BYTES) await flush();
    };
    const flush = async (): Promise<void> => {
      if (pending.length > 0) await fh.write(pending.join(''));
      pending = [];
      bytes = 0;
    };
    const head = { type: 'FeatureCollection', slide: { image_id: facts.image_id, patient_id, width: facts.width, height: facts.height, tile_size: size, tiles: tiles.length } };
    await put(`${JSON.stringify(head).slice(0, -1)},"features":[\n`);
    for (let i = 0; i < tiles.length; i++) {
      const t = tiles[i]!;
      const feature = {
        type: 'Feature',
        geometry: { type: 'Polygon', coordinates: [tileRing(t.x, t.y, size)] },
        properties: { objectType: 'annotation', name: `tile ${i} (${t.x}, ${t.y})`, classification: TILE_CLASS, isLocked: true, tile_index: i, x: t.x, y: t.y },
      };
      await put(`${i === 0 ? '' : ',\n'}${JSON.stringify(feature)}`);
    }
    await put('\n]}\n');
    await flush();
  } finally {
    await fh.close();
  }
}
