package productpricing

import (
	"context"
	"testing"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/demo"
)

// TestDemoData loads the demo catalogue through the real service twice
// (the second run must change nothing) and prices a basket with it.
func TestDemoData(t *testing.T) {
	gold := CustomerFacts{ID: "cus_RHEIN", Region: "eu", Tier: "gold"}
	na := CustomerFacts{ID: "cus_LAKES", Region: "na"}
	env := startServer(t, newDirectory(gold, na))
	ctx := context.Background()
	customers := []*customerv1.Customer{
		{Id: na.ID, DisplayName: "Great Lakes Fabrication", Region: "na"},
		{Id: gold.ID, DisplayName: "Rheinwerk Group", Region: "eu", Tier: "gold"},
	}
	if err := demo.LoadProductsAndPrices(ctx, env.client, customers); err != nil {
		t.Fatal(err)
	}
	events := len(outbox(t, env.db))
	if err := demo.LoadProductsAndPrices(ctx, env.client, customers); err != nil {
		t.Fatalf("second load: %v", err)
	}
	if again := len(outbox(t, env.db)); again != events {
		t.Errorf("second load emitted %d events", again-events)
	}
	lists, err := env.client.ListPriceLists(ctx, &productpricingv1.ListPriceListsRequest{})
	if err != nil || len(lists.GetPriceLists()) != 5 {
		t.Fatalf("%d price lists, want 5 (%v)", len(lists.GetPriceLists()), err)
	}
	if skus := demo.ProductSKUs(); len(skus) != 8 {
		t.Errorf("ProductSKUs = %v", skus)
	}

	tests := []struct {
		name     string
		customer string
		currency string
		lines    []*productpricingv1.SimulationLine
		scopes   []string // per line: scope, or the reason it has no price
	}{
		{"gold EU account", gold.ID, "EUR", []*productpricingv1.SimulationLine{
			line("VALVE-BV25", "2", "CASE"), line("RESIN-PP-H", "40", "BAG"), line("FIT-ELB25", "2", "CASE"),
			line("PUMP-CP200", "1", "EA"), line("VALVE-BV25-G1", "1", "EA"),
		}, []string{ScopeCustomer, ScopeCustomer, ScopeRegion, ScopeTierRegion, ReasonDiscontinued}},
		{"NA account in dollars and pounds", na.ID, "USD", []*productpricingv1.SimulationLine{
			line("RESIN-HDPE", "2000", "LB"), line("VALVE-GV50", "1", "PALLET"), line("PUMP-DP40", "3", "EA"),
		}, []string{ScopeRegion, ScopeRegion, ScopeRegion}},
		{"EU account buying in dollars gets the global list", gold.ID, "USD", []*productpricingv1.SimulationLine{
			line("PUMP-DP40", "1", "EA"),
		}, []string{ScopeGlobal}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := env.client.SimulatePrices(ctx, &productpricingv1.SimulatePricesRequest{CustomerId: tt.customer, CurrencyCode: tt.currency, Lines: tt.lines})
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range resp.GetLines() {
				got := l.GetPriceListScope()
				if l.GetStatus() != productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED {
					got = l.GetReason()
				}
				if got != tt.scopes[i] {
					t.Errorf("line %d (%s): %s, want %s", i, l.GetSku(), got, tt.scopes[i])
				}
			}
			t.Logf("total %s %s", resp.GetTotal().GetAmount(), resp.GetTotal().GetCurrencyCode())
		})
	}
}
