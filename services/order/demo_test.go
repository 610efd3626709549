package order

import (
	"testing"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/demo"
)

// TestDemoLoadOrders runs the demo loader against the service (peers are the
// fakes) twice: the first run leaves quotes and orders in every state the
// demo promises, the second changes nothing.
func TestDemoLoadOrders(t *testing.T) {
	h := newHarness(t)
	eur := func(a string) *typev1.Money { return &typev1.Money{CurrencyCode: "EUR", Amount: a} }
	customers := []*customerv1.Customer{
		{Id: "cus_PARENT", Region: "eu", CurrencyCode: "EUR", CreditLimit: eur("500000.00")},
		{Id: "cus_ACME", ParentId: "cus_PARENT", Region: "eu", CurrencyCode: "EUR"},
		{Id: "cus_SMALL", Region: "eu", CurrencyCode: "EUR", CreditLimit: eur("100.00")},
	}
	// OLD-1 is discontinued and RESIN-X unknown: the loader leaves them out.
	skus := []string{"GASKET-7", "OLD-1", "PUMP-200", "RESIN-X", "VALVE-100"}

	for run := range 2 {
		if err := demo.LoadOrders(erp, h.client, customers, skus, nil); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		quotes, err := h.client.ListQuotes(erp, &orderv1.ListQuotesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		qs := map[orderv1.QuoteStatus]int{}
		for _, q := range quotes.GetQuotes() {
			qs[q.GetStatus()]++
			if q.GetExternalRef().GetSystem() != "salesforce" {
				t.Errorf("quote %s has no CRM reference", q.GetId())
			}
		}
		want := map[orderv1.QuoteStatus]int{quoteDraft: 1, quoteApproved: 1, quoteConverted: 1}
		if len(qs) != len(want) || qs[quoteDraft] != 1 || qs[quoteApproved] != 1 || qs[quoteConverted] != 1 {
			t.Errorf("run %d: quotes by status %v, want %v", run, qs, want)
		}
		orders, err := h.client.ListOrders(erp, &orderv1.ListOrdersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var accepted, declined int
		for _, o := range orders.GetOrders() {
			switch {
			case o.GetStatus() == statusAccepted:
				accepted++
			case o.GetStatus() == statusOnHold && o.GetHoldReason() == holdCreditDeclined:
				declined++
			default:
				t.Errorf("order %s is %s/%s", o.GetId(), o.GetStatus(), o.GetHoldReason())
			}
		}
		if len(orders.GetOrders()) != 3 || accepted != 2 || declined != 1 {
			t.Errorf("run %d: %d orders, %d accepted, %d on credit hold; want 3, 2, 1", run, len(orders.GetOrders()), accepted, declined)
		}
	}
}
