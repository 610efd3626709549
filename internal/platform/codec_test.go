package platform

import (
	"strings"
	"testing"

	"google.golang.org/grpc/encoding"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

func pricedAnswer(lines int) *productpricingv1.SimulatePricesResponse {
	resp := &productpricingv1.SimulatePricesResponse{
		PriceTime: timestamppb.New(timestamppb.Now().AsTime().Truncate(1000)),
		Total:     &typev1.Money{CurrencyCode: "EUR", Amount: "1234.56"},
	}
	for i := range lines {
		resp.Lines = append(resp.Lines, &productpricingv1.PricedLine{
			Index:          int32(i),
			Sku:            "VALVE-050 Ü",
			Status:         productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED,
			PriceListId:    "pl_eu",
			Quantity:       &typev1.Quantity{Value: "6", Unit: "CASE"},
			PricedQuantity: &typev1.Quantity{Value: "72", Unit: "EA"},
			UnitPrice:      &typev1.Money{CurrencyCode: "EUR", Amount: "1.2345"},
			LineTotal:      &typev1.Money{CurrencyCode: "EUR", Amount: "88.88"},
		})
	}
	return resp
}

// TestCodecRoundTrip: the generated methods write what the standard codec
// reads and read what it writes, small answers and pooled large ones.
func TestCodecRoundTrip(t *testing.T) {
	client := encoding.GetCodecV2("proto")
	if _, ok := client.(codec); !ok {
		t.Fatalf("the registered proto codec is %T, want Millrace's", client)
	}
	for _, n := range []int{0, 1, 10, 200} {
		want := pricedAnswer(n)
		data, err := client.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		std, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if data.Len() != len(std) {
			t.Errorf("%d lines: %d bytes, the standard codec writes %d", n, data.Len(), len(std))
		}
		viaStd := &productpricingv1.SimulatePricesResponse{}
		if err := proto.Unmarshal(data.Materialize(), viaStd); err != nil || !proto.Equal(viaStd, want) {
			t.Fatalf("%d lines: the standard decoder read %v, %v", n, viaStd, err)
		}
		for _, c := range []encoding.CodecV2{client, ServerCodec} {
			// A target with content of its own: it is replaced, not merged into.
			got := pricedAnswer(3)
			got.Lines[0].Sku = "LEFTOVER"
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(std)}, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%d lines, checked=%v: read %v", n, c.(codec).checked, got)
			}
		}
		data.Free()
	}
}

// TestCodecFallsBack: messages without generated methods go through the
// standard codec.
func TestCodecFallsBack(t *testing.T) {
	c := encoding.GetCodecV2("proto")
	in := &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}
	data, err := c.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := &healthpb.HealthCheckResponse{}
	if err := c.Unmarshal(data, out); err != nil || !proto.Equal(in, out) {
		t.Fatalf("health answer %v, %v", out, err)
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("a non-message was marshalled")
	}
}

// TestServerCodecChecksUTF8: a request whose string field is not UTF-8 is
// refused by the server's decoder; only answers, which Millrace encoded
// itself, are read without the check.
func TestServerCodecChecksUTF8(t *testing.T) {
	bad := &productpricingv1.SimulatePricesRequest{CustomerId: "cus_\xff\xfe", CurrencyCode: "EUR"}
	data, err := encoding.GetCodecV2("proto").Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	err = ServerCodec.Unmarshal(data, &productpricingv1.SimulatePricesRequest{})
	if err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("the server read a request with a string that is not UTF-8: %v", err)
	}
}

// BenchmarkCodec compares Millrace's codec with grpc's standard one on a
// ten-line price simulation answer (go test -bench Codec ./internal/platform).
func BenchmarkCodec(b *testing.B) {
	ours, std := encoding.GetCodecV2("proto"), ServerCodec.(codec).std
	answer := pricedAnswer(10)
	wire, err := proto.Marshal(answer)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"standard", std}, {"millrace", ours}} {
		b.Run(c.name+"/marshal", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := c.codec.Marshal(answer)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
		b.Run(c.name+"/unmarshal", func(b *testing.B) {
			b.ReportAllocs()
			in := mem.BufferSlice{mem.SliceBuffer(wire)}
			for b.Loop() {
				if err := c.codec.Unmarshal(in, &productpricingv1.SimulatePricesResponse{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
