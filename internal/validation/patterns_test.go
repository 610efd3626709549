package validation

import (
	"regexp"
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/events/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

// contractPatterns returns every string.pattern rule of the Millrace
// contracts, with the field that carries it.
func contractPatterns(t *testing.T) map[string]string {
	t.Helper()
	found := map[string]string{}
	var rules func(where string, m protoreflect.Message)
	rules = func(where string, m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.Name() == "pattern" && fd.Kind() == protoreflect.StringKind:
				found[v.String()] = where
			case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
				rules(where, v.Message())
			}
			return true
		})
	}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		for i := 0; i < md.Fields().Len(); i++ {
			fd := md.Fields().Get(i)
			if r, ok := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules); ok && r != nil {
				rules(string(fd.FullName()), r.ProtoReflect())
			}
		}
		for i := 0; i < md.Messages().Len(); i++ {
			walk(md.Messages().Get(i))
		}
	}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if strings.HasPrefix(fd.Path(), "millrace/") {
			for i := 0; i < fd.Messages().Len(); i++ {
				walk(fd.Messages().Get(i))
			}
		}
		return true
	})
	return found
}

// TestEveryContractPatternIsDescribed checks that each pattern of the
// contracts has words in patternMeanings, and that the examples those words
// give ("like ...") match the pattern they describe.
func TestEveryContractPatternIsDescribed(t *testing.T) {
	// Every contract package is imported above, so every file is in the
	// registry.
	patterns := contractPatterns(t)
	for _, file := range []string{"millrace/customer/v1/customer.proto", "millrace/fulfillment/v1/fulfillment.proto", "millrace/integration/v1/integration.proto", "millrace/order/v1/order.proto", "millrace/productpricing/v1/productpricing.proto"} {
		if _, err := protoregistry.GlobalFiles.FindFileByPath(file); err != nil {
			t.Fatalf("%s is not linked into the test: %v", file, err)
		}
	}
	if len(patterns) < 10 {
		t.Fatalf("found %d patterns in the contracts; the walk is broken", len(patterns))
	}
	for p, field := range patterns {
		if _, ok := patternMeanings[p]; !ok {
			t.Errorf("pattern %q of %s has no words in patternMeanings", p, field)
		}
	}
	example := regexp.MustCompile(`"([^"]*)"`)
	for p, meaning := range patternMeanings {
		re := regexp.MustCompile(p)
		_, after, ok := strings.Cut(meaning, "like ")
		if !ok {
			t.Errorf("the words for %q give no example", p)
			continue
		}
		for _, m := range example.FindAllStringSubmatch(after, -1) {
			if !re.MatchString(m[1]) {
				t.Errorf("the example %q given for %q does not match it", m[1], p)
			}
		}
	}
}

// TestPatternViolationsSayWhatIsAccepted checks the API answer for values
// that miss a pattern: the field's path, the words, and the pattern.
func TestPatternViolationsSayWhatIsAccepted(t *testing.T) {
	req := &orderv1.CreateOrderRequest{Order: &orderv1.Order{
		CustomerId: "cus_1", CurrencyCode: "eur", ShipToRegion: "eu",
		Lines: []*orderv1.OrderLine{{Sku: "VALVE-100", Quantity: &typev1.Quantity{Value: "-1", Unit: "EA"}}},
	}}
	err := Check(req)
	got := map[string]string{}
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				got[v.GetField()] = v.GetDescription()
			}
		}
	}
	want := map[string]string{
		"order.currency_code":           `must be an ISO 4217 currency code of three capital letters, like "EUR" (pattern ` + "`^[A-Z]{3}$`)",
		"order.lines[0].quantity.value": `must be a decimal number, not negative, with at most 12 digits before the point and 6 after and no leading zeros, like "12.5" (pattern ` + "`^(0|[1-9][0-9]{0,11})(\\.[0-9]{1,6})?$`)",
	}
	for f, w := range want {
		if got[f] != w {
			t.Errorf("%s: %q\nwant %q", f, got[f], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("violations %v, want only %v", got, want)
	}
	if !strings.HasPrefix(status.Convert(err).Message(), "invalid order.") {
		t.Errorf("message %q does not name the field", status.Convert(err).Message())
	}
	// A description that is not a pattern miss is left alone.
	if d := describe("value length must be at most 64 characters"); d != "value length must be at most 64 characters" {
		t.Errorf("describe changed another description: %q", d)
	}
}
