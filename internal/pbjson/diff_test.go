package pbjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"hash/fnv"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	_ "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/events/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	_ "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/pbjson"
	"github.com/millrace/millrace/internal/pbjson/testpb"
)

// The codec is tested against protojson with the REST gateway's options;
// protojson's nesting limit is set to the codec's so that both refuse the
// same documents.
var (
	gatewayMarshal   = protojson.MarshalOptions{}
	gatewayUnmarshal = protojson.UnmarshalOptions{RecursionLimit: pbjson.MaxDepth}
)

type codec interface {
	proto.Message
	pbjson.Marshaler
	pbjson.Unmarshaler
}

func sortTypes(ts []protoreflect.MessageType) {
	slices.SortFunc(ts, func(a, b protoreflect.MessageType) int {
		return strings.Compare(string(a.Descriptor().FullName()), string(b.Descriptor().FullName()))
	})
}

func newCodec(t testing.TB, mt protoreflect.MessageType) codec {
	t.Helper()
	c, ok := mt.New().Interface().(codec)
	if !ok {
		t.Fatalf("%s has no generated JSON methods", mt.Descriptor().FullName())
	}
	return c
}

func typeByName(t testing.TB, name string) protoreflect.MessageType {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		t.Fatal(err)
	}
	return mt
}

func seedOf(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

const rounds = 30

// sameJSON reports whether a and b hold the same JSON value: the same
// objects, arrays, strings and numbers, whatever the spacing, key order and
// escaping.
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	decode := func(data []byte) any {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, data)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

func TestEveryMessageHasTheCodec(t *testing.T) {
	types := messageTypes()
	if len(types) < 100 {
		t.Fatalf("found %d message types; are the contracts registered?", len(types))
	}
	for _, mt := range types {
		newCodec(t, mt)
	}
}

// TestMarshal checks that the codec writes every message as protojson does:
// protojson reads the output back to the same message, and the output is the
// same JSON value as protojson's.
func TestMarshal(t *testing.T) {
	for _, mt := range messageTypes() {
		name := string(mt.Descriptor().FullName())
		t.Run(name, func(t *testing.T) {
			f := newFiller(seedOf(name))
			for range rounds {
				m := newCodec(t, mt)
				f.fill(m.ProtoReflect(), 0)
				want, err := gatewayMarshal.Marshal(m)
				if err != nil {
					t.Fatalf("protojson: %v", err)
				}
				got, err := pbjson.Marshal(m)
				if err != nil {
					t.Fatalf("pbjson: %v\nprotojson wrote %s", err, want)
				}
				back := mt.New().Interface()
				if err := gatewayUnmarshal.Unmarshal(got, back); err != nil {
					t.Fatalf("protojson cannot read the output: %v\n%s", err, got)
				}
				if !proto.Equal(back, m) {
					t.Fatalf("protojson reads the output as\n%v\nwant\n%v\noutput %s", back, m, got)
				}
				if !sameJSON(t, got, want) {
					t.Fatalf("output differs from protojson's\ngot  %s\nwant %s", got, want)
				}
			}
		})
	}
}

// TestUnmarshal checks that the codec reads what protojson writes, under the
// gateway's options and others (proto names, unpopulated fields as null and
// [], enums as numbers, indentation), to the message protojson reads.
func TestUnmarshal(t *testing.T) {
	writers := map[string]protojson.MarshalOptions{
		"gateway":           gatewayMarshal,
		"proto names":       {UseProtoNames: true},
		"unpopulated":       {EmitUnpopulated: true},
		"enum numbers":      {UseEnumNumbers: true, UseProtoNames: true},
		"indented":          {Multiline: true, Indent: "\t", EmitDefaultValues: true},
		"default values":    {EmitDefaultValues: true},
		"everything at all": {UseProtoNames: true, EmitUnpopulated: true, UseEnumNumbers: true, Multiline: true},
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range writers {
			if !yield(k) {
				return
			}
		}
	})
	for _, mt := range messageTypes() {
		name := string(mt.Descriptor().FullName())
		t.Run(name, func(t *testing.T) {
			f := newFiller(seedOf(name) + 1)
			for range rounds {
				m := mt.New().Interface()
				f.fill(m.ProtoReflect(), 0)
				for _, wn := range names {
					data, err := writers[wn].Marshal(m)
					if err != nil {
						t.Fatalf("protojson: %v", err)
					}
					want := mt.New().Interface()
					if err := gatewayUnmarshal.Unmarshal(data, want); err != nil {
						t.Fatalf("%s: protojson cannot read its own output: %v\n%s", wn, err, data)
					}
					got := newCodec(t, mt)
					if err := pbjson.Unmarshal(data, got); err != nil {
						t.Fatalf("%s: %v\n%s", wn, err, data)
					}
					if !proto.Equal(got, want) {
						t.Fatalf("%s: read\n%v\nwant\n%v\nfrom %s", wn, got, want, data)
					}
					if wn == "gateway" && !proto.Equal(got, m) {
						t.Fatalf("read\n%v\nwant the original\n%v\nfrom %s", got, m, data)
					}
				}
			}
		})
	}
}

type docCase struct {
	name string
	typ  string // full name of the message
	doc  string
	// path is the field an invalid document's error must name.
	path string
}

const (
	simulate = "millrace.productpricing.v1.SimulatePricesRequest"
	response = "millrace.productpricing.v1.SimulatePricesResponse"
	update   = "millrace.productpricing.v1.UpdateProductRequest"
	scalars  = "millrace.pbjsontest.v1.Scalars"
	maps     = "millrace.pbjsontest.v1.Maps"
	choice   = "millrace.pbjsontest.v1.Choice"
	kitchen  = "millrace.pbjsontest.v1.Kitchen"
	known    = "millrace.pbjsontest.v1.WellKnown"
	repeats  = "millrace.pbjsontest.v1.Repeats"
)

// invalidDocs are refused by protojson and the codec alike; the codec's error
// names the field.
var invalidDocs = []docCase{
	{"unknown field", simulate, `{"customerId":"c","colour":1}`, "colour"},
	{"unknown nested field", simulate, `{"lines":[{"sku":"a"},{"sku":"b","qty":1}]}`, "lines[1].qty"},
	{"unknown field with an odd name", simulate, `{"a b":1}`, `["a b"]`},
	{"field given twice", simulate, `{"customerId":"a","customerId":"b"}`, "customerId"},
	{"field given by both names", simulate, `{"customerId":"a","customer_id":"b"}`, "customer_id"},
	{"field given twice, null first", simulate, `{"customerId":null,"customerId":"b"}`, "customerId"},
	{"list given twice", simulate, `{"lines":[],"lines":[]}`, "lines"},
	{"two fields of a oneof", choice, `{"cString":"a","cInt64":"1"}`, "cInt64"},
	{"two fields of a oneof, by proto name", choice, `{"c_message":{},"c_bool":false}`, "c_bool"},
	{"null value then another oneof field", choice, `{"cValue":null,"cBool":true}`, "cBool"},
	{"number for a string", simulate, `{"customerId":5}`, "customerId"},
	{"object for a string", simulate, `{"customerId":{}}`, "customerId"},
	{"string for a message", simulate, `{"lines":["a"]}`, "lines[0]"},
	{"object for a list", simulate, `{"lines":{}}`, "lines"},
	{"null in a list", simulate, `{"lines":[null]}`, "lines[0]"},
	{"nested wrong type", simulate, `{"lines":[{"sku":"a"},{"sku":"b"},{"quantity":{"value":12}}]}`, "lines[2].quantity.value"},
	{"unknown enum name", response, `{"lines":[{"status":"NOPE"}]}`, "lines[0].status"},
	{"enum name in the wrong case", response, `{"lines":[{"status":"line_price_status_priced"}]}`, "lines[0].status"},
	{"enum number out of range", response, `{"lines":[{"status":2147483648}]}`, "lines[0].status"},
	{"enum number as a string", response, `{"lines":[{"status":"1"}]}`, "lines[0].status"},
	{"fractional enum number", response, `{"lines":[{"status":1.5}]}`, "lines[0].status"},
	{"month 13", simulate, `{"priceTime":"2024-13-01T00:00:00Z"}`, "priceTime"},
	{"February 30", simulate, `{"priceTime":"2024-02-30T00:00:00Z"}`, "priceTime"},
	{"ten fractional digits", simulate, `{"priceTime":"2024-01-01T00:00:00.0000000001Z"}`, "priceTime"},
	{"no time zone", simulate, `{"priceTime":"2024-01-01T00:00:00"}`, "priceTime"},
	{"year zero", simulate, `{"priceTime":"0000-12-31T00:00:00Z"}`, "priceTime"},
	{"timestamp as a number", simulate, `{"priceTime":1700000000}`, "priceTime"},
	{"timestamp as an object", simulate, `{"priceTime":{"seconds":1}}`, "priceTime"},
	{"int32 overflow", response, `{"lines":[{"index":2147483648}]}`, "lines[0].index"},
	{"int32 underflow", scalars, `{"fInt32":-2147483649}`, "fInt32"},
	{"int64 overflow", scalars, `{"fInt64":"9223372036854775808"}`, "fInt64"},
	{"uint64 overflow", scalars, `{"fUint64":"18446744073709551616"}`, "fUint64"},
	{"negative uint32", scalars, `{"fUint32":-1}`, "fUint32"},
	{"fractional int", scalars, `{"fInt32":1.5}`, "fInt32"},
	{"fraction in a string", scalars, `{"fInt64":"1.5"}`, "fInt64"},
	{"int string with spaces", scalars, `{"fInt64":" 1"}`, "fInt64"},
	{"empty int string", scalars, `{"fInt64":""}`, "fInt64"},
	{"hex int", scalars, `{"fInt32":0x10}`, "fInt32"},
	{"plus sign", scalars, `{"fInt32":+1}`, "fInt32"},
	{"leading zero", scalars, `{"fInt32":01}`, "fInt32"},
	{"float overflow", scalars, `{"fFloat":1e39}`, "fFloat"},
	{"double overflow", scalars, `{"fDouble":"1e400"}`, "fDouble"},
	{"bare NaN", scalars, `{"fDouble":NaN}`, "fDouble"},
	{"nan in lower case", scalars, `{"fDouble":"nan"}`, "fDouble"},
	{"point without digits", scalars, `{"fDouble":1.}`, "fDouble"},
	{"exponent without digits", scalars, `{"fDouble":1e}`, "fDouble"},
	{"bool as a string", scalars, `{"fBool":"true"}`, "fBool"},
	{"bool as a number", scalars, `{"fBool":1}`, "fBool"},
	{"bad base64", scalars, `{"fBytes":"!!!!"}`, "fBytes"},
	{"base64 with a bad length", scalars, `{"fBytes":"abcde"}`, "fBytes"},
	{"invalid UTF-8", simulate, "{\"customerId\":\"a\xffb\"}", "customerId"},
	{"invalid UTF-8 in a key", simulate, "{\"\xff\":1}", ""},
	{"encoded surrogate", simulate, "{\"customerId\":\"\xed\xa0\x80\"}", "customerId"},
	{"raw control character", simulate, "{\"customerId\":\"a\nb\"}", "customerId"},
	{"short unicode escape", simulate, `{"customerId":"\u12"}`, "customerId"},
	{"lone high surrogate", simulate, `{"customerId":"\ud800x"}`, "customerId"},
	{"lone low surrogate", simulate, `{"customerId":"\udc00\ud800abc"}`, "customerId"},
	{"unknown escape", simulate, `{"customerId":"\x41"}`, "customerId"},
	{"trailing garbage", simulate, `{"customerId":"a"} x`, ""},
	{"two objects", simulate, `{"customerId":"a"}{}`, ""},
	{"truncated in a list", simulate, `{"customerId":"a","lines":[{"sku":"a"`, "lines[0].sku"},
	{"truncated after a colon", simulate, `{"customerId":`, "customerId"},
	{"truncated in a string", simulate, `{"customerId":"abc`, "customerId"},
	{"only a brace", simulate, `{`, ""},
	{"empty", simulate, ``, ""},
	{"white space only", simulate, " \n", ""},
	{"array at the top", simulate, `[]`, ""},
	{"null at the top", simulate, `null`, ""},
	{"string at the top", simulate, `"x"`, ""},
	{"missing colon", simulate, `{"customerId" "a"}`, "customerId"},
	{"missing comma", simulate, `{"customerId":"a" "currencyCode":"EUR"}`, "customerId"},
	{"trailing comma", simulate, `{"customerId":"a",}`, ""},
	{"trailing comma in a list", simulate, `{"lines":[{},]}`, "lines[1]"},
	{"single quotes", simulate, `{'customerId':'a'}`, ""},
	{"comment", simulate, `{/* */"customerId":"a"}`, ""},
	{"duplicate map key", maps, `{"int32Message":{"1":{},"01":{}}}`, `int32Message["01"]`},
	{"duplicate string map key", maps, `{"stringString":{"a":"x","\u0061":"y"}}`, "stringString.a"},
	{"bad int map key", maps, `{"int32Message":{"x":{}}}`, "int32Message.x"},
	{"uint map key with a sign", maps, `{"uint32Bool":{"+1":true}}`, `uint32Bool["+1"]`},
	{"bool map key", maps, `{"boolString":{"True":"a"}}`, "boolString.True"},
	{"null map value", maps, `{"stringString":{"a":null}}`, "stringString.a"},
	{"field mask with an underscore", update, `{"updateMask":"display_name"}`, "updateMask"},
	{"field mask with a bad path", update, `{"updateMask":"a,,b"}`, "updateMask"},
	{"field mask as a list", update, `{"updateMask":["a"]}`, "updateMask"},
	{"any of an unknown type", known, `{"any":{"@type":"type.googleapis.com/nope.Nope"}}`, "any"},
	{"any without a type", known, `{"any":{"value":1}}`, "any"},
	{"duration out of range", known, `{"duration":"315576000001s"}`, "duration"},
	{"value with a quirky exponent", known, `{"value":1e}`, "value"},
	{"struct that is a list", known, `{"struct":[]}`, "struct"},
	{"null in a repeated value", repeats, `{"rValue":null}`, "rValue"},
	{"null list of null values", repeats, `{"rNull":null}`, "rNull"},
	{"messages nested too deeply", kitchen, strings.Repeat(`{"child":`, pbjson.MaxDepth) + "{}" + strings.Repeat("}", pbjson.MaxDepth), "child.child"},
	{"timestamp nested too deeply", kitchen, strings.Repeat(`{"child":`, pbjson.MaxDepth-2) + `{"wellKnown":{"timestamp":"2024-01-01T00:00:00Z"}}` + strings.Repeat("}", pbjson.MaxDepth-2), "child.child"},
	{"value nested too deeply", kitchen, strings.Repeat(`{"child":`, pbjson.MaxDepth-2) + `{"wellKnown":{"value":{"a":1}}}` + strings.Repeat("}", pbjson.MaxDepth-2), "child.child"},
}

// validDocs are read alike by protojson and the codec.
var validDocs = []docCase{
	{name: "all spellings", typ: simulate, doc: " {\n\t\"customer_id\" : \"c\" ,\r\"currencyCode\":\"EUR\", \"price_time\":\"2024-02-29T23:59:59.5+01:00\",\"lines\":[ {\"sku\":\"a\",\"quantity\":{\"value\":\"1\",\"unit\":\"EA\"}} , {} ] } \n"},
	{name: "nulls", typ: simulate, doc: `{"customerId":null,"priceTime":null,"lines":null}`},
	{name: "int32 as a string", typ: scalars, doc: `{"fInt32":"12"}`},
	{name: "int32 with an exponent", typ: scalars, doc: `{"fInt32":1e1,"fSint32":1.0,"fSfixed32":-0,"fUint32":"-0"}`},
	{name: "int with a quirky exponent", typ: scalars, doc: `{"fInt32":1e}`},
	{name: "int64 as a number", typ: scalars, doc: `{"fInt64":-9223372036854775808,"fUint64":18446744073709551615,"fFixed64":"1e19"}`},
	{name: "floats as strings", typ: scalars, doc: `{"fDouble":"-1.5e-3","fFloat":"-Infinity"}`},
	{name: "float extremes", typ: scalars, doc: `{"fDouble":4.9e-324,"fFloat":3.4028235e38}`},
	{name: "float underflow", typ: scalars, doc: `{"fDouble":1e-400,"fFloat":1e-50}`},
	{name: "enum by number", typ: scalars, doc: `{"fEnum":-7}`},
	{name: "unknown enum number", typ: scalars, doc: `{"fEnum":99}`},
	{name: "enum alias", typ: scalars, doc: `{"fEnum":"COLOUR_CRIMSON"}`},
	{name: "escapes", typ: scalars, doc: `{"fString":"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00\u0000"}`},
	{name: "url-safe unpadded base64", typ: scalars, doc: `{"fBytes":"-_8"}`},
	{name: "base64 with a newline escape", typ: scalars, doc: `{"fBytes":"YW\nJj"}`},
	{name: "null value", typ: known, doc: `{"value":null,"nullValue":null}`},
	{name: "null in repeated values", typ: repeats, doc: `{"rValue":[null,1,"a"],"rNull":[null,"NULL_VALUE",0]}`},
	{name: "null oneof value", typ: choice, doc: `{"cNull":null}`},
	{name: "null oneof member then another", typ: choice, doc: `{"cString":null,"cBool":true}`},
	{name: "wrapped ints with a quirky exponent", typ: known, doc: `{"int64Value":1e,"int32Value":2e}`},
	{name: "any", typ: known, doc: `{"any":{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1.5s"}}`},
	{name: "maps", typ: maps, doc: `{"int32Message":{"-1":{},"+2":{}},"boolString":{"true":"a","false":"b"},"uint64Bytes":{"18446744073709551615":""},"stringNull":{"a":null}}`},
	{name: "empty containers", typ: kitchen, doc: `{"children":[],"kitchens":{},"maps":{"stringString":{}},"scalars":{}}`},
	{name: "field masks", typ: update, doc: `{"updateMask":" displayName,a.bC "}`},
	{name: "empty field mask", typ: update, doc: `{"updateMask":"  "}`},
	{name: "deep but allowed", typ: kitchen, doc: strings.Repeat(`{"child":`, pbjson.MaxDepth-1) + "{}" + strings.Repeat("}", pbjson.MaxDepth-1)},
	{name: "custom JSON name", typ: "millrace.pbjsontest.v1.Names", doc: `{"with \"quote\"":"a","custom":"b","Leading":1,"trailing_":2,"x9Y":"c"}`},
}

func TestInvalidDocuments(t *testing.T) {
	for _, tt := range invalidDocs {
		t.Run(tt.name, func(t *testing.T) {
			mt := typeByName(t, tt.typ)
			if err := gatewayUnmarshal.Unmarshal([]byte(tt.doc), mt.New().Interface()); err == nil {
				t.Fatalf("protojson accepts %s", tt.doc)
			}
			err := pbjson.Unmarshal([]byte(tt.doc), newCodec(t, mt))
			var e *pbjson.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want a *pbjson.Error", err)
			}
			if !strings.HasPrefix(e.Path, tt.path) || tt.path == "" && e.Path != "" {
				t.Fatalf("error %q names %q, want %q", err, e.Path, tt.path)
			}
		})
	}
}

func TestValidDocuments(t *testing.T) {
	for _, tt := range validDocs {
		t.Run(tt.name, func(t *testing.T) {
			mt := typeByName(t, tt.typ)
			want := mt.New().Interface()
			if err := gatewayUnmarshal.Unmarshal([]byte(tt.doc), want); err != nil {
				t.Fatalf("protojson refuses %s: %v", tt.doc, err)
			}
			got := newCodec(t, mt)
			if err := pbjson.Unmarshal([]byte(tt.doc), got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("read\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// TestMarshalErrors checks that what protojson cannot write, the codec cannot
// either, and that its error names the field.
func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		msg  proto.Message
		path string
	}{
		{"invalid UTF-8", &productpricingv1.SimulatePricesResponse{Lines: []*productpricingv1.PricedLine{
			{Sku: "a"}, {Quantity: &typev1.Quantity{Value: "1", Unit: "E\xffA"}},
		}}, "lines[1].quantity.unit"},
		{"invalid UTF-8 in a list", &testpb.Repeats{RString: []string{"a", "\xc3"}}, "rString[1]"},
		{"invalid UTF-8 in a map key", &testpb.Maps{StringString: map[string]string{"\xff": "a"}}, "stringString"},
		{"invalid UTF-8 in a map value", &testpb.Maps{StringString: map[string]string{"k": "\xff"}}, "stringString.k"},
		{"timestamp after 9999", &productpricingv1.SimulatePricesRequest{CustomerId: "c", PriceTime: &timestamppb.Timestamp{Seconds: 253402300800}}, "priceTime"},
		{"timestamp before year 1", &testpb.Repeats{RTimestamp: []*timestamppb.Timestamp{{}, {Seconds: -62135596801}}}, "rTimestamp[1]"},
		{"negative nanos", &productpricingv1.SimulatePricesRequest{PriceTime: &timestamppb.Timestamp{Nanos: -1}}, "priceTime"},
		{"field mask path without a camel case form", &productpricingv1.UpdateProductRequest{UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name", "a__b"}}}, "updateMask"},
		{"field mask path that is no name", &productpricingv1.UpdateProductRequest{UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"a-b"}}}, "updateMask"},
		{"any of an unknown type", &testpb.WellKnown{Any: &anypb.Any{TypeUrl: "type.googleapis.com/nope.Nope"}}, "any"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := gatewayMarshal.Marshal(tt.msg); err == nil {
				t.Fatalf("protojson writes %s", b)
			}
			b, err := pbjson.Marshal(tt.msg.(pbjson.Marshaler))
			var e *pbjson.Error
			if !errors.As(err, &e) {
				t.Fatalf("wrote %s, %v; want a *pbjson.Error", b, err)
			}
			if e.Path != tt.path {
				t.Fatalf("error %q names %q, want %q", err, e.Path, tt.path)
			}
		})
	}
}
