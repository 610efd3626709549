package order

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/storage"
)

var t0ctx = context.Background()

func envelope(t *testing.T, subject string, msg proto.Message) *eventsv1.Envelope {
	t.Helper()
	data, err := anypb.New(msg)
	if err != nil {
		t.Fatal(err)
	}
	return &eventsv1.Envelope{
		Id: ids.New("evt"), Source: "/millrace/fulfillment", Type: events.Type(msg), Subject: subject,
		Time: timestamppb.New(t0), SpecVersion: "1.0", CorrelationId: "corr-" + subject,
		Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Data: data,
	}
}

func shipment(orderID, id string, lines ...*fulfillmentv1.ShipmentLine) *eventsv1.ShipmentConfirmed {
	return &eventsv1.ShipmentConfirmed{Shipment: &fulfillmentv1.Shipment{
		Id: id, OrderId: orderID, SiteId: "site_EU1", Lines: lines, Status: fulfillmentv1.ShipmentStatus_SHIPMENT_STATUS_CONFIRMED,
	}}
}

func shipLine(idx int32, sku, qty, unit string) *fulfillmentv1.ShipmentLine {
	return &fulfillmentv1.ShipmentLine{OrderLineIndex: idx, Sku: sku, Quantity: &typev1.Quantity{Value: qty, Unit: unit}}
}

func invoice(orderID, id string, lines ...*fulfillmentv1.InvoiceLine) *fulfillmentv1.Invoice {
	return &fulfillmentv1.Invoice{Id: id, OrderId: orderID, Lines: lines}
}

func billLine(idx int32, qty, unit string) *fulfillmentv1.InvoiceLine {
	return &fulfillmentv1.InvoiceLine{OrderLineIndex: idx, Quantity: &typev1.Quantity{Value: qty, Unit: unit}}
}

// ship applies a shipment straight through the consumer.
func (h *harness) ship(orderID, shipmentID string, idx int32, qty, unit string) {
	h.t.Helper()
	sku := h.getOrder(orderID).GetLines()[idx].GetSku()
	env := envelope(h.t, "shipments/"+shipmentID, shipment(orderID, shipmentID, shipLine(idx, sku, qty, unit)))
	if err := h.srv.core.consume(t0ctx, env); err != nil {
		h.t.Fatal(err)
	}
}

// TestFulfillmentEvents drives an order from ACCEPTED to CLOSED with events
// published on a LocalBus, each of them delivered twice.
func TestFulfillmentEvents(t *testing.T) {
	bus := events.NewLocalBus()
	t.Cleanup(func() { _ = bus.Close() })
	h := newHarness(t, func(o *Options) { o.Bus = bus })
	h.run()
	// LocalBus delivers only what is published after the subscription:
	// publish markers until Run's consumer handles one.
	var markers []string
	waitFor(t, 5*time.Second, "the consumer to subscribe", func() bool {
		marker := envelope(t, "shipments/marker", shipment("ord_MARKER", "shp_marker"))
		if err := bus.Publish(t0ctx, marker); err != nil {
			t.Fatal(err)
		}
		markers = append(markers, marker.GetId())
		time.Sleep(5 * time.Millisecond)
		return slices.ContainsFunc(markers, h.processed)
	})

	// 2 CASE of valves (24 EA in the base unit) and 3 pumps.
	o := h.createOrder(erp, newOrder("cus_ACME", ref("LIFE"), line("VALVE-100", "2", "CASE"), line("PUMP-200", "3", "EA")))
	if o.GetStatus() != statusAccepted {
		t.Fatalf("status %s", o.GetStatus())
	}
	id := o.GetId()
	publish := func(env *eventsv1.Envelope) {
		t.Helper()
		for range 2 { // at least once: the same envelope twice
			if err := bus.Publish(t0ctx, env); err != nil {
				t.Fatal(err)
			}
		}
	}

	first := envelope(t, "shipments/shp_1", shipment(id, "shp_1", shipLine(0, "VALVE-100", "1", "CASE"), shipLine(1, "PUMP-200", "3", "EA")))
	steps := []struct {
		name    string
		env     *eventsv1.Envelope
		want    orderv1.OrderStatus
		shipped []string // shipped quantity per line afterwards
	}{
		{"first shipment, the same event twice", first, statusPartially, []string{"12 EA", "3 EA"}},
		{"an invoice before the last shipment changes nothing yet",
			envelope(t, "invoices/inv_1", &eventsv1.InvoicePosted{Invoice: invoice(id, "inv_1", billLine(0, "12", "EA"), billLine(1, "3", "EA"))}), statusPartially, []string{"12 EA", "3 EA"}},
		{"the rest ships in the base unit",
			envelope(t, "shipments/shp_2", shipment(id, "shp_2", shipLine(0, "VALVE-100", "12", "EA"))), statusShipped, []string{"24 EA", "3 EA"}},
		{"the second invoice bills the rest",
			envelope(t, "invoices/inv_2", &eventsv1.InvoicePosted{Invoice: invoice(id, "inv_2", billLine(0, "1", "CASE"))}), statusInvoiced, nil},
		{"one invoice paid",
			envelope(t, "invoices/inv_1", &eventsv1.InvoicePaid{Invoice: invoice(id, "inv_1", billLine(0, "12", "EA"), billLine(1, "3", "EA"))}), statusInvoiced, nil},
		{"both paid",
			envelope(t, "invoices/inv_2", &eventsv1.InvoicePaid{Invoice: invoice(id, "inv_2", billLine(0, "1", "CASE"))}), statusClosed, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := len(h.timeline(id))
			publish(st.env)
			// The bus delivers one consumer's events in order: once a marker
			// published after both copies is handled, so are they.
			marker := envelope(t, "shipments/marker", shipment("ord_MARKER", "shp_marker"))
			if err := bus.Publish(t0ctx, marker); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the events to be handled", func() bool { return h.processed(marker.GetId()) })
			got := h.getOrder(id)
			if got.GetStatus() != st.want {
				t.Fatalf("status %s, want %s", got.GetStatus(), st.want)
			}
			for i, want := range st.shipped {
				sq := got.GetLines()[i].GetShippedQuantity()
				if sq.GetValue()+" "+sq.GetUnit() != want {
					t.Errorf("line %d shipped %v, want %s", i, sq, want)
				}
			}
			tl := h.timeline(id)
			if changed := got.GetStatus() != statusAtIndex(tl, before-1); changed {
				if len(tl) != before+1 {
					t.Fatalf("%d timeline entries added, want 1 (a duplicate was applied twice?)", len(tl)-before)
				}
				e := tl[before]
				if e.GetEventId() != st.env.GetId() || e.GetActor() != "system" || e.GetCorrelationId() != st.env.GetCorrelationId() ||
					e.GetTraceparent() != st.env.GetTraceparent() || e.GetReason() == "" {
					t.Errorf("timeline entry %v does not trace back to event %s", e, st.env.GetId())
				}
			} else if len(tl) != before {
				t.Errorf("no status change but %d timeline entries added", len(tl)-before)
			}
		})
	}
	want := []string{"OrderStatusChanged", "OrderAccepted", "OrderStatusChanged", "OrderStatusChanged", "OrderStatusChanged", "OrderStatusChanged", "OrderStatusChanged"}
	if got := h.eventTypes(orderSubject(id)); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func statusAtIndex(tl []*orderv1.TimelineEntry, i int) orderv1.OrderStatus {
	if i < 0 || i >= len(tl) {
		return 0
	}
	return tl[i].GetToStatus()
}

// processed reports whether the consumer recorded an event id. It asks
// storage.MarkProcessed in a transaction it then rolls back.
func (h *harness) processed(eventID string) bool {
	var already bool
	_ = h.db.Update(func(tx *bbolt.Tx) error {
		var err error
		already, err = storage.MarkProcessed(tx, consumerName, eventID, t0)
		if err != nil {
			return err
		}
		return errRollback
	})
	return already
}

var errRollback = errors.New("roll back")

func TestConsumerIgnoresWhatItCannotApply(t *testing.T) {
	tests := []struct {
		name string
		env  func(t *testing.T, orderID string) *eventsv1.Envelope
	}{
		{"an unknown order", func(t *testing.T, _ string) *eventsv1.Envelope {
			return envelope(t, "shipments/x", shipment("ord_NOPE", "shp_x", shipLine(0, "VALVE-100", "1", "EA")))
		}},
		{"a line that does not exist", func(t *testing.T, id string) *eventsv1.Envelope {
			return envelope(t, "shipments/x", shipment(id, "shp_x", shipLine(7, "VALVE-100", "1", "EA")))
		}},
		{"a unit the line cannot convert", func(t *testing.T, id string) *eventsv1.Envelope {
			return envelope(t, "shipments/x", shipment(id, "shp_x", shipLine(0, "VALVE-100", "1", "PALLET")))
		}},
		{"an event of another type", func(t *testing.T, id string) *eventsv1.Envelope {
			return envelope(t, "orders/x", &eventsv1.OrderAccepted{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			o := h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "2", "EA")))
			if err := h.srv.core.consume(t0ctx, tt.env(t, o.GetId())); err != nil {
				t.Fatalf("consume: %v (an error would make the bus redeliver forever)", err)
			}
			if got := h.getOrder(o.GetId()); got.GetStatus() != statusAccepted || got.GetLines()[0].GetShippedQuantity().GetValue() != "" {
				t.Errorf("order changed to %s, shipped %v", got.GetStatus(), got.GetLines()[0].GetShippedQuantity())
			}
		})
	}
}

// TestShipmentWhileCreditPending: an order ON_HOLD{CREDIT_PENDING} is not
// shippable; should fulfillment ship it anyway, the quantities are
// recorded but the order stays on hold until credit is validated, and then
// moves on to the status the facts give it.
func TestShipmentWhileCreditPending(t *testing.T) {
	h := newHarness(t)
	h.credit.setDown(true)
	o := h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "2", "EA")))
	if o.GetHoldReason() != holdCreditPending {
		t.Fatalf("status %s/%s", o.GetStatus(), o.GetHoldReason())
	}
	h.ship(o.GetId(), "shp_early", 0, "2", "EA")
	got := h.getOrder(o.GetId())
	if got.GetStatus() != statusOnHold || got.GetLines()[0].GetShippedQuantity().GetValue() != "2" {
		t.Fatalf("after an early shipment: %s, shipped %v", got.GetStatus(), got.GetLines()[0].GetShippedQuantity())
	}
	h.credit.setDown(false)
	h.run()
	h.waitStatus(o.GetId(), statusShipped, 0, 5*time.Second)
	var to []orderv1.OrderStatus
	for _, e := range h.timeline(o.GetId()) {
		to = append(to, e.GetToStatus())
	}
	if want := []orderv1.OrderStatus{statusPending, statusOnHold, statusPending, statusAccepted, statusShipped}; !slices.Equal(to, want) {
		t.Errorf("timeline %v, want %v", to, want)
	}
}

func TestTimeline(t *testing.T) {
	h := newHarness(t)
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := as("crm", "x-test-key", "key_crm_7", "x-correlation-id", "corr-42", "traceparent", tp)
	h.credit.setDown(true)
	o := h.createOrder(ctx, newOrder("cus_ACME", ref("TL-1"), line("VALVE-100", "1", "EA")))
	if o.GetHoldReason() != holdCreditPending {
		t.Fatalf("status %s/%s", o.GetStatus(), o.GetHoldReason())
	}
	h.credit.setDown(false)
	h.run()
	h.waitStatus(o.GetId(), statusAccepted, 0, 5*time.Second)
	if _, err := h.client.CancelOrder(as("erp", "x-test-key", "key_erp_2", "x-correlation-id", "corr-43"), &orderv1.CancelOrderRequest{Id: o.GetId(), Reason: "duplicate"}); err != nil {
		t.Fatal(err)
	}

	type row struct {
		from, to orderv1.OrderStatus
		hold     orderv1.HoldReason
		actor    string
		corr     string
	}
	want := []row{
		{0, statusPending, 0, "key_crm_7", "corr-42"},
		{statusPending, statusOnHold, holdCreditPending, "system", "corr-42"},
		{statusOnHold, statusPending, 0, "system", "corr-42"}, // the re-validator carries the creating request's correlation id
		{statusPending, statusAccepted, 0, "system", "corr-42"},
		{statusAccepted, statusCancelled, 0, "key_erp_2", "corr-43"},
	}
	tl := h.timeline(o.GetId())
	if len(tl) != len(want) {
		t.Fatalf("timeline has %d entries, want %d: %v", len(tl), len(want), tl)
	}
	for i, w := range want {
		e := tl[i]
		got := row{e.GetFromStatus(), e.GetToStatus(), e.GetHoldReason(), e.GetActor(), e.GetCorrelationId()}
		if got != w {
			t.Errorf("entry %d = %+v, want %+v", i, got, w)
		}
		if e.GetReason() == "" || e.GetTime() == nil {
			t.Errorf("entry %d has no reason or time: %v", i, e)
		}
		if i < 4 && e.GetTraceparent() != tp {
			t.Errorf("entry %d traceparent %q", i, e.GetTraceparent())
		}
		if i > 0 && e.GetTime().AsTime().Before(tl[i-1].GetTime().AsTime()) {
			t.Errorf("entry %d is older than the one before", i)
		}
	}
	if tl[4].GetReason() != "cancelled: duplicate" {
		t.Errorf("cancel reason %q", tl[4].GetReason())
	}
	// Every status change is an OrderStatusChanged carrying the CRM's
	// reference, with the request's correlation id in its envelope.
	var changes int
	for _, env := range h.outbox() {
		if env.GetType() == events.Type(&eventsv1.OrderStatusChanged{}) && env.GetSubject() == orderSubject(o.GetId()) {
			changes++
			var sc eventsv1.OrderStatusChanged
			if err := env.GetData().UnmarshalTo(&sc); err != nil || sc.GetExternalRef().GetId() != "TL-1" {
				t.Errorf("OrderStatusChanged %v (%v)", &sc, err)
			}
			if env.GetRegion() != "eu" || env.GetCorrelationId() == "" {
				t.Errorf("envelope region %q correlation %q", env.GetRegion(), env.GetCorrelationId())
			}
		}
	}
	if changes != len(want) {
		t.Errorf("%d OrderStatusChanged events, want %d", changes, len(want))
	}
}
