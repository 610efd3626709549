package pbjson_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/pbjson"
)

// simulation returns a ten-line POST /v1/prices:simulate request and the
// response Millrace answers it with.
func simulation() (*productpricingv1.SimulatePricesRequest, *productpricingv1.SimulatePricesResponse) {
	at := timestamppb.New(time.Date(2026, 11, 29, 8, 30, 0, 0, time.UTC))
	req := &productpricingv1.SimulatePricesRequest{CustomerId: "cus_01JF3Z6Q4C8W8N3T9A0E2K5R7B", CurrencyCode: "EUR", PriceTime: at}
	resp := &productpricingv1.SimulatePricesResponse{Total: &typev1.Money{CurrencyCode: "EUR", Amount: "18231.40"}, PriceTime: at}
	for i := range 10 {
		sku := fmt.Sprintf("VALVE-%d00", i+1)
		qty := &typev1.Quantity{Value: fmt.Sprint(12 * (i + 1)), Unit: "CASE"}
		req.Lines = append(req.Lines, &productpricingv1.SimulationLine{Sku: sku, Quantity: qty})
		resp.Lines = append(resp.Lines, &productpricingv1.PricedLine{
			Index:                   int32(i),
			Sku:                     sku,
			Quantity:                qty,
			Status:                  productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED,
			PriceListId:             "prl_01JF3Z6Q4C8W8N3T9A0E2K5R7B",
			PriceListScope:          "CUSTOMER",
			PricedQuantity:          &typev1.Quantity{Value: fmt.Sprint(144 * (i + 1)), Unit: "EA"},
			AppliedBreakMinQuantity: "100",
			UnitPrice:               &typev1.Money{CurrencyCode: "EUR", Amount: "12.650000"},
			LineTotal:               &typev1.Money{CurrencyCode: "EUR", Amount: fmt.Sprintf("%d.60", 1821*(i+1))},
		})
	}
	return req, resp
}

// BenchmarkSimulate compares the codec with protojson on the body of a
// ten-line price simulation. Each codec sub-benchmark reports its speed-up
// over protojson measured just before it in the same run (x-protojson).
func BenchmarkSimulate(b *testing.B) {
	req, resp := simulation()
	for _, c := range []struct {
		name string
		msg  interface {
			proto.Message
			pbjson.Marshaler
			pbjson.Unmarshaler
		}
		fresh func() proto.Message
	}{
		{"request", req, func() proto.Message { return new(productpricingv1.SimulatePricesRequest) }},
		{"response", resp, func() proto.Message { return new(productpricingv1.SimulatePricesResponse) }},
	} {
		data, err := protojson.Marshal(c.msg)
		if err != nil {
			b.Fatal(err)
		}
		var ceiling float64 // protojson's ns/op, measured first
		b.Run(c.name+"/marshal/protojson", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := protojson.Marshal(c.msg); err != nil {
					b.Fatal(err)
				}
			}
			ceiling = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
		b.Run(c.name+"/marshal/pbjson", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pbjson.Marshal(c.msg); err != nil {
					b.Fatal(err)
				}
			}
			reportSpeedup(b, ceiling)
		})
		b.Run(c.name+"/unmarshal/protojson", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := protojson.Unmarshal(data, c.fresh()); err != nil {
					b.Fatal(err)
				}
			}
			ceiling = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
		b.Run(c.name+"/unmarshal/pbjson", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := pbjson.Unmarshal(data, c.fresh().(pbjson.Unmarshaler)); err != nil {
					b.Fatal(err)
				}
			}
			reportSpeedup(b, ceiling)
		})
	}
}

func reportSpeedup(b *testing.B, ceiling float64) {
	if ceiling > 0 && b.N > 0 {
		b.ReportMetric(ceiling/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "x-protojson")
	}
}
