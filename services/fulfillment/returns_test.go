package fulfillment

import (
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/apierr"
)

// shippedOrder ships ord_1 in full: line 0 is 2 CASE of VALVE-100 at
// 10 EUR a case (24 EA shipped), line 1 is 10 KG of RESIN-5 at 3.333 EUR
// a kilogram. ord_2 is reserved but not shipped.
func shippedOrder(t *testing.T) *fixture {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "30", "EA")
	f.receive("plant-lyon", "RESIN-5", "20", "KG")
	f.orders.put("ord_1", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "CASE", "10"}, [3]string{"RESIN-5", "KG", "3.333"})
	f.orders.put("ord_2", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "EA", "1"})
	f.hardReserve("ord_1", "eu", line("VALVE-100", "2", "CASE"), line("RESIN-5", "10", "KG"))
	f.hardReserve("ord_2", "eu", line("VALVE-100", "1", "EA"))
	f.ship("ord_1", "plant-lyon", sline(0, "VALVE-100", "24", "EA"), sline(1, "RESIN-5", "10", "KG"))
	return f
}

func (f *fixture) createReturn(order string, lines ...*fulfillmentv1.ShipmentLine) (*fulfillmentv1.Return, error) {
	r := &fulfillmentv1.Return{OrderId: order, Reason: "damaged in transit"}
	for _, l := range lines {
		r.Lines = append(r.Lines, &fulfillmentv1.ReturnLine{OrderLineIndex: l.GetOrderLineIndex(), Sku: l.GetSku(), Quantity: l.GetQuantity()})
	}
	return f.core().createReturn(f.ctx, f.p, r)
}

// Returns never exceed what shipped minus what earlier returns took.
func TestReturnLimits(t *testing.T) {
	f := shippedOrder(t)
	steps := []struct {
		name   string
		order  string
		lines  []*fulfillmentv1.ShipmentLine
		code   codes.Code
		reason string
		field  string
	}{
		{"half of a line", "ord_1", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "12", "EA")}, codes.OK, "", ""},
		{"more than the rest", "ord_1", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "13", "EA")},
			codes.FailedPrecondition, ReasonExceedsShipped, "return.lines[0].quantity"},
		{"exactly the rest, in another unit", "ord_1", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "1", "CASE")}, codes.OK, "", ""},
		{"one more", "ord_1", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "1", "EA")},
			codes.FailedPrecondition, ReasonExceedsShipped, "return.lines[0].quantity"},
		{"a good line and a bad one write nothing", "ord_1", []*fulfillmentv1.ShipmentLine{sline(1, "RESIN-5", "1", "KG"), sline(0, "VALVE-100", "1", "EA")},
			codes.FailedPrecondition, ReasonExceedsShipped, "return.lines[1].quantity"},
		{"another SKU than the line's", "ord_1", []*fulfillmentv1.ShipmentLine{sline(1, "VALVE-100", "1", "EA")},
			codes.InvalidArgument, ReasonOrderMismatch, "return.lines[0].sku"},
		{"a line that never shipped", "ord_1", []*fulfillmentv1.ShipmentLine{sline(5, "VALVE-100", "1", "EA")},
			codes.FailedPrecondition, ReasonNothingShipped, "return.lines[0].order_line_index"},
		{"an order that never shipped", "ord_2", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "1", "EA")},
			codes.FailedPrecondition, ReasonNothingShipped, "return.lines[0].order_line_index"},
		{"a fraction of an each", "ord_1", []*fulfillmentv1.ShipmentLine{sline(1, "RESIN-5", "0.5", "BAG")},
			codes.InvalidArgument, LineNotConvertible, "return.lines[0].quantity.value"},
		{"part of the resin", "ord_1", []*fulfillmentv1.ShipmentLine{sline(1, "RESIN-5", "2.5", "KG")}, codes.OK, "", ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			n := len(f.outbox())
			before := f.snapshot()
			r, err := f.createReturn(st.order, st.lines...)
			if st.code != codes.OK {
				wantErr(t, domainErr(err), st.code, st.reason, st.field)
				f.assertUnchanged(before)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.GetStatus() != fulfillmentv1.ReturnStatus_RETURN_STATUS_AUTHORIZED || r.GetLines()[0].GetQuantity().GetUnit() != baseUnitOf(st.lines[0].GetSku()) {
				t.Errorf("return %v", r)
			}
			evs := f.eventsSince(n)
			if len(evs) != 1 || evs[0].GetType() != "millrace.events.v1.ReturnAuthorized" || evs[0].GetSubject() != "returns/"+r.GetId() {
				t.Errorf("events %v", evs)
			}
		})
	}
}

func baseUnitOf(sku string) string {
	if sku == "RESIN-5" {
		return "KG"
	}
	return "EA"
}

func TestReceiveReturnCreditMemo(t *testing.T) {
	tests := []struct {
		name        string
		lines       []*fulfillmentv1.ShipmentLine
		disposition fulfillmentv1.Disposition
		amount      string
		onHand      [2]string // VALVE-100 and RESIN-5 at wh-rotterdam after receipt
		events      []string
	}{
		{
			name:  "restocked cases are credited at the case price plus tax",
			lines: []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "12", "EA")}, disposition: fulfillmentv1.Disposition_DISPOSITION_RESTOCK,
			amount: "12.00", onHand: [2]string{"12", ""},
			events: []string{"millrace.events.v1.InventoryChanged", "millrace.events.v1.ReturnReceived", "millrace.events.v1.CreditMemoIssued"},
		},
		{
			// 2.5 × 3.333 = 8.3325 → 8.33; tax 1.666 → 1.67.
			name:  "scrapped resin is credited and stays off stock",
			lines: []*fulfillmentv1.ShipmentLine{sline(1, "RESIN-5", "2500", "G")}, disposition: fulfillmentv1.Disposition_DISPOSITION_SCRAP,
			amount: "10.00", onHand: [2]string{"", ""},
			events: []string{"millrace.events.v1.ReturnReceived", "millrace.events.v1.CreditMemoIssued"},
		},
		{
			// 1 CASE at 10 + 1 KG at 3.333 → 13.33; tax 2.666 → 2.67.
			name:  "two lines are taxed once on their total",
			lines: []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "12", "EA"), sline(1, "RESIN-5", "1", "KG")}, disposition: fulfillmentv1.Disposition_DISPOSITION_RESTOCK,
			amount: "16.00", onHand: [2]string{"12", "1"},
			events: []string{"millrace.events.v1.InventoryChanged", "millrace.events.v1.InventoryChanged", "millrace.events.v1.ReturnReceived", "millrace.events.v1.CreditMemoIssued"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := shippedOrder(t)
			r, err := f.createReturn("ord_1", tt.lines...)
			if err != nil {
				t.Fatal(err)
			}
			n := len(f.outbox())
			got, err := f.core().receiveReturn(f.ctx, f.p, &fulfillmentv1.ReceiveReturnRequest{Id: r.GetId(), SiteId: "wh-rotterdam", Disposition: tt.disposition})
			if err != nil {
				t.Fatal(err)
			}
			m := got.GetCreditMemo()
			if got.GetStatus() != fulfillmentv1.ReturnStatus_RETURN_STATUS_RECEIVED || got.GetReceivedSiteId() != "wh-rotterdam" || got.GetDisposition() != tt.disposition ||
				m.GetAmount().GetAmount() != tt.amount || m.GetAmount().GetCurrencyCode() != "EUR" || m.GetCustomerId() != "cus_1" || m.GetReturnId() != r.GetId() {
				t.Errorf("received %v, want a credit memo of %s EUR", got, tt.amount)
			}
			if b := [2]string{f.balance("wh-rotterdam", "VALVE-100")[0], f.balance("wh-rotterdam", "RESIN-5")[0]}; b != tt.onHand {
				t.Errorf("on hand at the receiving site %v, want %v", b, tt.onHand)
			}
			evs := f.eventsSince(n)
			if got := eventTypes(evs); !slices.Equal(got, tt.events) {
				t.Fatalf("events %v, want %v", got, tt.events)
			}
			cm := unpack[*eventsv1.CreditMemoIssued](t, evs[len(evs)-1]).GetCreditMemo()
			if cm.GetId() != m.GetId() || cm.GetAmount().GetAmount() != tt.amount {
				t.Errorf("CreditMemoIssued %v", cm)
			}
			for _, e := range evs {
				if e.GetType() == "millrace.events.v1.InventoryChanged" && unpack[*eventsv1.InventoryChanged](t, e).GetReason() != fulfillmentv1.LedgerReason_LEDGER_REASON_RETURN {
					t.Errorf("InventoryChanged reason %v", e)
				}
			}

			t.Run("receiving again the same way is a no-op", func(t *testing.T) {
				before := f.snapshot()
				again, err := f.core().receiveReturn(f.ctx, f.p, &fulfillmentv1.ReceiveReturnRequest{Id: r.GetId(), SiteId: "wh-rotterdam", Disposition: tt.disposition})
				if err != nil || again.GetCreditMemo().GetId() != m.GetId() {
					t.Errorf("again = %v, %v", again, err)
				}
				f.assertUnchanged(before)
			})
			t.Run("receiving again another way is refused", func(t *testing.T) {
				before := f.snapshot()
				_, err := f.core().receiveReturn(f.ctx, f.p, &fulfillmentv1.ReceiveReturnRequest{Id: r.GetId(), SiteId: "plant-lyon", Disposition: tt.disposition})
				wantErr(t, domainErr(err), codes.FailedPrecondition, ReasonReturnReceived, "id")
				f.assertUnchanged(before)
			})
		})
	}
}

func TestReceiveReturnFailures(t *testing.T) {
	f := shippedOrder(t)
	r, err := f.createReturn("ord_1", sline(0, "VALVE-100", "1", "EA"))
	if err != nil {
		t.Fatal(err)
	}
	naKey := erpKey
	naKey.Region = "na"
	tests := []struct {
		name   string
		req    *fulfillmentv1.ReceiveReturnRequest
		scoped bool
		code   codes.Code
		reason string
		field  string
	}{
		{"an unknown site", &fulfillmentv1.ReceiveReturnRequest{Id: r.GetId(), SiteId: "plant-x", Disposition: fulfillmentv1.Disposition_DISPOSITION_RESTOCK},
			false, codes.NotFound, apierr.ReasonNotFound, ""},
		{"an unknown return", &fulfillmentv1.ReceiveReturnRequest{Id: "rma_x", SiteId: "plant-lyon", Disposition: fulfillmentv1.Disposition_DISPOSITION_RESTOCK},
			false, codes.NotFound, apierr.ReasonNotFound, ""},
		{"another region's return", &fulfillmentv1.ReceiveReturnRequest{Id: r.GetId(), SiteId: "plant-ohio", Disposition: fulfillmentv1.Disposition_DISPOSITION_RESTOCK},
			true, codes.NotFound, apierr.ReasonNotFound, ""},
		{"no disposition", &fulfillmentv1.ReceiveReturnRequest{Id: r.GetId(), SiteId: "plant-lyon"},
			false, codes.InvalidArgument, apierr.ReasonInvalidArgument, "disposition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := erpKey
			if tt.scoped {
				p = naKey
			}
			before := f.snapshot()
			_, err := f.core().receiveReturn(f.ctx, p, tt.req)
			wantErr(t, domainErr(err), tt.code, tt.reason, tt.field)
			f.assertUnchanged(before)
		})
	}
	list, err := f.core().listReturns(f.ctx, erpKey, &fulfillmentv1.ListReturnsRequest{OrderId: "ord_1"})
	if err != nil || len(list.GetReturns()) != 1 || list.GetReturns()[0].GetId() != r.GetId() {
		t.Errorf("returns of the order %v, %v", list, err)
	}
	if scoped, err := f.core().listReturns(f.ctx, naKey, &fulfillmentv1.ListReturnsRequest{}); err != nil || len(scoped.GetReturns()) != 0 {
		t.Errorf("an NA key sees EU returns: %v, %v", scoped, err)
	}
}
