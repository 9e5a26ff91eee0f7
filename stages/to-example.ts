/** Stage: encodes each kept patient as a streamed tf.train.Example (see stages/tfrecord/example.ts). */
import type { Stage } from '../engine/types.js';
import { encodeExample, type EncodedExample, type PatientRecord } from './tfrecord/example.js';

/**
 * The EncodedExample takes ownership of the record's bag: whoever consumes it calls dispose() once it is
 * written. If encoding fails, the bag is disposed here.
 */
export function toExample(opts: { withLabel: boolean }): Stage<PatientRecord, EncodedExample> {
  return async function* toExampleStage(source, ctx) {
    ctx.metrics.custom['exampleBytes'] ??= 0;
    for await (const record of source) {
      let example: EncodedExample;
      try {
        example = encodeExample(record, opts);
      } catch (err) {
        await record.bag.dispose();
        throw err;
      }
      ctx.metrics.custom['exampleBytes'] += example.byteLength;
      yield example;
    }
  };
}
