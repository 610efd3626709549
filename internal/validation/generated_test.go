package validation

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/pbvalidate"
)

func simulation(lines int) *productpricingv1.SimulatePricesRequest {
	req := &productpricingv1.SimulatePricesRequest{CustomerId: "cus_01JF3Z6Q4C8W8N3T9A0E2K5R7B", CurrencyCode: "EUR"}
	for i := range lines {
		req.Lines = append(req.Lines, &productpricingv1.SimulationLine{
			Sku:      fmt.Sprintf("VALVE-%d00", i+1),
			Quantity: &typev1.Quantity{Value: fmt.Sprint(12 * (i + 1)), Unit: "CASE"},
		})
	}
	return req
}

// TestGeneratedAnswersAsProtovalidate checks that a request checked by its
// generated validator is answered exactly as protovalidate's answer: code,
// message, field violations and error info.
func TestGeneratedAnswersAsProtovalidate(t *testing.T) {
	badLines := simulation(3)
	badLines.Lines[1].Sku = strings.Repeat("日", 65)
	badLines.Lines[2].Quantity = &typev1.Quantity{Value: "1.0000001", Unit: "case"}
	badLines.Lines[0].Quantity = nil
	tests := []struct {
		name   string
		prefix string
		msg    proto.Message
		valid  bool
	}{
		{"valid simulation", "", simulation(10), true},
		{"empty simulation", "", &productpricingv1.SimulatePricesRequest{}, false},
		{"invalid lines", "", badLines, false},
		{"too many lines", "", simulation(201), false},
		{"batch item", "items[3]", &customerv1.UpsertCustomerByExternalRefRequest{
			ExternalRef: &typev1.ExternalRef{System: "Salesforce", Id: ""},
			Customer:    &customerv1.Customer{DisplayName: "x", Region: "eu", Email: "nope"},
		}, false},
		{"update without a mask", "", &customerv1.UpdateCustomerRequest{Customer: &customerv1.Customer{Id: "x"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := tt.msg.(pbvalidate.Validator); !ok {
				t.Fatalf("%T has no generated validator", tt.msg)
			}
			got, want := CheckAt(tt.prefix, tt.msg), checkProtovalidate(tt.prefix, tt.msg)
			if (want == nil) != tt.valid {
				t.Fatalf("protovalidate: %v", want)
			}
			if !proto.Equal(status.Convert(got).Proto(), status.Convert(want).Proto()) {
				t.Fatalf("generated: %v\nprotovalidate: %v", status.Convert(got).Proto(), status.Convert(want).Proto())
			}
		})
	}
}

// BenchmarkCheckSimulate measures validation of a ten-line price
// simulation as the interceptor runs it; "generated" reports its speed-up
// over protovalidate measured just before it (x-protovalidate).
func BenchmarkCheckSimulate(b *testing.B) {
	req := simulation(10)
	var ceiling float64
	b.Run("protovalidate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := checkProtovalidate("", req); err != nil {
				b.Fatal(err)
			}
		}
		ceiling = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("generated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := Check(req); err != nil {
				b.Fatal(err)
			}
		}
		if ceiling > 0 && b.N > 0 {
			b.ReportMetric(ceiling/(float64(b.Elapsed().Nanoseconds())/float64(b.N)), "x-protovalidate")
		}
	})
}
