package order

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/money"
	"github.com/millrace/millrace/internal/reqctx"
)

// After acceptance an order moves on fulfillment's events. The facts they
// carry (quantities shipped per line, invoices with the quantities they
// bill, payments) are recorded on the order, and the status is derived from
// the facts, never from the event type alone:
//
//	PARTIALLY_SHIPPED  some quantity of some line shipped
//	SHIPPED            every line shipped in full (base-unit quantities)
//	INVOICED           shipped in full, and every line's shipped quantity
//	                   billed by posted invoices
//	CLOSED             invoiced, and every invoice of the order paid
//
// Deriving the status from the facts makes the consumer indifferent to the
// order in which events of different aggregates (a shipment, its invoice)
// arrive, and status only ever moves forward. Every event is applied at
// most once: its id is recorded with storage.MarkProcessed in the same
// transaction as its effect. Facts about an order that is not (yet) in a
// shipping state are recorded but change no status.

// consumerName names the order service's consumer of fulfillment events on
// the bus and in the de-duplication records.
const consumerName = "order"

// consumedTypes are the events the consumer subscribes to.
var consumedTypes = []string{
	events.Type(&eventsv1.ShipmentConfirmed{}),
	events.Type(&eventsv1.InvoicePosted{}),
	events.Type(&eventsv1.InvoicePaid{}),
}

// lifecycleRank orders the states an accepted order moves through.
var lifecycleRank = map[orderv1.OrderStatus]int{
	statusAccepted:  1,
	statusPartially: 2,
	statusShipped:   3,
	statusInvoiced:  4,
	statusClosed:    5,
}

// consume applies one fulfillment event. An event that cannot be applied
// however often it is delivered (malformed, or about an order this store
// does not hold) is logged and acknowledged; a storage failure is returned
// so the bus delivers the event again.
func (k *core) consume(ctx context.Context, env *eventsv1.Envelope) error {
	msg, err := env.GetData().UnmarshalNew()
	if err != nil {
		k.log.ErrorContext(ctx, "order consumer: undecodable event dropped", "event_id", env.GetId(), "type", env.GetType(), "err", err)
		return nil
	}
	var orderID string
	switch m := msg.(type) {
	case *eventsv1.ShipmentConfirmed:
		orderID = m.GetShipment().GetOrderId()
	case *eventsv1.InvoicePosted:
		orderID = m.GetInvoice().GetOrderId()
	case *eventsv1.InvoicePaid:
		orderID = m.GetInvoice().GetOrderId()
	default:
		return nil
	}
	if cid := env.GetCorrelationId(); cid != "" {
		ctx = reqctx.WithCorrelationID(ctx, cid)
	}
	if tp := env.GetTraceparent(); tp != "" {
		ctx = reqctx.WithTraceparent(ctx, tp)
	}
	ctx = reqctx.WithCausationID(ctx, env.GetId())
	ctx = reqctx.WithActor(ctx, systemActor)

	return k.repo.updateSolo(ctx, func(tx txn) error {
		already, err := tx.processed(consumerName, env.GetId(), k.now())
		if err != nil || already {
			return err
		}
		rec, err := tx.order(orderID)
		if err != nil {
			return err
		}
		if rec == nil {
			k.log.WarnContext(ctx, "order consumer: event about an unknown order ignored", "event_id", env.GetId(), "type", env.GetType(), "order_id", orderID)
			return nil
		}
		old := storedKeys(rec)
		var why string
		switch m := msg.(type) {
		case *eventsv1.ShipmentConfirmed:
			why = k.applyShipment(ctx, rec, m.GetShipment())
		case *eventsv1.InvoicePosted:
			why = k.applyInvoice(ctx, rec, m.GetInvoice(), false)
		case *eventsv1.InvoicePaid:
			why = k.applyInvoice(ctx, rec, m.GetInvoice(), true)
		}
		if why == "" {
			return nil
		}
		rec.o.UpdateTime = timestamppb.New(k.now())
		if next := lifecycleStatus(rec); next != rec.o.GetStatus() {
			if err := k.transition(ctx, tx, rec, change{to: next, actor: systemActor, reason: why, eventID: env.GetId()}); err != nil {
				return err
			}
		} else if _, shipping := lifecycleRank[rec.o.GetStatus()]; !shipping {
			k.log.WarnContext(ctx, "order consumer: fulfillment reported on an order that is not accepted; recorded without a status change",
				"event_id", env.GetId(), "order_id", orderID, "status", statusName(rec.o.GetStatus()), "what", why)
		}
		return tx.putOrder(old, rec)
	})
}

// applyShipment adds a confirmed shipment's quantities to the lines it
// ships and says what happened; "" means it was already applied.
func (k *core) applyShipment(ctx context.Context, rec *orderRecord, s *fulfillmentv1.Shipment) string {
	for _, id := range rec.st.Shipments {
		if id == s.GetId() {
			return ""
		}
	}
	rec.st.Shipments = append(rec.st.Shipments, s.GetId())
	for _, sl := range s.GetLines() {
		i := int(sl.GetOrderLineIndex())
		if i < 0 || i >= len(rec.o.GetLines()) || (sl.GetSku() != "" && sl.GetSku() != rec.o.GetLines()[i].GetSku()) {
			k.log.WarnContext(ctx, "order consumer: shipment line does not match an order line; skipped",
				"order_id", rec.o.GetId(), "shipment_id", s.GetId(), "line", i, "sku", sl.GetSku())
			continue
		}
		q, unit, ok := toBase(rec, i, sl.GetQuantity())
		if !ok {
			k.log.WarnContext(ctx, "order consumer: shipped quantity in a unit the order line cannot convert; skipped",
				"order_id", rec.o.GetId(), "shipment_id", s.GetId(), "line", i, "quantity", sl.GetQuantity())
			continue
		}
		line := rec.o.GetLines()[i]
		sum := q
		if prev := line.GetShippedQuantity(); prev != nil && prev.GetUnit() == unit {
			if d, err := money.Parse(prev.GetValue()); err == nil {
				sum = money.Add(d, q)
			}
		}
		line.ShippedQuantity = &typev1.Quantity{Value: money.Format(sum), Unit: unit}
	}
	return fmt.Sprintf("shipment %s confirmed from site %s", s.GetId(), s.GetSiteId())
}

// applyInvoice records a posted (or paid) invoice and its billed
// quantities; "" means nothing new.
func (k *core) applyInvoice(ctx context.Context, rec *orderRecord, inv *fulfillmentv1.Invoice, paid bool) string {
	if rec.st.Invoices == nil {
		rec.st.Invoices = map[string]*invoiceFacts{}
	}
	facts := rec.st.Invoices[inv.GetId()]
	if facts == nil {
		facts = &invoiceFacts{Lines: map[int]string{}}
		for _, il := range inv.GetLines() {
			i := int(il.GetOrderLineIndex())
			if i < 0 || i >= len(rec.o.GetLines()) {
				continue
			}
			q, _, ok := toBase(rec, i, il.GetQuantity())
			if !ok {
				k.log.WarnContext(ctx, "order consumer: billed quantity in a unit the order line cannot convert; skipped",
					"order_id", rec.o.GetId(), "invoice_id", inv.GetId(), "line", i)
				continue
			}
			if prev, err := money.Parse(facts.Lines[i]); err == nil {
				q = money.Add(prev, q)
			}
			facts.Lines[i] = money.Format(q)
		}
		rec.st.Invoices[inv.GetId()] = facts
	} else if !paid || facts.Paid {
		return ""
	}
	if paid {
		facts.Paid = true
		return fmt.Sprintf("invoice %s paid", inv.GetId())
	}
	return fmt.Sprintf("invoice %s posted", inv.GetId())
}

// toBase converts a shipped or billed quantity of line i into the line's
// base unit: as is when it is in the base unit, by the line's own ratio
// when it is in the ordered unit.
func toBase(rec *orderRecord, i int, q *typev1.Quantity) (*money.Decimal, string, bool) {
	line := rec.o.GetLines()[i]
	base := baseQty{Value: line.GetQuantity().GetValue(), Unit: line.GetQuantity().GetUnit()}
	if i < len(rec.st.Base) {
		base = rec.st.Base[i]
	}
	v, err := money.Parse(q.GetValue())
	if err != nil {
		return nil, "", false
	}
	switch q.GetUnit() {
	case base.Unit:
		return v, base.Unit, true
	case line.GetQuantity().GetUnit():
		b, err1 := money.Parse(base.Value)
		o, err2 := money.Parse(line.GetQuantity().GetValue())
		if err1 != nil || err2 != nil || o.IsZero() {
			return nil, "", false
		}
		r, err := money.Quo(money.Mul(v, b), o)
		if err != nil {
			return nil, "", false
		}
		return r, base.Unit, true
	}
	return nil, "", false
}

// lifecycleStatus derives the status an accepted order has reached from
// its facts; it never moves backwards and leaves any other state alone.
func lifecycleStatus(rec *orderRecord) orderv1.OrderStatus {
	cur := rec.o.GetStatus()
	curRank, ok := lifecycleRank[cur]
	if !ok {
		return cur
	}
	shippedAny, shippedAll, billedAll := false, true, true
	for i, line := range rec.o.GetLines() {
		ordered := money.Zero()
		if i < len(rec.st.Base) {
			if d, err := money.Parse(rec.st.Base[i].Value); err == nil {
				ordered = d
			}
		} else if d, err := money.Parse(line.GetQuantity().GetValue()); err == nil {
			ordered = d
		}
		shipped := money.Zero()
		if sq := line.GetShippedQuantity(); sq != nil {
			if d, err := money.Parse(sq.GetValue()); err == nil {
				shipped = d
			}
		}
		billed := money.Zero()
		for _, inv := range rec.st.Invoices {
			if d, err := money.Parse(inv.Lines[i]); err == nil {
				billed = money.Add(billed, d)
			}
		}
		if shipped.Sign() > 0 {
			shippedAny = true
		}
		if money.Cmp(shipped, ordered) < 0 {
			shippedAll = false
		}
		if money.Cmp(billed, shipped) < 0 {
			billedAll = false
		}
	}
	paidAll := len(rec.st.Invoices) > 0
	for _, inv := range rec.st.Invoices {
		paidAll = paidAll && inv.Paid
	}
	next := statusAccepted
	switch {
	case shippedAll && billedAll && paidAll:
		next = statusClosed
	case shippedAll && billedAll && len(rec.st.Invoices) > 0:
		next = statusInvoiced
	case shippedAll:
		next = statusShipped
	case shippedAny:
		next = statusPartially
	}
	if lifecycleRank[next] > curRank {
		return next
	}
	return cur
}
