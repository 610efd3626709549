package platform

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// strictQuery reads query parameters as the gateway does, but refuses a
// parameter that names no field of the request: a misspelt filter
// (?createdAftr=…) would otherwise be dropped without a word and the CRM
// would get an unfiltered list back.
type strictQuery struct {
	runtime.DefaultQueryParser
}

// Parse implements runtime.QueryParameterParser.
func (p *strictQuery) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	md := msg.ProtoReflect().Descriptor()
	for key := range values {
		if !namesField(md, key) {
			// The gateway's own wording, which gatewayField turns into a
			// violation of the parameter.
			return fmt.Errorf("parsing field %q: unknown query parameter; this call takes %s", key, strings.Join(queryNames(md), ", "))
		}
	}
	return p.DefaultQueryParser.Parse(msg, values, filter)
}

// namesField reports whether a query key ("status", "created_after",
// "page.size", "labels[k]") names a field of md by its proto or JSON name,
// through singular message fields.
func namesField(md protoreflect.MessageDescriptor, key string) bool {
	if i := strings.IndexByte(key, '['); i > 0 && strings.HasSuffix(key, "]") {
		key = key[:i] // a map entry: the map field's name
	}
	parts := strings.Split(key, ".")
	for i, name := range parts {
		fields := md.Fields()
		fd := fields.ByTextName(name)
		if fd == nil {
			fd = fields.ByJSONName(name)
		}
		if fd == nil {
			return false
		}
		if i == len(parts)-1 {
			return true
		}
		if fd.Message() == nil || fd.IsList() || fd.IsMap() {
			return false
		}
		md = fd.Message()
	}
	return false
}

// queryNames lists the JSON names of md's fields, for the error.
func queryNames(md protoreflect.MessageDescriptor) []string {
	var names []string
	for i := 0; i < md.Fields().Len(); i++ {
		names = append(names, md.Fields().Get(i).JSONName())
	}
	sort.Strings(names)
	return names
}
