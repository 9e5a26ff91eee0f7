/**
 * The subset of TensorFlow's tensorflow/core/example/{feature,example}.proto that tf.train.Example
 * needs, vendored as text (field numbers and types exactly as upstream) and loaded with protobufjs.
 */
import protobuf from 'protobufjs';

export const EXAMPLE_PROTO = `
syntax = "proto3";
package tensorflow;

message BytesList { repeated bytes value = 1; }
message FloatList { repeated float value = 1 [packed = true]; }
message Int64List { repeated int64 value = 1 [packed = true]; }

message Feature {
  oneof kind {
    BytesList bytes_list = 1;
    FloatList float_list = 2;
    Int64List int64_list = 3;
  }
}

message Features { map<string, Feature> feature = 1; }

message Example { Features features = 1; }
`;

const root = protobuf.parse(EXAMPLE_PROTO, { keepCase: true }).root;

/** protobufjs types for tf.train.Example and its parts. */
export const ExampleType = root.lookupType('tensorflow.Example');
export const FeaturesType = root.lookupType('tensorflow.Features');
