package order

import (
	"testing"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

func TestPricePerOrderedUnit(t *testing.T) {
	tests := []struct {
		name            string
		price           string // per the entry's unit
		priced, ordered *typev1.Quantity
		want            string
	}{
		{"same unit", "104.50", &typev1.Quantity{Value: "4", Unit: "BOX"}, &typev1.Quantity{Value: "4", Unit: "BOX"}, "104.50"},
		{"no priced quantity reported", "104.50", nil, &typev1.Quantity{Value: "4", Unit: "EA"}, "104.50"},
		{"each from a box of 25", "104.50", &typev1.Quantity{Value: "0.16", Unit: "BOX"}, &typev1.Quantity{Value: "4", Unit: "EA"}, "4.18"},
		{"each from a box of 20, padded to cents", "126", &typev1.Quantity{Value: "0.1", Unit: "BOX"}, &typev1.Quantity{Value: "2", Unit: "EA"}, "6.30"},
		{"pounds from kilograms, finer than cents", "1.865", &typev1.Quantity{Value: "0.45359237", Unit: "KG"}, &typev1.Quantity{Value: "1", Unit: "LB"}, "0.84595"},
		{"a third, rounded to six digits", "10.00", &typev1.Quantity{Value: "1", Unit: "BOX"}, &typev1.Quantity{Value: "3", Unit: "EA"}, "3.333333"},
		{"cases from eaches", "2.50", &typev1.Quantity{Value: "24", Unit: "EA"}, &typev1.Quantity{Value: "2", Unit: "CASE"}, "30.00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := &productpricingv1.PricedLine{UnitPrice: &typev1.Money{CurrencyCode: "EUR", Amount: tt.price}, PricedQuantity: tt.priced}
			got, err := pricePerOrderedUnit(pl, tt.ordered, "EUR")
			if err != nil {
				t.Fatal(err)
			}
			if got.GetAmount() != tt.want || got.GetCurrencyCode() != "EUR" {
				t.Errorf("got %v, want %s", got, tt.want)
			}
		})
	}
}
