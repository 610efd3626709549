package fulfillment

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/reqctx"
)

// TestKeyedRetryAfterLostAnswer covers a crash between the commit of a
// keyed AdjustInventory or CreateSupplyPlan and the platform storing its
// answer: what the first attempt did is attached to the key's claim in its
// own commit, so the retry answers with it and never applies the stock
// change or creates the plan twice.
func TestKeyedRetryAfterLostAnswer(t *testing.T) {
	f := newFixture(t)
	f.site("plant-lyon", "eu")
	st := idempotency.NewStore(f.db, idempotency.Options{})
	hash := []byte("sha256 of the request")
	// attempt claims the key as the platform does and runs fn with the
	// claim; the answer is never stored (the process dies).
	attempt := func(scope, key string, fn func(ctx context.Context) error) {
		t.Helper()
		out, err := st.Begin(scope, key, hash)
		if err != nil {
			t.Fatal(err)
		}
		started, ok := out.(idempotency.Started)
		if !ok {
			t.Fatalf("begin %s: %#v", key, out)
		}
		if err := fn(reqctx.WithIdempotency(f.ctx, reqctx.Idempotency{Scope: scope, Key: key, Created: started.Resource})); err != nil {
			t.Fatal(err)
		}
	}
	crash := func() {
		t.Helper()
		if _, err := st.ReleaseAbandoned(); err != nil {
			t.Fatal(err)
		}
	}

	adjust := &fulfillmentv1.AdjustInventoryRequest{SiteId: "plant-lyon", Sku: "VALVE-100", Delta: "12", Unit: "EA",
		Reason: fulfillmentv1.LedgerReason_LEDGER_REASON_PRODUCTION_RECEIPT}
	var first, again *fulfillmentv1.AdjustInventoryResponse
	attempt("key_erp|AdjustInventory", "adj-1", func(ctx context.Context) (err error) {
		first, err = f.core().adjustInventory(ctx, f.p, adjust)
		return err
	})
	crash()
	attempt("key_erp|AdjustInventory", "adj-1", func(ctx context.Context) (err error) {
		again, err = f.core().adjustInventory(ctx, f.p, adjust)
		return err
	})
	if again.GetLedgerEntryId() != first.GetLedgerEntryId() {
		t.Errorf("ledger entry %s on retry, %s first", again.GetLedgerEntryId(), first.GetLedgerEntryId())
	}
	if got := again.GetBalance().GetOnHand().GetValue(); got != "12" {
		t.Errorf("on hand %s after the retry, want 12 (applied once)", got)
	}

	plan := &fulfillmentv1.SupplyPlan{SiteId: "plant-lyon", Sku: "VALVE-100", Quantity: &typev1.Quantity{Value: "40", Unit: "EA"},
		DueTime: timestamppb.New(t0.Add(72 * time.Hour))}
	var p1, p2 *fulfillmentv1.SupplyPlan
	attempt("key_erp|CreateSupplyPlan", "plan-1", func(ctx context.Context) (err error) {
		p1, err = f.core().createSupplyPlan(ctx, f.p, plan)
		return err
	})
	crash()
	attempt("key_erp|CreateSupplyPlan", "plan-1", func(ctx context.Context) (err error) {
		p2, err = f.core().createSupplyPlan(ctx, f.p, plan)
		return err
	})
	if p2.GetId() != p1.GetId() {
		t.Errorf("plan %s on retry, %s first", p2.GetId(), p1.GetId())
	}
	// A shipment: the retry answers with the first one, not a second
	// shipment of the same goods.
	f.orders.put("ord_1", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "EA", "2"})
	f.hardReserve("ord_1", "eu", line("VALVE-100", "4", "EA"))
	ship := &fulfillmentv1.Shipment{OrderId: "ord_1", SiteId: "plant-lyon", Lines: []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "2", "EA")}}
	var s1, s2 *fulfillmentv1.Shipment
	attempt("key_erp|CreateShipment", "ship-1", func(ctx context.Context) (err error) {
		s1, err = f.core().createShipment(ctx, f.p, ship)
		return err
	})
	crash()
	attempt("key_erp|CreateShipment", "ship-1", func(ctx context.Context) (err error) {
		s2, err = f.core().createShipment(ctx, f.p, ship)
		return err
	})
	if s2.GetId() != s1.GetId() {
		t.Errorf("shipment %s on retry, %s first", s2.GetId(), s1.GetId())
	}
	shipments, err := f.core().listShipments(f.ctx, f.p, &fulfillmentv1.ListShipmentsRequest{OrderId: "ord_1"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(shipments.GetShipments()); n != 1 {
		t.Errorf("%d shipments stored, want 1", n)
	}

	plans, err := f.core().listSupplyPlans(f.ctx, f.p, &fulfillmentv1.ListSupplyPlansRequest{SiteId: "plant-lyon"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(plans.GetSupplyPlans()); n != 1 {
		t.Errorf("%d plans stored, want 1", n)
	}
}

// TestKeyedReturnRetryAfterLostAnswer: the retry of a keyed return after a
// crash answers with the return the first attempt authorized, rather than
// authorizing the goods a second time.
func TestKeyedReturnRetryAfterLostAnswer(t *testing.T) {
	f := shippedOrder(t)
	st := idempotency.NewStore(f.db, idempotency.Options{})
	const scope = "key_erp|CreateReturn"
	req := &fulfillmentv1.Return{OrderId: "ord_1", Reason: "damaged in transit",
		Lines: []*fulfillmentv1.ReturnLine{{OrderLineIndex: 0, Sku: "VALVE-100", Quantity: &typev1.Quantity{Value: "6", Unit: "EA"}}}}
	create := func() *fulfillmentv1.Return {
		t.Helper()
		out, err := st.Begin(scope, "ret-1", []byte("sha256 of the request"))
		if err != nil {
			t.Fatal(err)
		}
		started, ok := out.(idempotency.Started)
		if !ok {
			t.Fatalf("begin: %#v", out)
		}
		r, err := f.core().createReturn(reqctx.WithIdempotency(f.ctx, reqctx.Idempotency{Scope: scope, Key: "ret-1", Created: started.Resource}), f.p, req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := create()
	if _, err := st.ReleaseAbandoned(); err != nil {
		t.Fatal(err)
	}
	if again := create(); again.GetId() != first.GetId() {
		t.Errorf("return %s on retry, %s first", again.GetId(), first.GetId())
	}
	list, err := f.core().listReturns(f.ctx, f.p, &fulfillmentv1.ListReturnsRequest{OrderId: "ord_1"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetReturns()); n != 1 {
		t.Errorf("%d returns stored, want 1", n)
	}
}
