package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/pbjson/testpb"
)

// run generates code for files as buf does (paths=source_relative, all files
// in one request) and returns the generated files by name.
func run(t *testing.T, files ...protoreflect.FileDescriptor) map[string]string {
	t.Helper()
	req := &pluginpb.CodeGeneratorRequest{Parameter: proto.String("paths=source_relative")}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := 0; i < fd.Imports().Len(); i++ {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range files {
		add(fd)
		req.FileToGenerate = append(req.FileToGenerate, fd.Path())
	}
	return generateFor(t, req)
}

func generateFor(t *testing.T, req *pluginpb.CodeGeneratorRequest) map[string]string {
	t.Helper()
	p, err := protogen.Options{}.New(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := generate(p, defaultRuntime); err != nil {
		t.Fatal(err)
	}
	resp := p.Response()
	if resp.Error != nil {
		t.Fatal(resp.GetError())
	}
	out := map[string]string{}
	for _, f := range resp.File {
		out[f.GetName()] = f.GetContent()
	}
	return out
}

// TestGolden checks that the committed generated code is what the generator
// writes now, for Millrace's contracts and for the codec's test messages.
func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		dir   string
		files []protoreflect.FileDescriptor
		want  []string
	}{
		{
			name: "contracts",
			dir:  "../../gen/go",
			files: []protoreflect.FileDescriptor{
				typev1.File_millrace_type_v1_types_proto,
				customerv1.File_millrace_customer_v1_customer_proto,
				productpricingv1.File_millrace_productpricing_v1_productpricing_proto,
				orderv1.File_millrace_order_v1_order_proto,
				fulfillmentv1.File_millrace_fulfillment_v1_fulfillment_proto,
				integrationv1.File_millrace_integration_v1_integration_proto,
				eventsv1.File_millrace_events_v1_events_proto,
			},
			want: []string{
				"millrace/type/v1/types.pb.json.go",
				"millrace/customer/v1/customer.pb.json.go",
				"millrace/productpricing/v1/productpricing.pb.json.go",
				"millrace/order/v1/order.pb.json.go",
				"millrace/fulfillment/v1/fulfillment.pb.json.go",
				"millrace/integration/v1/integration.pb.json.go",
				"millrace/events/v1/events.pb.json.go",
			},
		},
		{
			name:  "test messages",
			dir:   "../../internal/pbjson/testpb",
			files: []protoreflect.FileDescriptor{testpb.File_testpb_proto},
			want:  []string{"testpb.pb.json.go"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, tt.files...)
			if len(got) != len(tt.want) {
				t.Errorf("generated %d files, want %d", len(got), len(tt.want))
			}
			for _, name := range tt.want {
				committed, err := os.ReadFile(filepath.Join(tt.dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if got[name] != string(committed) {
					t.Errorf("%s differs from what the generator writes now: run make generate (and go generate ./internal/pbjson/testpb)", name)
				}
			}
		})
	}
}

// TestCrossPackageMessages checks that a message of another file generated in
// the same run is written with its generated methods, and one outside the
// run through protojson.
func TestCrossPackageMessages(t *testing.T) {
	events := run(t, eventsv1.File_millrace_events_v1_events_proto)["millrace/events/v1/events.pb.json.go"]
	if !strings.Contains(events, "w.Proto(x.Customer)") {
		t.Errorf("a message of a file outside the run is not delegated to protojson")
	}
	all := run(t, customerv1.File_millrace_customer_v1_customer_proto, eventsv1.File_millrace_events_v1_events_proto)["millrace/events/v1/events.pb.json.go"]
	if !strings.Contains(all, "x.Customer.MarshalProtoJSON(w)") || strings.Contains(all, "w.Proto(x.Customer)") {
		t.Errorf("a message of a file in the run is not written by its generated methods")
	}
	if !strings.Contains(all, "w.Proto(x.Data)") {
		t.Errorf("google.protobuf.Any is not delegated to protojson")
	}
}

func TestRefusesProto2(t *testing.T) {
	fd := &descriptorpb.FileDescriptorProto{
		Name:        proto.String("legacy.proto"),
		Package:     proto.String("legacy"),
		Syntax:      proto.String("proto2"),
		Options:     &descriptorpb.FileOptions{GoPackage: proto.String("example.com/legacy")},
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Old")}},
	}
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: []string{"legacy.proto"}, ProtoFile: []*descriptorpb.FileDescriptorProto{fd}}
	p, err := protogen.Options{}.New(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := generate(p, defaultRuntime); err == nil || !strings.Contains(err.Error(), "proto3") {
		t.Fatalf("generate = %v, want an error saying only proto3 is supported", err)
	}
}
