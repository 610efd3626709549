// Command protoc-gen-go-validate generates, for each message of Millrace's
// contracts whose protovalidate rules it understands, a ValidateRules method
// that reports the same violations as protovalidate (field path, rule id,
// message, order) without reflection or CEL. It writes <name>.pb.validate.go
// beside each <name>.pb.go; the methods run on the package
// internal/pbvalidate.
//
// Patterns are compiled at package init to a DFA for ASCII input
// (pbvalidate.Pattern), which matches as package regexp does.
//
// It understands required; string len, min_len, max_len, pattern, in,
// not_in and uri; int32 gt, gte, lt, lte, in and not_in; enum defined_only,
// in and not_in; repeated min_items, max_items and items with those scalar
// rules; and embedded messages, singular, repeated or map values. A
// message with any other rule (CEL, message or oneof rules, ignore,
// predefined rules, map rules, ...) gets no method, nor does any message
// that contains it, so that protovalidate validates those whole; the
// generated file says which rule and why.
//
// Run it as a buf local plugin with paths=source_relative and strategy all,
// so that messages of one file call the methods of another.
package main

import (
	"flag"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	var flags flag.FlagSet
	runtimePath := flags.String("runtime", defaultRuntime, "import path of the pbvalidate runtime package")
	protogen.Options{ParamFunc: flags.Set}.Run(func(p *protogen.Plugin) error {
		p.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL)
		return generate(p, protogen.GoImportPath(*runtimePath))
	})
}
