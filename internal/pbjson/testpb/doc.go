// Package testpb holds messages that use every field shape protoc-gen-go-json
// generates code for: each scalar type singular, optional, repeated and as
// map keys and values, oneofs, well-known types, nesting and unusual names.
// The codec's tests compare them against protojson; nothing else uses them.
package testpb

//go:generate sh -c "PATH=../../../.tools/bin:$PATH buf generate --template buf.gen.yaml"
