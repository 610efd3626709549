// Package pbjson is the runtime of the JSON codec that protoc-gen-go-json
// generates for Millrace's own messages. The REST edge spends a large share
// of each call converting messages to and from JSON; the generated methods do
// that without protobuf reflection, with the semantics of protojson under the
// gateway's options (JSON names, unpopulated fields omitted, unknown fields
// refused):
//
//   - MarshalProtoJSON appends a message to a [Writer];
//   - UnmarshalProtoJSON reads a message from a [Reader], recording the first
//     error on the Reader.
//
// [Marshal] and [Unmarshal] run them over a whole document. Errors are
// [*Error] values that name the offending field by its JSON path, such as
// "lines[2].quantity.value".
//
// google.protobuf.Timestamp and google.protobuf.FieldMask are handled here;
// any other message from outside Millrace's contracts (Any, google.rpc.Status,
// ...) is delegated to protojson with the same options, so that its JSON stays
// exactly what protojson produces.
package pbjson
