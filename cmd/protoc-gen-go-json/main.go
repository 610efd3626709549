// Command protoc-gen-go-json generates, for each message of Millrace's
// contracts, a JSON encoder and decoder that produce and accept what
// protojson does under the REST gateway's options, without protobuf
// reflection. It writes <name>.pb.json.go beside each <name>.pb.go; the
// generated methods run on the package internal/pbjson.
//
// Run it as a buf local plugin with paths=source_relative and strategy all:
// the messages of the files generated in one run are written and read by
// each other's generated methods; a message from any other file
// (google.protobuf.Any, google.rpc.Status, ...) is delegated to protojson.
// The option runtime=<import path> names another runtime package.
package main

import (
	"flag"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	var flags flag.FlagSet
	runtimePath := flags.String("runtime", defaultRuntime, "import path of the pbjson runtime package")
	protogen.Options{ParamFunc: flags.Set}.Run(func(p *protogen.Plugin) error {
		p.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL)
		return generate(p, protogen.GoImportPath(*runtimePath))
	})
}
