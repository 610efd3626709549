package fulfillment

import (
	"encoding/json"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"slices"
	"testing"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/apierr"
)

// sline is a shipment or return line: order line index, SKU, quantity.
func sline(index int32, sku, value, unit string) *fulfillmentv1.ShipmentLine {
	return &fulfillmentv1.ShipmentLine{OrderLineIndex: index, Sku: sku, Quantity: &typev1.Quantity{Value: value, Unit: unit}}
}

func (f *fixture) createShipment(orderID, siteID string, lines ...*fulfillmentv1.ShipmentLine) (*fulfillmentv1.Shipment, error) {
	return f.core().createShipment(f.ctx, f.p, &fulfillmentv1.Shipment{OrderId: orderID, SiteId: siteID, Lines: lines})
}

func (f *fixture) confirm(id, carrier, tracking string) (*fulfillmentv1.Shipment, error) {
	return f.core().confirmShipment(f.ctx, f.p, &fulfillmentv1.ConfirmShipmentRequest{Id: id, Carrier: carrier, TrackingNumber: tracking})
}

// ship creates and confirms a shipment and returns its invoice.
func (f *fixture) ship(orderID, siteID string, lines ...*fulfillmentv1.ShipmentLine) *fulfillmentv1.Invoice {
	f.t.Helper()
	s, err := f.createShipment(orderID, siteID, lines...)
	if err != nil {
		f.t.Fatalf("create shipment: %v", err)
	}
	s, err = f.confirm(s.GetId(), "DHL", "JD0001-"+s.GetId())
	if err != nil {
		f.t.Fatalf("confirm shipment: %v", err)
	}
	inv, err := f.core().getInvoice(f.ctx, f.p, s.GetInvoiceId())
	if err != nil {
		f.t.Fatal(err)
	}
	return inv
}

func TestInvoiceMath(t *testing.T) {
	type invLine struct{ qty, unit, price, net string }
	tests := []struct {
		name     string
		region   string
		currency string
		ordered  [][3]string // sku, unit, unit price
		reserve  []*fulfillmentv1.AvailabilityLine
		ship     []*fulfillmentv1.ShipmentLine
		lines    []invLine
		rate     string
		net      string
		tax      string
		gross    string
	}{
		{
			name: "whole cases are billed per case", region: "eu", currency: "EUR",
			ordered: [][3]string{{"VALVE-100", "CASE", "10"}},
			reserve: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "2", "CASE")},
			ship:    []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "24", "EA")},
			lines:   []invLine{{"2", "CASE", "10.00", "20.00"}},
			rate:    "0.2", net: "20.00", tax: "4.00", gross: "24.00",
		},
		{
			name: "part of a case is billed per each at the exact price", region: "eu", currency: "EUR",
			ordered: [][3]string{{"VALVE-100", "CASE", "10"}},
			reserve: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "2", "CASE")},
			ship:    []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "5", "EA")},
			// 5 × 10 ÷ 12 = 4.1666… → 4.17; tax 0.834 → 0.83.
			lines: []invLine{{"5", "EA", "0.833333", "4.17"}},
			rate:  "0.2", net: "4.17", tax: "0.83", gross: "5.00",
		},
		{
			name: "each line amount rounds half-even once", region: "eu", currency: "EUR",
			ordered: [][3]string{{"RESIN-5", "KG", "0.125"}, {"RESIN-5", "KG", "0.125"}},
			reserve: []*fulfillmentv1.AvailabilityLine{line("RESIN-5", "1", "KG"), line("RESIN-5", "1", "KG")},
			ship:    []*fulfillmentv1.ShipmentLine{sline(0, "RESIN-5", "1", "KG"), sline(1, "RESIN-5", "1", "KG")},
			// 0.125 → 0.12 per line (not 0.25 for the pair); tax 0.048 → 0.05.
			lines: []invLine{{"1", "KG", "0.125", "0.12"}, {"1", "KG", "0.125", "0.12"}},
			rate:  "0.2", net: "0.24", tax: "0.05", gross: "0.29",
		},
		{
			name: "tax rounds half-even once on the net total", region: "na", currency: "USD",
			ordered: [][3]string{{"VALVE-100", "EA", "1.75"}},
			reserve: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "2", "EA")},
			ship:    []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "2", "EA")},
			// 3.50 × 0.07 = 0.245 → 0.24 (half-up would say 0.25).
			lines: []invLine{{"2", "EA", "1.75", "3.50"}},
			rate:  "0.07", net: "3.50", tax: "0.24", gross: "3.74",
		},
		{
			name: "a currency without minor units", region: "apac", currency: "JPY",
			ordered: [][3]string{{"VALVE-100", "CASE", "333"}},
			reserve: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "CASE")},
			ship:    []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "1", "EA")},
			// 333 ÷ 12 = 27.75 → 28; apac is not in the tax table.
			lines: []invLine{{"1", "EA", "27.75", "28"}},
			rate:  "0", net: "28", tax: "0", gross: "28",
		},
		{
			name: "priced per gram, shipped in kilograms", region: "eu", currency: "EUR",
			ordered: [][3]string{{"RESIN-5", "G", "0.002"}},
			reserve: []*fulfillmentv1.AvailabilityLine{line("RESIN-5", "2000", "G")},
			ship:    []*fulfillmentv1.ShipmentLine{sline(0, "RESIN-5", "1.5", "KG")},
			lines:   []invLine{{"1500", "G", "0.002", "3.00"}},
			rate:    "0.2", net: "3.00", tax: "0.60", gross: "3.60",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.site("plant-x", tt.region)
			f.receive("plant-x", "VALVE-100", "100", "EA")
			f.receive("plant-x", "RESIN-5", "100", "KG")
			f.orders.put("ord_1", "cus_1", tt.region, tt.currency, tt.ordered...)
			f.hardReserve("ord_1", tt.region, tt.reserve...)
			inv := f.ship("ord_1", "plant-x", tt.ship...)

			var got []invLine
			for _, l := range inv.GetLines() {
				if l.GetUnitPrice().GetCurrencyCode() != tt.currency || l.GetNetAmount().GetCurrencyCode() != tt.currency {
					t.Errorf("line currencies %v", l)
				}
				got = append(got, invLine{l.GetQuantity().GetValue(), l.GetQuantity().GetUnit(), l.GetUnitPrice().GetAmount(), l.GetNetAmount().GetAmount()})
			}
			if !slices.Equal(got, tt.lines) {
				t.Errorf("lines %v, want %v", got, tt.lines)
			}
			if inv.GetTaxRate() != tt.rate || inv.GetNetTotal().GetAmount() != tt.net || inv.GetTaxTotal().GetAmount() != tt.tax ||
				inv.GetGrossTotal().GetAmount() != tt.gross || inv.GetGrossTotal().GetCurrencyCode() != tt.currency {
				t.Errorf("rate %s net %s tax %s gross %s, want %s %s %s %s", inv.GetTaxRate(), inv.GetNetTotal().GetAmount(),
					inv.GetTaxTotal().GetAmount(), inv.GetGrossTotal().GetAmount(), tt.rate, tt.net, tt.tax, tt.gross)
			}
			if inv.GetCustomerId() != "cus_1" || inv.GetOrderId() != "ord_1" || inv.GetStatus() != fulfillmentv1.InvoiceStatus_INVOICE_STATUS_POSTED {
				t.Errorf("invoice %v", inv)
			}
		})
	}
}

func TestShipmentLifecycle(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "30", "EA")
	f.orders.put("ord_1", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "CASE", "10"})
	res := f.hardReserve("ord_1", "eu", line("VALVE-100", "2", "CASE"))

	s1, err := f.createShipment("ord_1", "plant-lyon", sline(0, "VALVE-100", "1", "CASE"))
	if err != nil {
		t.Fatal(err)
	}
	if s1.GetStatus() != fulfillmentv1.ShipmentStatus_SHIPMENT_STATUS_PLANNED || s1.GetLines()[0].GetQuantity().GetValue() != "12" {
		t.Fatalf("shipment %v", s1)
	}
	t.Run("a second shipment cannot take what the first holds", func(t *testing.T) {
		before := f.snapshot()
		_, err := f.createShipment("ord_1", "plant-lyon", sline(0, "VALVE-100", "13", "EA"))
		wantErr(t, domainErr(err), codes.FailedPrecondition, ReasonExceedsReservation, "shipment.lines[0].quantity")
		f.assertUnchanged(before)
	})

	n, notified := len(f.outbox()), f.notified.Load()
	c1, err := f.confirm(s1.GetId(), "DHL", "JD1")
	if err != nil {
		t.Fatal(err)
	}
	if c1.GetStatus() != fulfillmentv1.ShipmentStatus_SHIPMENT_STATUS_CONFIRMED || c1.GetInvoiceId() == "" || c1.GetCarrier() != "DHL" ||
		c1.GetTrackingNumber() != "JD1" || !c1.GetConfirmTime().AsTime().Equal(t0) {
		t.Fatalf("confirmed %v", c1)
	}
	t.Run("confirming writes stock, ledger, invoice and events in one go", func(t *testing.T) {
		if got, want := f.balance("plant-lyon", "VALVE-100"), [4]string{"18", "12", "0", "6"}; got != want {
			t.Errorf("balance %v, want %v", got, want)
		}
		evs := f.eventsSince(n)
		want := []string{"millrace.events.v1.InventoryChanged", "millrace.events.v1.ShipmentConfirmed", "millrace.events.v1.InvoicePosted"}
		if got := eventTypes(evs); !slices.Equal(got, want) {
			t.Fatalf("events %v, want %v", got, want)
		}
		if ic := unpack[*eventsv1.InventoryChanged](t, evs[0]); ic.GetReason() != fulfillmentv1.LedgerReason_LEDGER_REASON_SHIPMENT {
			t.Errorf("InventoryChanged %v", ic)
		}
		if sc := unpack[*eventsv1.ShipmentConfirmed](t, evs[1]); sc.GetShipment().GetId() != s1.GetId() || evs[1].GetSubject() != "shipments/"+s1.GetId() {
			t.Errorf("ShipmentConfirmed %v", evs[1])
		}
		if ip := unpack[*eventsv1.InvoicePosted](t, evs[2]); ip.GetInvoice().GetId() != c1.GetInvoiceId() || ip.GetInvoice().GetGrossTotal().GetAmount() != "12.00" {
			t.Errorf("InvoicePosted %v", ip)
		}
		if f.notified.Load() != notified+1 {
			t.Errorf("Notify called %d times, want once", f.notified.Load()-notified)
		}
		var shipped int
		_ = f.db.View(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketLedger).ForEach(func(_, v []byte) error {
				var e ledgerEntry
				if json.Unmarshal(v, &e) == nil && e.Reason == fulfillmentv1.LedgerReason_LEDGER_REASON_SHIPMENT && e.Reference == s1.GetId() &&
					e.OnHandDelta == "-12" && e.ReservedDelta == "-12" {
					shipped++
				}
				return nil
			})
		})
		if shipped != 1 {
			t.Errorf("%d SHIPMENT ledger entries, want 1", shipped)
		}
	})
	t.Run("confirming again with the same tracking is a no-op", func(t *testing.T) {
		before := f.snapshot()
		again, err := f.confirm(s1.GetId(), "DHL", "JD1")
		if err != nil || again.GetInvoiceId() != c1.GetInvoiceId() {
			t.Fatalf("again = %v, %v", again, err)
		}
		f.assertUnchanged(before)
	})
	t.Run("confirming again with another tracking number conflicts", func(t *testing.T) {
		before := f.snapshot()
		_, err := f.confirm(s1.GetId(), "UPS", "1Z9")
		wantErr(t, domainErr(err), codes.AlreadyExists, ReasonShipmentConfirmed, "id")
		f.assertUnchanged(before)
	})
	t.Run("the last shipment consumes the reservation", func(t *testing.T) {
		inv := f.ship("ord_1", "plant-lyon", sline(0, "VALVE-100", "12", "EA"))
		if inv.GetGrossTotal().GetAmount() != "12.00" {
			t.Errorf("second invoice %v", inv)
		}
		if st := f.reservationStatus(res.GetId()); st != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_CONSUMED {
			t.Errorf("reservation %s", st)
		}
		if got, want := f.balance("plant-lyon", "VALVE-100"), [4]string{"6", "0", "0", "6"}; got != want {
			t.Errorf("balance %v, want %v", got, want)
		}
		list, err := f.core().listInvoices(f.ctx, f.p, &fulfillmentv1.ListInvoicesRequest{OrderId: "ord_1"})
		if err != nil || len(list.GetInvoices()) != 2 {
			t.Errorf("invoices of the order %v, %v", list, err)
		}
		byCustomer, err := f.core().listInvoices(f.ctx, f.p, &fulfillmentv1.ListInvoicesRequest{CustomerId: "cus_1", PageSize: 1})
		if err != nil || len(byCustomer.GetInvoices()) != 1 || byCustomer.GetNextPageToken() == "" {
			t.Errorf("first page of the customer's invoices %v, %v", byCustomer, err)
		}
		shipments, err := f.core().listShipments(f.ctx, f.p, &fulfillmentv1.ListShipmentsRequest{OrderId: "ord_1"})
		if err != nil || len(shipments.GetShipments()) != 2 {
			t.Errorf("shipments of the order %v, %v", shipments, err)
		}
	})
}

func TestCreateShipmentFailures(t *testing.T) {
	tests := []struct {
		name   string
		order  string
		site   string
		lines  []*fulfillmentv1.ShipmentLine
		code   codes.Code
		reason string
		field  string
	}{
		{"an order without a reservation", "ord_none", "plant-lyon", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "1", "EA")},
			codes.FailedPrecondition, ReasonNoReservation, "shipment.order_id"},
		{"more than reserved", "ord_1", "plant-lyon", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "2", "CASE")},
			codes.FailedPrecondition, ReasonExceedsReservation, "shipment.lines[0].quantity"},
		{"a site the line is not reserved at", "ord_1", "wh-rotterdam", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "1", "EA")},
			codes.FailedPrecondition, ReasonNoReservation, "shipment.lines[0].order_line_index"},
		{"a line the order does not have", "ord_1", "plant-lyon", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "1", "EA"), sline(7, "VALVE-100", "1", "EA")},
			codes.FailedPrecondition, ReasonNoReservation, "shipment.lines[1].order_line_index"},
		{"another SKU than the line's", "ord_1", "plant-lyon", []*fulfillmentv1.ShipmentLine{sline(0, "RESIN-5", "1", "KG")},
			codes.InvalidArgument, ReasonOrderMismatch, "shipment.lines[0].sku"},
		{"a line twice", "ord_1", "plant-lyon", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "1", "EA"), sline(0, "VALVE-100", "1", "EA")},
			codes.InvalidArgument, apierr.ReasonInvalidArgument, "shipment.lines[1].order_line_index"},
		{"half an each", "ord_1", "plant-lyon", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "0.5", "EA")},
			codes.InvalidArgument, LineNotConvertible, "shipment.lines[0].quantity.value"},
		{"an unknown site", "ord_1", "plant-x", []*fulfillmentv1.ShipmentLine{sline(0, "VALVE-100", "1", "EA")},
			codes.NotFound, apierr.ReasonNotFound, ""},
		{"no lines", "ord_1", "plant-lyon", nil, codes.InvalidArgument, apierr.ReasonInvalidArgument, "shipment.lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			threeSites(f)
			f.receive("plant-lyon", "VALVE-100", "30", "EA")
			f.receive("wh-rotterdam", "VALVE-100", "30", "EA")
			f.hardReserve("ord_1", "eu", line("VALVE-100", "1", "CASE"))
			before := f.snapshot()
			_, err := f.createShipment(tt.order, tt.site, tt.lines...)
			wantErr(t, domainErr(err), tt.code, tt.reason, tt.field)
			f.assertUnchanged(before)
		})
	}
}

func TestConfirmShipmentFailuresWriteNothing(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fixture, reservationID string)
		code   codes.Code
		reason string
		field  string
	}{
		{"the order service is down", func(f *fixture, _ string) { f.orders.down.Store(true) }, codes.Unavailable, apierr.ReasonUnavailable, ""},
		{"productpricing is down", func(f *fixture, _ string) { f.catalog.down.Store(true) }, codes.Unavailable, apierr.ReasonUnavailable, ""},
		{"the order service does not know the order", func(f *fixture, _ string) {
			f.orders.mu.Lock()
			delete(f.orders.orders, "ord_1")
			f.orders.mu.Unlock()
		}, codes.FailedPrecondition, ReasonOrderUnknown, "id"},
		{"the order is not priced", func(f *fixture, _ string) {
			f.orders.mu.Lock()
			f.orders.orders["ord_1"][0].UnitPrice = nil
			f.orders.mu.Unlock()
		}, codes.FailedPrecondition, ReasonOrderNotPriced, "id"},
		{"the order line is another SKU", func(f *fixture, _ string) {
			f.orders.put("ord_1", "cus_1", "eu", "EUR", [3]string{"RESIN-5", "KG", "1"})
		},
			codes.FailedPrecondition, ReasonOrderMismatch, "id"},
		{"the reservation was released", func(f *fixture, id string) {
			if _, err := f.core().releaseReservation(f.ctx, f.p, id); err != nil {
				f.t.Fatal(err)
			}
		}, codes.FailedPrecondition, ReasonReservationNotActive, "id"},
		{"the stock is not on hand", func(f *fixture, _ string) {
			if _, err := f.core().adjustInventory(f.ctx, f.p, &fulfillmentv1.AdjustInventoryRequest{SiteId: "plant-lyon", Sku: "VALVE-100",
				Delta: "-10", Unit: "EA", Reason: fulfillmentv1.LedgerReason_LEDGER_REASON_ADJUSTMENT}); err != nil {
				f.t.Fatal(err)
			}
		}, codes.FailedPrecondition, ReasonInsufficientStock, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			threeSites(f)
			f.receive("plant-lyon", "VALVE-100", "10", "EA")
			f.orders.put("ord_1", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "EA", "2"})
			res := f.hardReserve("ord_1", "eu", line("VALVE-100", "5", "EA"))
			s, err := f.createShipment("ord_1", "plant-lyon", sline(0, "VALVE-100", "5", "EA"))
			if err != nil {
				t.Fatal(err)
			}
			tt.setup(f, res.GetId())
			before := f.snapshot()
			_, err = f.confirm(s.GetId(), "DHL", "JD1")
			wantErr(t, domainErr(err), tt.code, tt.reason, tt.field)
			f.assertUnchanged(before)
		})
	}
}

// A reservation promised from planned production ships once the production
// is received, not before.
func TestShipFromPlannedProduction(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.plan("plant-lyon", "VALVE-100", "20", "EA", day(3))
	f.orders.put("ord_1", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "EA", "1"})
	res := f.hardReserve("ord_1", "eu", line("VALVE-100", "20", "EA"))
	if got := res.GetLines()[0].GetPromisedTime().AsTime(); !got.Equal(day(4)) {
		t.Fatalf("promised %v, want day 4", got)
	}
	s, err := f.createShipment("ord_1", "plant-lyon", sline(0, "VALVE-100", "20", "EA"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.confirm(s.GetId(), "DHL", "JD1")
	wantErr(t, domainErr(err), codes.FailedPrecondition, ReasonInsufficientStock, "id")

	f.clock.Set(day(3))
	f.receive("plant-lyon", "VALVE-100", "20", "EA")
	if _, err := f.confirm(s.GetId(), "DHL", "JD1"); err != nil {
		t.Fatal(err)
	}
	if got, want := f.balance("plant-lyon", "VALVE-100"), [4]string{"0", "0", "0", "0"}; got != want {
		t.Errorf("balance %v, want %v", got, want)
	}
	// Nothing is left planned, reserved or on hand: the hard demand is gone.
	checkLines(t, f.check("eu", false, line("VALVE-100", "1", "EA")), []wantLine{{reason: LineShort, base: "1"}})
}

func TestRecordPayment(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "30", "EA")
	f.orders.put("ord_1", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "CASE", "10"})
	f.hardReserve("ord_1", "eu", line("VALVE-100", "2", "CASE"))
	inv := f.ship("ord_1", "plant-lyon", sline(0, "VALVE-100", "24", "EA")) // 24.00 EUR gross

	pay := func(amount, currency, ref string) *fulfillmentv1.RecordPaymentRequest {
		return &fulfillmentv1.RecordPaymentRequest{Id: inv.GetId(), Amount: &typev1.Money{Amount: amount, CurrencyCode: currency}, Reference: ref}
	}
	steps := []struct {
		name   string
		req    *fulfillmentv1.RecordPaymentRequest
		code   codes.Code
		reason string
		field  string
		paid   string
		status fulfillmentv1.InvoiceStatus
		events []string
	}{
		{"a partial payment", pay("10", "EUR", "BANK-1"), codes.OK, "", "", "10.00", fulfillmentv1.InvoiceStatus_INVOICE_STATUS_POSTED, nil},
		{"the same bank reference again is recorded once", pay("10", "EUR", "BANK-1"), codes.OK, "", "", "10.00", fulfillmentv1.InvoiceStatus_INVOICE_STATUS_POSTED, nil},
		{"the same bank reference for another amount", pay("11", "EUR", "BANK-1"), codes.AlreadyExists, ReasonPaymentReferenceReused, "reference", "", 0, nil},
		{"more than is outstanding", pay("14.01", "EUR", ""), codes.InvalidArgument, ReasonOverpayment, "amount", "", 0, nil},
		{"another currency", pay("14", "USD", ""), codes.InvalidArgument, ReasonCurrencyMismatch, "amount.currency_code", "", 0, nil},
		{"a fraction of a cent", pay("0.001", "EUR", ""), codes.InvalidArgument, apierr.ReasonInvalidArgument, "amount.amount", "", 0, nil},
		{"nothing", pay("0", "EUR", ""), codes.InvalidArgument, apierr.ReasonInvalidArgument, "amount.amount", "", 0, nil},
		{"the rest pays the invoice", pay("14.00", "EUR", "BANK-2"), codes.OK, "", "", "24.00", fulfillmentv1.InvoiceStatus_INVOICE_STATUS_PAID,
			[]string{"millrace.events.v1.InvoicePaid"}},
		{"a paid invoice takes no more", pay("1", "EUR", ""), codes.FailedPrecondition, ReasonInvoicePaid, "id", "", 0, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			n := len(f.outbox())
			before := f.snapshot()
			got, err := f.core().recordPayment(f.ctx, f.p, st.req)
			if st.code != codes.OK {
				wantErr(t, domainErr(err), st.code, st.reason, st.field)
				f.assertUnchanged(before)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.GetPaidTotal().GetAmount() != st.paid || got.GetStatus() != st.status {
				t.Errorf("paid %s status %s, want %s %s", got.GetPaidTotal().GetAmount(), got.GetStatus(), st.paid, st.status)
			}
			if evs := eventTypes(f.eventsSince(n)); !slices.Equal(evs, st.events) {
				t.Errorf("events %v, want %v", evs, st.events)
			}
		})
	}
	paid, err := f.core().getInvoice(f.ctx, f.p, inv.GetId())
	if err != nil || !paid.GetPaidTime().AsTime().Equal(t0) {
		t.Errorf("paid invoice %v, %v", paid, err)
	}
}

// TestHeldOrderCannotShip: an order waiting for credit keeps its hard
// reservation but must not leave the site until the order service accepts it.
func TestHeldOrderCannotShip(t *testing.T) {
	for _, tt := range []struct {
		status orderv1.OrderStatus
		ok     bool
	}{
		{orderv1.OrderStatus_ORDER_STATUS_ON_HOLD, false},
		{orderv1.OrderStatus_ORDER_STATUS_PENDING, false},
		{orderv1.OrderStatus_ORDER_STATUS_CANCELLED, false},
		{orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, true},
		{orderv1.OrderStatus_ORDER_STATUS_PARTIALLY_SHIPPED, true},
	} {
		t.Run(tt.status.String(), func(t *testing.T) {
			f := newFixture(t)
			threeSites(f)
			f.receive("plant-lyon", "VALVE-100", "30", "EA")
			f.hardReserve("ord_1", "eu", line("VALVE-100", "1", "CASE"))
			f.orders.put("ord_1", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "CASE", "120.00"})
			f.orders.mu.Lock()
			for i := range f.orders.orders["ord_1"] {
				f.orders.orders["ord_1"][i].OrderStatus = tt.status
			}
			f.orders.mu.Unlock()
			before := f.snapshot()
			_, err := f.createShipment("ord_1", "plant-lyon", sline(0, "VALVE-100", "1", "CASE"))
			if tt.ok {
				if err != nil {
					t.Fatalf("shipment for a %s order: %v", tt.status, err)
				}
				return
			}
			wantErr(t, domainErr(err), codes.FailedPrecondition, ReasonOrderNotShippable, "shipment.order_id")
			f.assertUnchanged(before)
		})
	}
}
