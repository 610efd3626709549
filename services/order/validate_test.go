package order

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
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

// TestApplyReservationAllocations checks what an order line shows of its
// hard reservation: one allocation per site, the first site, the latest
// promise and the base quantity reserved, with allocations of an earlier
// reservation replaced.
func TestApplyReservationAllocations(t *testing.T) {
	d1 := timestamppb.New(time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
	d2 := timestamppb.New(time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC))
	lines := []*orderv1.OrderLine{
		{Sku: "VALVE-100", Quantity: &typev1.Quantity{Value: "15", Unit: "EA"},
			Allocations: []*orderv1.LineAllocation{{SiteId: "stale"}}},
		{Sku: "GASKET-7", Quantity: &typev1.Quantity{Value: "1", Unit: "CASE"}},
	}
	r := &fulfillmentv1.Reservation{Lines: []*fulfillmentv1.ReservedLine{
		{LineIndex: 0, SiteId: "plant-lyon", Quantity: &typev1.Quantity{Value: "10", Unit: "EA"}, PromisedTime: d1},
		{LineIndex: 0, SiteId: "wh-rotterdam", Quantity: &typev1.Quantity{Value: "5", Unit: "EA"}, PromisedTime: d2},
		{LineIndex: 1, SiteId: "plant-lyon", Quantity: &typev1.Quantity{Value: "12", Unit: "EA"}, PromisedTime: d1},
	}}
	base := applyReservation(lines, r, nil)

	split := lines[0]
	if n := len(split.GetAllocations()); n != 2 {
		t.Fatalf("split line has %d allocations, want 2: %v", n, split.GetAllocations())
	}
	if a := split.GetAllocations()[1]; a.GetSiteId() != "wh-rotterdam" || a.GetQuantity().GetValue() != "5" || !a.GetPromisedTime().AsTime().Equal(d2.AsTime()) {
		t.Errorf("second allocation %v", a)
	}
	if split.GetSiteId() != "plant-lyon" || !split.GetPromisedTime().AsTime().Equal(d2.AsTime()) {
		t.Errorf("split line shows site %s, promise %v; want the first site and the latest promise", split.GetSiteId(), split.GetPromisedTime())
	}
	if got := lines[1].GetAllocations(); len(got) != 1 || got[0].GetQuantity().GetValue() != "12" || got[0].GetQuantity().GetUnit() != "EA" {
		t.Errorf("whole line allocations %v", got)
	}
	if base[0].Value != "15" || base[1].Value != "12" {
		t.Errorf("base quantities %v", base)
	}
}
