// Package testpb holds messages with the protovalidate rules that
// protoc-gen-go-validate handles but Millrace's contracts do not use yet
// (proto3 optional fields, string in/not_in/len, int32 gt/lt/in/not_in and
// exclusive ranges, required scalars and lists, repeated items with rules),
// and messages with rules it must leave to protovalidate. The validators'
// tests compare them against protovalidate; nothing else uses them.
package testpb

//go:generate sh -c "PATH=../../../.tools/bin:$PATH buf generate --template buf.gen.yaml --path testpb.proto"
