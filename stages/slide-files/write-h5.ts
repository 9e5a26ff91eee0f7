/**
 * Stage: writes one HDF5 file per slide of each kept patient, `<out>/<image_id>.h5`, and passes the element on
 * unchanged (the bag stays the TFRecord writer's: its rows are read here once more, from memory or the spill file).
 *
 * Layout (CLAM / TRIDENT readers load it unchanged):
 *   features_<output>  float32 [N, D]  one per embedder output (EfficientNet-B0: features_avg, features_max)
 *   features           float32 [N, D]  a hard link to features_avg (or the first output)
 *   coords             int64   [N, 2]  level-0 (x, y) of each tile's top-left corner; attrs patch_size, patch_level, ...
 *   color_histogram    float32 [4096]  the slide's mean colour histogram (bin (r>>4)*256 + (g>>4)*16 + (b>>4))
 *   root attributes: image_id, patient_id, width, height, tile parameters, encoder, precision, mpp / magnification when known.
 * Tiles are in the TFRecord's order for this slide's tiles (sorted by y, x).
 *
 * Memory: rows go to the file in blocks of BLOCK_ROWS per slide and output; nothing else of the bag is held.
 */
import { EngineError, type Stage } from '../../engine/types.js';
import { isSystemError } from '../dataset/io.js';
import { AtomicFile, bagOutputs, slidesOfPatient, type SlideFilesElement, type SlideTiles } from './slide-tiles.js';
import { CHUNK_ROWS, loadH5wasm, SlideH5, type AttrValue, type RowDataset } from './hdf5.js';
import type { EmbeddingOutputSpec, TileParams } from '../types.js';

/** Rows handed to HDF5 per write (a whole number of chunks). */
export const BLOCK_ROWS = 4 * CHUNK_ROWS;

export interface WriteH5Options {
  readonly outDir: string;
  readonly tile: TileParams;
  /** The embedder: a name (its weights), the ONNX file's sha256. */
  readonly encoder: { readonly name: string; readonly sha256: string };
  /** The embeddings' precision ('fp32'). */
  readonly precision: string;
  /** Receives each file written (its name inside outDir). */
  readonly onFile?: (file: string) => void;
}

export function writeH5(opts: WriteH5Options): Stage<SlideFilesElement, SlideFilesElement> {
  return async function* writeH5Stage(source, ctx) {
    const h5 = await loadH5wasm();
    ctx.metrics.custom['files'] ??= 0;
    for await (const element of source) {
      const [patient_id, joined] = element;
      const split = slidesOfPatient(ctx.name, patient_id, joined);
      if (split !== undefined) {
        const files: PatientSlideH5[] = [];
        try {
          for (const s of split.slides) files.push(await PatientSlideH5.create(h5, opts, s, patient_id));
          await fill(files, split.bag, split.slides, ctx.signal);
          for (const f of files) {
            f.finish();
            await f.file.commit();
            opts.onFile?.(`${f.slide.facts.image_id}.h5`);
            ctx.metrics.custom['files']++;
          }
        } catch (err) {
          throw h5Failure(err, ctx.name, patient_id, files);
        } finally {
          for (const f of files) {
            f.abandonH5();
            await f.file.abandon();
          }
        }
      }
      yield element;
    }
  };
}

/** Reads each output's rows once and hands every slide its rows in blocks. */
async function fill(files: PatientSlideH5[], bag: SlideFilesElement[1]['embeddings'][number], slides: SlideTiles[], signal: AbortSignal): Promise<void> {
  // Bag position -> (slide, row within slide).
  const owner = new Int32Array(bag.tiles.length);
  const local = new Int32Array(bag.tiles.length);
  slides.forEach((s, k) => s.indices.forEach((i, j) => ((owner[i] = k), (local[i] = j))));
  for (const output of bagOutputs(bag)) {
    const blocks = files.map((f) => f.blockWriter(output));
    let at = 0;
    for await (const chunk of bag.rows(output.name)) {
      signal.throwIfAborted();
      const n = chunk.length / output.dim;
      for (let r = 0; r < n; r++, at++) blocks[owner[at]!]!.push(chunk.subarray(r * output.dim, (r + 1) * output.dim), local[at]!);
    }
    if (at !== bag.tiles.length) throw new EngineError('E_EMBEDDING_DIM', 'write-h5', bag.patient_id, `output ${output.name} has ${at} rows for ${bag.tiles.length} tiles`);
    for (const b of blocks) b.end();
  }
}

/** Fills one dataset in blocks of BLOCK_ROWS rows (so the library calls depend only on the data). */
class BlockWriter {
  private readonly buffer: Float32Array;
  private fill = 0;
  constructor(
    private readonly file: SlideH5,
    private readonly ds: RowDataset,
  ) {
    this.buffer = new Float32Array(Math.min(BLOCK_ROWS, Math.max(1, ds.rows)) * ds.dim);
  }
  push(row: Float32Array, index: number): void {
    if (index !== this.ds.written + this.fill) throw new Error(`${this.file.path}: row ${index} of ${this.ds.name} out of order`);
    this.buffer.set(row, this.fill * this.ds.dim);
    if (++this.fill * this.ds.dim === this.buffer.length) this.flush();
  }
  end(): void {
    this.flush();
    if (this.ds.written !== this.ds.rows) throw new Error(`${this.file.path}: ${this.ds.name} got ${this.ds.written} of ${this.ds.rows} rows`);
  }
  private flush(): void {
    this.file.append(this.ds, this.buffer.subarray(0, this.fill * this.ds.dim));
    this.fill = 0;
  }
}

/** One slide's HDF5 file while it is written (under its temporary name). */
class PatientSlideH5 {
  readonly file: AtomicFile;
  private h5: SlideH5 | undefined;
  private readonly outputs: string[] = [];

  private constructor(
    private readonly opts: WriteH5Options,
    readonly slide: SlideTiles,
    private readonly patient_id: string,
    file: AtomicFile,
    h5: SlideH5,
  ) {
    this.file = file;
    this.h5 = h5;
  }

  /** The temporary file is created by node first: a missing folder, a full disk or no permission is E_OUTPUT_IO naming it. */
  static async create(lib: Awaited<ReturnType<typeof loadH5wasm>>, opts: WriteH5Options, slide: SlideTiles, patient_id: string): Promise<PatientSlideH5> {
    const file = new AtomicFile(opts.outDir, `${slide.facts.image_id}.h5`);
    await file.create();
    try {
      return new PatientSlideH5(opts, slide, patient_id, file, SlideH5.create(lib, file.temp));
    } catch (err) {
      await file.abandon();
      throw err;
    }
  }

  blockWriter(output: EmbeddingOutputSpec): BlockWriter {
    const h5 = this.open();
    this.outputs.push(output.name);
    return new BlockWriter(h5, h5.rowDataset(`features_${output.name}`, this.slide.tiles.length, output.dim));
  }

  /** Everything but the feature rows: the `features` link, coords, histogram and attributes; then closes. */
  finish(): void {
    const h5 = this.open();
    const { facts, tiles } = this.slide;
    h5.link(`features_${this.outputs.includes('avg') ? 'avg' : this.outputs[0]}`, 'features');
    const coords = new BigInt64Array(tiles.length * 2);
    tiles.forEach((t, i) => ((coords[2 * i] = BigInt(t.x)), (coords[2 * i + 1] = BigInt(t.y))));
    const c = h5.dataset('coords', coords, [tiles.length, 2]);
    const downsample = facts.levels[facts.tileLevel] ?? 1;
    h5.attrs({ patch_size: this.opts.tile.tileSize, patch_level: facts.tileLevel, downsample: [downsample, downsample], level_dim: [facts.width, facts.height], name: facts.image_id }, c);
    if (facts.histogram !== undefined) h5.dataset('color_histogram', facts.histogram, [facts.histogram.length]);
    h5.attrs(this.rootAttrs());
    this.close();
  }

  private rootAttrs(): Record<string, AttrValue | undefined> {
    const { facts } = this.slide;
    const t = this.opts.tile;
    return {
      image_id: facts.image_id,
      patient_id: this.patient_id,
      width: facts.width,
      height: facts.height,
      level_downsamples: facts.levels,
      patch_size: t.tileSize,
      patch_level: facts.tileLevel,
      downsample: facts.levels[facts.tileLevel] ?? 1,
      thumbnail_downsample: t.downsample,
      background_threshold: t.backgroundThreshold,
      max_background: t.maxBackground,
      max_tiles: t.maxTiles,
      mpp_x: facts.mppX,
      mpp_y: facts.mppY,
      magnification: facts.magnification,
      scale_source: facts.scaleSource,
      format: facts.format,
      encoder: this.opts.encoder.name,
      encoder_sha256: this.opts.encoder.sha256,
      embedding_outputs: this.outputs.join(','),
      precision: this.opts.precision,
      color_histogram_tiles: facts.histogramTiles,
    };
  }

  close(): void {
    const h5 = this.h5;
    this.h5 = undefined;
    h5?.close();
  }

  /** After a failure: closes the file if still open (its temporary is removed next); a second failure is only reported. */
  abandonH5(): void {
    try {
      this.close();
    } catch (err) {
      console.error(`warning: ${this.file.temp}: ${(err as Error).message}`);
    }
  }

  private open(): SlideH5 {
    if (this.h5 === undefined) throw new Error(`${this.file.temp} is closed`);
    return this.h5;
  }
}

/** A file-system error stays E_OUTPUT_IO (naming the file); anything the library throws becomes E_H5_WRITE. */
function h5Failure(err: unknown, stage: string, patient_id: string, files: readonly PatientSlideH5[]): unknown {
  if (err instanceof EngineError || isSystemError(err) || (err as { code?: string }).code === 'E_OUTPUT_IO' || (err as Error).name === 'AbortError') return err;
  const names = files.map((f) => f.file.final).join(', ');
  return new EngineError('E_H5_WRITE', stage, patient_id, `writing ${names}: ${(err as Error).message ?? String(err)}`, { cause: err });
}
