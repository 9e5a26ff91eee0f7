/**
 * tf.train.Example encoding of one patient, streamed: the large packed float features (one per embedder
 * output: n*dim floats each) are written straight from the bag's rows, so a patient's Example never has to sit in
 * one buffer. Every length is known up front, so the protobuf length prefixes are computed before the first byte
 * is produced.
 *
 * Features (map entries written in sorted key order, so the bytes are reproducible):
 *   avg_embedding, max_embedding  float  n*dim, row-major, tiles sorted by (image_num, y, x): an embedder whose
 *                                        outputs are exactly avg and max (EfficientNet-B0, ResNet50-trunc)
 *   <name>_embedding              float  n*dim_name, likewise, one per output of any other embedder (a ViT: cls_embedding,
 *                                        mean_embedding), with
 *   embedding_outputs             bytes  the output names in model order, and
 *   embedding_dims                int64  their widths, in the same order
 *   center_id                     int64  1
 *   color_histogram               float  4096, bin (r>>4)*256 + (g>>4)*16 + (b>>4)
 *   image_ids                     bytes  the patient's image_ids in image_num order
 *   label                         bytes  1 (only with withLabel)
 *   num_tiles                     int64  n
 *   patient_id                    bytes  1
 *   tile_image_index              int64  n, index into image_ids
 *   tile_x, tile_y                int64  n, level-0 pixels of each tile's top-left corner
 */
import { endianness } from 'node:os';
import { EngineError } from '../../engine/types.js';
import type { EmbeddingBag, EmbeddingOutputSpec, MeanHistogram, PatientData } from '../types.js';
import protobuf from 'protobufjs';
import { FeaturesType } from './example-proto.js';
import { EMBEDDER_OUTPUT_NAME } from '../../models/check.js';

/** A kept patient after the join: its tabular data, its bag of embeddings and its mean histogram. */
export interface PatientRecord {
  readonly patient_id: string;
  readonly patient: PatientData;
  readonly bag: EmbeddingBag;
  readonly histogram: MeanHistogram;
}

/**
 * A serialized tf.train.Example that is produced as a stream. `chunks()` may be called more than once
 * (each call re-reads the bag) until `dispose()`, which frees the bag (its spill file).
 */
export interface EncodedExample {
  readonly patient_id: string;
  readonly num_tiles: number;
  /** Exact total length of the bytes `chunks()` yields. */
  readonly byteLength: number;
  chunks(): AsyncIterable<Uint8Array>;
  dispose(): Promise<void>;
}

type FeatureValue =
  | { bytes_list: { value: Uint8Array[] } }
  | { float_list: { value: number[] } }
  | { int64_list: { value: Array<number | string> } };

/** A part of the Features message: fixed bytes, or a packed float feature streamed from the bag. */
type Part = { bytes: Uint8Array } | { header: Uint8Array; output: string; floats: number; dim: number };

const utf8 = new TextEncoder();
// center_id is an int64 given as a decimal string: without Long, protobufjs would parse it with parseInt (inexact).
if (!protobuf.util.Long) throw new Error('protobufjs found no Long implementation: int64 values cannot be encoded exactly');
const LITTLE_ENDIAN = endianness() === 'LE';

/** Encodes `record` as a streamed tf.train.Example. The EncodedExample takes ownership of the bag. */
export function encodeExample(record: PatientRecord, opts: { withLabel: boolean }): EncodedExample {
  const { patient, bag, histogram, patient_id } = record;
  const n = bag.tiles.length;
  const stage = 'to-example';
  if (opts.withLabel && patient.label === undefined) {
    throw new EngineError('E_NO_LABEL', stage, patient_id, `patient ${patient_id} has no label but labels were requested (CSV lines ${patient.lines.join(', ')})`);
  }
  const imageIndex = new Map(patient.image_ids.map((id, i) => [id, i] as const));
  const tileImage: number[] = new Array<number>(n);
  const tileX: number[] = new Array<number>(n);
  const tileY: number[] = new Array<number>(n);
  bag.tiles.forEach((tile, i) => {
    const index = imageIndex.get(tile.image_id);
    if (index === undefined) {
      throw new EngineError('E_JOIN', stage, patient_id, `patient ${patient_id}: tile (${tile.x}, ${tile.y}) comes from image ${tile.image_id}, which is not among its CSV images [${patient.image_ids.join(', ')}]`);
    }
    tileImage[i] = index;
    tileX[i] = tile.x;
    tileY[i] = tile.y;
  });
  if (histogram.histogram.length !== 4096) {
    throw new EngineError('E_HISTOGRAM_SIZE', stage, patient_id, `patient ${patient_id}: colour histogram has ${histogram.histogram.length} bins, expected 4096`);
  }

  const small: Record<string, FeatureValue> = {
    // A decimal string: protobufjs encodes it exactly as an int64 (through Long), past 2^53 too.
    center_id: { int64_list: { value: [patient.center_id] } },
    color_histogram: { float_list: { value: Array.from(histogram.histogram) } },
    image_ids: { bytes_list: { value: patient.image_ids.map((id) => utf8.encode(id)) } },
    num_tiles: { int64_list: { value: [n] } },
    patient_id: { bytes_list: { value: [utf8.encode(patient_id)] } },
    tile_image_index: { int64_list: { value: tileImage } },
    tile_x: { int64_list: { value: tileX } },
    tile_y: { int64_list: { value: tileY } },
  };
  if (opts.withLabel) small['label'] = { bytes_list: { value: [utf8.encode(patient.label ?? '')] } };
  const big = embeddingFeatures(bag, small);

  const parts: Part[] = [];
  let featuresLength = 0;
  for (const key of [...Object.keys(small), ...Object.keys(big)].sort()) {
    const output = big[key];
    if (output !== undefined) {
      const floats = n * output.dim;
      const header = floatEntryHeader(key, floats);
      parts.push({ header, output: output.name, floats, dim: output.dim });
      featuresLength += header.length + 4 * floats;
    } else {
      // One map entry, encoded by protobufjs as a one-entry Features message: concatenating those is the
      // same as one Features message with all entries (a map is a repeated field on the wire).
      const bytes = FeaturesType.encode(FeaturesType.fromObject({ feature: { [key]: small[key] } })).finish();
      parts.push({ bytes });
      featuresLength += bytes.length;
    }
  }
  const exampleHeader = concat([tag(1, 2), varint(featuresLength)]);
  const byteLength = exampleHeader.length + featuresLength;

  let disposed = false;
  return {
    patient_id,
    num_tiles: n,
    byteLength,
    async *chunks() {
      if (disposed) throw new EngineError('E_DISPOSED', stage, patient_id, `example of patient ${patient_id} read after dispose`);
      yield exampleHeader;
      for (const part of parts) {
        if ('bytes' in part) {
          yield part.bytes;
          continue;
        }
        yield part.header;
        let seen = 0;
        for await (const rows of bag.rows(part.output)) {
          seen += rows.length;
          if (seen > part.floats) break;
          yield floatBytes(rows);
        }
        if (seen !== part.floats) {
          throw new EngineError('E_BAG_ROWS', stage, patient_id, `patient ${patient_id}: bag gave ${seen > part.floats ? 'more than' : seen} ${part.output} floats, expected ${part.floats} (${n} tiles x ${part.dim})`);
        }
      }
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      await bag.dispose();
    },
  };
}


/** True when the bag's outputs keep the CNN schema (avg_embedding, max_embedding and no width features). */
export function isPooledSchema(outputs: readonly EmbeddingOutputSpec[]): boolean {
  return outputs.length === 2 && outputs[0]!.name === 'avg' && outputs[1]!.name === 'max' && outputs[0]!.dim === outputs[1]!.dim;
}

/**
 * The packed float features, by key, for the bag's outputs; for any schema other than avg/max, adds the names and
 * widths (embedding_outputs, embedding_dims) to `small`.
 */
function embeddingFeatures(bag: EmbeddingBag, small: Record<string, FeatureValue>): Record<string, EmbeddingOutputSpec> {
  const big: Record<string, EmbeddingOutputSpec> = {};
  for (const o of bag.outputs) {
    if (!EMBEDDER_OUTPUT_NAME.test(o.name)) {
      throw new EngineError('E_EMBEDDING_OUTPUT', 'to-example', bag.patient_id, `embedder output '${o.name}' cannot name a feature (expected a letter, then letters, digits or _ , at most 64)`);
    }
    big[`${o.name}_embedding`] = o;
  }
  if (bag.outputs.length === 0) throw new EngineError('E_EMBEDDING_OUTPUT', 'to-example', bag.patient_id, `patient ${bag.patient_id}: the bag has no embedder outputs`);
  if (!isPooledSchema(bag.outputs)) {
    small['embedding_outputs'] = { bytes_list: { value: bag.outputs.map((o) => utf8.encode(o.name)) } };
    small['embedding_dims'] = { int64_list: { value: bag.outputs.map((o) => o.dim) } };
  }
  return big;
}

/**
 * The bytes of a Features map entry holding a FloatList of `floats` values, up to (not including)
 * the packed float data:  entry{ key, value: Feature{ float_list: FloatList{ value: [packed] } } }.
 */
function floatEntryHeader(key: string, floats: number): Uint8Array {
  const keyBytes = utf8.encode(key);
  const packed = 4 * floats;
  // FloatList body: field 1 packed (omitted when empty, as protobufjs does).
  const floatList = floats === 0 ? 0 : 1 + varintLength(packed) + packed;
  const feature = 1 + varintLength(floatList) + floatList; // Feature body: field 2 (float_list)
  const entry = 1 + varintLength(keyBytes.length) + keyBytes.length + 1 + varintLength(feature) + feature;
  const parts = [tag(1, 2), varint(entry), tag(1, 2), varint(keyBytes.length), keyBytes, tag(2, 2), varint(feature), tag(2, 2), varint(floatList)];
  if (floats > 0) parts.push(tag(1, 2), varint(packed));
  return concat(parts);
}

/** Little-endian bytes of float32 values (a view, without copying, on little-endian machines). */
function floatBytes(values: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint8Array(values.byteLength);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i]!, true);
  return out;
}

function tag(field: number, wireType: number): Uint8Array {
  return varint((field << 3) | wireType);
}

function varintLength(value: number): number {
  let n = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

function varint(value: number): Uint8Array {
  const out: number[] = [];
  while (value >= 128) {
    out.push((value % 128) | 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Uint8Array.from(out);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
