/**
 * What the per-slide writers share: the element they take (the join's output with the patient's SlideFacts),
 * a patient's bag split into its slides (tile order kept: the TFRecord's order), the embedder outputs of a bag,
 * and finishing a file atomically (a hidden temporary name in the dataset folder, fsync, rename).
 */
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { EngineError, type KV } from '../../engine/types.js';
import type { JoinedPatient } from '../drop-no-tiles.js';
import type { EmbeddingBag, EmbeddingOutputSpec, TileRef } from '../types.js';
import type { SlideFacts } from './slide-facts.js';
import { naming } from '../dataset/io.js';

/** The join's output when per-slide files are asked for: one SlideFacts list per patient (or none). */
export interface JoinedWithSlides extends JoinedPatient {
  readonly slides: readonly (readonly SlideFacts[])[];
}

export type SlideFilesElement = KV<string, JoinedWithSlides>;

/** One slide's share of a patient's bag. */
export interface SlideTiles {
  readonly facts: SlideFacts;
  /** Positions in the bag (ascending) of this slide's tiles. */
  readonly indices: readonly number[];
  readonly tiles: readonly TileRef[];
}

/** The embedder's outputs of a bag, in model order (EfficientNet-B0: avg, max; a ViT: cls, mean). */
export function bagOutputs(bag: EmbeddingBag): EmbeddingOutputSpec[] {
  return bag.outputs.map((o) => ({ name: o.name, dim: o.dim }));
}

/**
 * The patient's bag split by slide, in the order the slides' tiles first appear in the bag (image_num order);
 * undefined for a patient without tiles (DropNoTiles drops it). A slide with tiles but no SlideFacts is E_JOIN.
 */
export function slidesOfPatient(stage: string, patient_id: string, joined: JoinedWithSlides): { bag: EmbeddingBag; slides: SlideTiles[] } | undefined {
  const bag = joined.embeddings[0];
  if (bag === undefined || bag.tiles.length === 0 || joined.patient.length === 0) return undefined;
  const facts = new Map((joined.slides[0] ?? []).map((f) => [f.image_id, f]));
  const bySlide = new Map<string, { indices: number[]; tiles: TileRef[] }>();
  bag.tiles.forEach((tile, i) => {
    let s = bySlide.get(tile.image_id);
    if (s === undefined) bySlide.set(tile.image_id, (s = { indices: [], tiles: [] }));
    s.indices.push(i);
    s.tiles.push(tile);
  });
  return {
    bag,
    slides: [...bySlide].map(([image_id, s]) => {
      const f = facts.get(image_id);
      if (f === undefined) throw new EngineError('E_JOIN', stage, patient_id, `patient ${patient_id}: slide ${image_id} has ${s.tiles.length} tile(s) but its summary never arrived`);
      return { facts: f, ...s };
    }),
  };
}

/** A file written under a hidden temporary name in `dir` and renamed to `name` once complete. */
export class AtomicFile {
  readonly final: string;
  readonly temp: string;
  private done = false;

  constructor(dir: string, name: string) {
    this.final = join(dir, name);
    this.temp = join(dir, `.${name}.${process.pid}-${randomBytes(4).toString('hex')}.tmp`);
  }

  /** Creates the temporary file, empty (E_OUTPUT_IO naming the final file when it cannot be). */
  async create(): Promise<void> {
    await naming('write', this.final, async () => (await open(this.temp, 'wx')).close());
  }

  /** fsync, then rename over the final name. */
  async commit(): Promise<void> {
    await naming('write', this.final, async () => {
      const fh = await open(this.temp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(this.temp, this.final);
    });
    this.done = true;
  }

  /** Removes the temporary file unless committed (idempotent). */
  async abandon(): Promise<void> {
    if (!this.done) await rm(this.temp, { force: true });
    this.done = true;
  }
}
