package platform

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

func gatewayMarshaler() (*runtime.JSONPb, runtime.Marshaler) {
	pb := &runtime.JSONPb{}
	return pb, newFastJSON(pb)
}

func TestFastJSONDecodesLikeJSONPb(t *testing.T) {
	pb, fast := gatewayMarshaler()
	body := `{"customer":{"displayName":"Acme","region":"eu","externalRefs":[{"system":"sap","id":"1"}],"creditLimit":{"currencyCode":"EUR","amount":"100"}}}`
	var want, got customerv1.CreateCustomerRequest
	if err := pb.NewDecoder(strings.NewReader(body)).Decode(&want); err != nil {
		t.Fatal(err)
	}
	if err := fast.NewDecoder(strings.NewReader(body)).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, &want) || got.GetCustomer().GetCreditLimit().GetAmount() != "100" {
		t.Fatalf("decoded %v, want %v", &got, &want)
	}
}

// A body mapped to one field (body: "customer") is decoded into that field,
// which the decoder allocates, also for an empty body.
func TestFastJSONDecodesIntoAField(t *testing.T) {
	_, fast := gatewayMarshaler()
	var req customerv1.CreateCustomerRequest
	if err := fast.NewDecoder(strings.NewReader(`{"displayName":"Acme","region":"eu"}`)).Decode(&req.Customer); err != nil {
		t.Fatal(err)
	}
	if req.GetCustomer().GetDisplayName() != "Acme" {
		t.Fatalf("decoded %v", &req)
	}

	var empty customerv1.CreateCustomerRequest
	err := fast.NewDecoder(strings.NewReader(" \n")).Decode(&empty.Customer)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("an empty body gives %v, want io.EOF as the JSONPb gives", err)
	}
	if empty.Customer == nil {
		t.Fatal("an empty body leaves the field nil; the JSONPb allocates it")
	}
}

func TestFastJSONRefusesBadBodies(t *testing.T) {
	_, fast := gatewayMarshaler()
	tests := []struct {
		name, body, want string
	}{
		{"unknown field", `{"displayName":"X","colour":"red"}`, "colour: unknown field"},
		{"wrong type", `{"displayName":"X","creditLimit":{"amount":12}}`, "creditLimit.amount: invalid value 12"},
		{"truncated", `{"displayName":`, "displayName: unexpected end of JSON input"},
		{"data after the object", `{"displayName":"X"} {}`, "unexpected data after the top-level object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *customerv1.Customer
			err := fast.NewDecoder(strings.NewReader(tt.body)).Decode(&c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if errors.Is(err, io.EOF) {
				t.Fatalf("%v is io.EOF, which the gateway would take for an empty body", err)
			}
		})
	}
}

func TestFastJSONEncodesLikeJSONPb(t *testing.T) {
	pb, fast := gatewayMarshaler()
	msg := &customerv1.Customer{Id: "cus_1", DisplayName: "Acme \"GmbH\"", CreditLimit: &typev1.Money{CurrencyCode: "EUR", Amount: "1.50"}}
	var want, got bytes.Buffer
	if err := pb.NewEncoder(&want).Encode(msg); err != nil {
		t.Fatal(err)
	}
	if err := fast.NewEncoder(&got).Encode(msg); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got.String(), "\n") {
		t.Fatalf("encoded %q without the delimiter", got.String())
	}
	b, err := fast.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range [][]byte{got.Bytes(), b} {
		var x, y any
		if err := json.Unmarshal(out, &x); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want.Bytes(), &y); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(x, y) {
			t.Fatalf("wrote %s, the JSONPb writes %s", out, want.Bytes())
		}
	}
}

// Values that are not Millrace messages go to the JSONPb.
func TestFastJSONFallsBack(t *testing.T) {
	pb, fast := gatewayMarshaler()
	for _, v := range []any{map[string]string{"a": "b"}, []string{"x"}, &httpbody.HttpBody{ContentType: "text/plain", Data: []byte("hi")}} {
		want, err := pb.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := fast.Marshal(v)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Marshal(%T) = %s, %v; the JSONPb writes %s", v, got, err, want)
		}
	}
	var list []string
	if err := fast.NewDecoder(strings.NewReader(`["a","b"]`)).Decode(&list); err != nil || len(list) != 2 {
		t.Fatalf("decoded %v, %v", list, err)
	}
	body := &runtime.HTTPBodyMarshaler{Marshaler: fast}
	if b, err := body.Marshal(&httpbody.HttpBody{ContentType: "text/csv", Data: []byte("a,b")}); err != nil || string(b) != "a,b" {
		t.Fatalf("an HttpBody is written as %q, %v", b, err)
	}
}

// The codec implements protojson's defaults only; other options keep the
// JSONPb.
func TestFastJSONOnlyForDefaultOptions(t *testing.T) {
	if _, ok := newFastJSON(&runtime.JSONPb{}).(*fastJSON); !ok {
		t.Fatal("the gateway's options do not use the codec")
	}
	for _, pb := range []*runtime.JSONPb{
		{MarshalOptions: protojson.MarshalOptions{UseProtoNames: true}},
		{MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true}},
		{UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true}},
	} {
		if _, ok := newFastJSON(pb).(*fastJSON); ok {
			t.Fatalf("options %+v use the codec", pb)
		}
	}
}
