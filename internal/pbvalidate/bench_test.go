package pbvalidate_test

import (
	"fmt"
	"testing"

	"buf.build/go/protovalidate"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/pbvalidate"
)

func simulation() *productpricingv1.SimulatePricesRequest {
	req := &productpricingv1.SimulatePricesRequest{CustomerId: "cus_01JF3Z6Q4C8W8N3T9A0E2K5R7B", CurrencyCode: "EUR"}
	for i := range 10 {
		req.Lines = append(req.Lines, &productpricingv1.SimulationLine{
			Sku:      fmt.Sprintf("VALVE-%d00", i+1),
			Quantity: &typev1.Quantity{Value: fmt.Sprint(12 * (i + 1)), Unit: "CASE"},
		})
	}
	return req
}

// BenchmarkSimulate compares the generated validator with protovalidate on
// a valid ten-line price simulation request; the generated sub-benchmark
// reports its speed-up over protovalidate measured just before it in the
// same run (x-protovalidate).
func BenchmarkSimulate(b *testing.B) {
	req := simulation()
	v, err := protovalidate.New()
	if err != nil {
		b.Fatal(err)
	}
	if err := v.Validate(req); err != nil {
		b.Fatal(err)
	}
	var ceiling float64
	b.Run("protovalidate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := v.Validate(req); err != nil {
				b.Fatal(err)
			}
		}
		ceiling = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("generated", func(b *testing.B) {
		b.ReportAllocs()
		var vs pbvalidate.Violations
		for b.Loop() {
			vs.Reset()
			req.ValidateRules(&vs)
			if len(vs.List) != 0 {
				b.Fatal(vs.List)
			}
		}
		if ceiling > 0 && b.N > 0 {
			b.ReportMetric(ceiling/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "x-protovalidate")
		}
	})
}
