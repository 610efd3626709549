package platform

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// deprecatedMethods caches, per full method, whether the contract marks the
// RPC (or its service) deprecated.
var deprecatedMethods sync.Map // string → bool

// markDeprecation sets the Deprecation response header (HTTP Deprecation,
// RFC 9745) on calls to RPCs the contract marks `deprecated = true`, so REST
// and gRPC clients learn of it from every response.
func markDeprecation(ctx context.Context, fullMethod string) {
	if v, ok := deprecatedMethods.Load(fullMethod); ok {
		if v.(bool) {
			_ = grpc.SetHeader(ctx, metadata.Pairs("deprecation", "true"))
		}
		return
	}
	dep := isDeprecated(fullMethod)
	deprecatedMethods.Store(fullMethod, dep)
	if dep {
		_ = grpc.SetHeader(ctx, metadata.Pairs("deprecation", "true"))
	}
}

func isDeprecated(fullMethod string) bool {
	svc, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return false
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return false
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return false
	}
	if so, ok := sd.Options().(*descriptorpb.ServiceOptions); ok && so.GetDeprecated() {
		return true
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return false
	}
	mo, ok := md.Options().(*descriptorpb.MethodOptions)
	return ok && mo.GetDeprecated()
}
