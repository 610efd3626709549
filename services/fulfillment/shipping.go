package fulfillment

import (
	"context"
	"errors"
	"fmt"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/money"
	"github.com/millrace/millrace/internal/reqctx"
)

// ---------------------------------------------------------------------------
// Shipment and return lines.

// requestLine is a shipment or return line converted to the base unit.
type requestLine struct {
	index int32
	sku   string
	base  *money.Decimal
	unit  string // base unit
}

// prepareLines checks the lines of a shipment or a return (prefix is
// "shipment" or "return") and converts them. Any problem fails the call.
func (k *core) prepareLines(ctx context.Context, prefix string, in []lineInput) ([]requestLine, map[string]ProductFacts, error) {
	if len(in) == 0 {
		return nil, nil, invalid(path(prefix, "lines"), "at least one line is required")
	}
	ch := &checker{}
	values := make([]*money.Decimal, len(in))
	seen := map[int32]int{}
	var skus []string
	for i, l := range in {
		f := path(prefix, indexed("lines", i))
		if l.index < 0 {
			ch.add(path(f, "order_line_index"), "must not be negative")
		} else if j, dup := seen[l.index]; dup {
			ch.add(path(f, "order_line_index"), "order line %d is already in lines[%d]", l.index, j)
		}
		seen[l.index] = i
		if l.sku == "" {
			ch.add(path(f, "sku"), "is required")
		}
		v, err := parseQuantity(path(f, "quantity"), l.qty, false)
		if err != nil {
			var inv *invalidError
			if errors.As(err, &inv) {
				ch.v = append(ch.v, inv.Violations...)
			}
			continue
		}
		values[i] = v
		skus = append(skus, l.sku)
	}
	if err := ch.err(); err != nil {
		return nil, nil, err
	}
	facts, unknown, err := k.catalog(ctx, skus...)
	if err != nil {
		return nil, nil, err
	}
	out := make([]requestLine, len(in))
	for i, l := range in {
		f := path(prefix, indexed("lines", i))
		if unknown[l.sku] {
			return nil, nil, invalidReason(LineUnknownProduct, path(f, "sku"), "no product has SKU %q", l.sku)
		}
		pf := facts[l.sku]
		base, err := convertField(pf, values[i], l.qty.GetUnit(), path(f, "quantity"))
		if err != nil {
			return nil, nil, err
		}
		out[i] = requestLine{index: l.index, sku: l.sku, base: base, unit: pf.BaseUnit}
	}
	return out, facts, nil
}

// lineInput is a shipment or return line as requested.
type lineInput struct {
	index int32
	sku   string
	qty   *typev1.Quantity
}

// ---------------------------------------------------------------------------
// Shipments.

func (k *core) createShipment(ctx context.Context, p auth.Principal, in *fulfillmentv1.Shipment) (*fulfillmentv1.Shipment, error) {
	if in == nil {
		return nil, invalid("shipment", "is required")
	}
	ch := &checker{}
	if in.GetOrderId() == "" {
		ch.add("shipment.order_id", "is required")
	}
	if in.GetSiteId() == "" {
		ch.add("shipment.site_id", "is required")
	}
	if err := ch.err(); err != nil {
		return nil, err
	}
	inputs := make([]lineInput, len(in.GetLines()))
	for i, l := range in.GetLines() {
		inputs[i] = lineInput{index: l.GetOrderLineIndex(), sku: l.GetSku(), qty: l.GetQuantity()}
	}
	lines, _, err := k.prepareLines(ctx, "shipment", inputs)
	if err != nil {
		return nil, err
	}
	var out *shipment
	if id := reqctx.CreatedBefore(ctx); id != "" {
		// A keyed retry after a crash lost the answer: the shipment exists.
		err = k.repo.view(ctx, func(tx txn) error {
			s, verr := visibleShipment(tx, p, id)
			if verr == nil {
				out = s
			}
			return nil
		})
		if err == nil && out != nil {
			return shipmentProto(out), nil
		}
	}
	if err := k.checkShippable(ctx, in.GetOrderId()); err != nil {
		return nil, err
	}
	err = k.repo.update(ctx, func(tx txn) error {
		out = nil
		now := k.now()
		site, err := visibleSite(tx, p, in.GetSiteId())
		if err != nil {
			return err
		}
		r, err := tx.reservationByRef(in.GetOrderId())
		if err != nil {
			return err
		}
		if r == nil || !p.SeesRegion(r.ShipToRegion) || r.Kind != fulfillmentv1.ReservationKind_RESERVATION_KIND_HARD ||
			r.Status != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE {
			return precondition(ReasonNoReservation, "shipment.order_id", "order %s has no active hard reservation", in.GetOrderId())
		}
		old := cloneReservation(r)
		s := &shipment{
			ID: ids.New("shp"), OrderID: in.GetOrderId(), SiteID: site.GetId(), ReservationID: r.ID, Region: r.ShipToRegion,
			Status: fulfillmentv1.ShipmentStatus_SHIPMENT_STATUS_PLANNED, CreateTime: now,
		}
		for i, l := range lines {
			f := path("shipment", indexed("lines", i))
			rl := findReservedLine(r, l.index, site.GetId())
			if rl == nil {
				return precondition(ReasonNoReservation, path(f, "order_line_index"),
					"order line %d of order %s has no stock reserved at site %s", l.index, in.GetOrderId(), site.GetId())
			}
			if rl.SKU != l.sku {
				return invalidReason(ReasonOrderMismatch, path(f, "sku"), "order line %d is %s, not %s", l.index, rl.SKU, l.sku)
			}
			if rem := rl.remaining(); money.Cmp(l.base, rem) > 0 {
				return &preconditionError{Reason: ReasonExceedsReservation, Field: path(f, "quantity"),
					Message: fmt.Sprintf("order line %d has %s %s reserved at %s and not yet in a shipment; %s %s cannot ship",
						l.index, money.Format(rem), rl.Unit, site.GetId(), money.Format(l.base), l.unit),
					Meta: map[string]string{"remaining": money.Format(rem), "unit": rl.Unit}}
			}
			rl.Allocated = money.Format(money.Add(num(rl.Allocated), l.base))
			s.Lines = append(s.Lines, shipmentLine{Index: l.index, SKU: l.sku, Unit: l.unit, Quantity: money.Format(l.base)})
		}
		r.UpdateTime = now
		if err := tx.putReservation(old, r); err != nil {
			return err
		}
		if err := tx.putShipment(s); err != nil {
			return err
		}
		if err := tx.attach(s.ID); err != nil {
			return err
		}
		out = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	return shipmentProto(out), nil
}

// findReservedLine returns the reservation's line for an order line at a
// site; a line is reserved at most once per site.
func findReservedLine(r *reservation, index int32, siteID string) *reservedLine {
	for i := range r.Lines {
		if r.Lines[i].LineIndex == index && r.Lines[i].SiteID == siteID {
			return &r.Lines[i]
		}
	}
	return nil
}

func cloneReservation(r *reservation) *reservation {
	c := *r
	c.Lines = append([]reservedLine(nil), r.Lines...)
	return &c
}

func shipmentProto(s *shipment) *fulfillmentv1.Shipment {
	out := &fulfillmentv1.Shipment{
		Id: s.ID, OrderId: s.OrderID, SiteId: s.SiteID, Status: s.Status,
		Carrier: s.Carrier, TrackingNumber: s.Tracking, InvoiceId: s.InvoiceID,
		CreateTime: ts(s.CreateTime), ConfirmTime: ts(s.ConfirmTime),
	}
	for _, l := range s.Lines {
		out.Lines = append(out.Lines, &fulfillmentv1.ShipmentLine{OrderLineIndex: l.Index, Sku: l.SKU, Quantity: quantity(num(l.Quantity), l.Unit)})
	}
	return out
}

func visibleShipment(tx txn, p auth.Principal, id string) (*shipment, error) {
	s, err := tx.shipment(id)
	if err != nil {
		return nil, err
	}
	if s == nil || !p.SeesRegion(s.Region) {
		return nil, &notFoundError{Kind: "shipment", ID: id}
	}
	return s, nil
}

func (k *core) getShipment(ctx context.Context, p auth.Principal, id string) (*fulfillmentv1.Shipment, error) {
	var out *fulfillmentv1.Shipment
	err := k.repo.view(ctx, func(tx txn) error {
		s, err := visibleShipment(tx, p, id)
		if err != nil {
			return err
		}
		out = shipmentProto(s)
		return nil
	})
	return out, err
}

func (k *core) listShipments(ctx context.Context, p auth.Principal, req *fulfillmentv1.ListShipmentsRequest) (*fulfillmentv1.ListShipmentsResponse, error) {
	out, next, err := recordPage(ctx, k, req.GetPageSize(), req.GetPageToken(), []string{"shipments", req.GetOrderId()},
		func(tx txn, afterID string, fn func(*shipment) bool) error {
			return tx.scanShipments(req.GetOrderId(), afterID, fn)
		},
		func(s *shipment) string { return s.ID },
		func(s *shipment) bool { return p.SeesRegion(s.Region) },
		shipmentProto)
	if err != nil {
		return nil, err
	}
	return &fulfillmentv1.ListShipmentsResponse{Shipments: out, NextPageToken: next}, nil
}

// sameConfirmation answers a repeated ConfirmShipment: the same carrier
// and tracking number is a retry and gets the shipment as it is; anything
// else is a conflict.
func sameConfirmation(s *shipment, carrier, tracking string) (*fulfillmentv1.Shipment, error) {
	if s.Carrier == carrier && s.Tracking == tracking {
		return shipmentProto(s), nil
	}
	return nil, &conflictError{Reason: ReasonShipmentConfirmed,
		Message: fmt.Sprintf("shipment %s was already confirmed with carrier %s, tracking number %s", s.ID, s.Carrier, s.Tracking),
		Meta:    map[string]string{"field": "id", "carrier": s.Carrier, "tracking_number": s.Tracking}}
}

func (k *core) confirmShipment(ctx context.Context, p auth.Principal, req *fulfillmentv1.ConfirmShipmentRequest) (*fulfillmentv1.Shipment, error) {
	ch := &checker{}
	if req.GetCarrier() == "" {
		ch.add("carrier", "is required")
	}
	if req.GetTrackingNumber() == "" {
		ch.add("tracking_number", "is required")
	}
	if err := ch.err(); err != nil {
		return nil, err
	}
	// Read what the peers are asked about first: no network call is made
	// inside a write transaction.
	var s *shipment
	if err := k.repo.view(ctx, func(tx txn) error {
		var err error
		s, err = visibleShipment(tx, p, req.GetId())
		return err
	}); err != nil {
		return nil, err
	}
	if s.Status == fulfillmentv1.ShipmentStatus_SHIPMENT_STATUS_CONFIRMED {
		return sameConfirmation(s, req.GetCarrier(), req.GetTrackingNumber())
	}
	bill, err := k.priceShipment(ctx, s)
	if err != nil {
		return nil, err
	}

	var out *fulfillmentv1.Shipment
	err = k.repo.update(ctx, func(tx txn) error {
		out = nil
		now := k.now()
		s, err := visibleShipment(tx, p, req.GetId())
		if err != nil {
			return err
		}
		if s.Status == fulfillmentv1.ShipmentStatus_SHIPMENT_STATUS_CONFIRMED {
			out, err = sameConfirmation(s, req.GetCarrier(), req.GetTrackingNumber())
			return err
		}
		r, err := tx.reservation(s.ReservationID)
		if err != nil {
			return err
		}
		if r == nil || r.Status != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE {
			return precondition(ReasonReservationNotActive, "id",
				"the reservation of order %s was released; shipment %s can no longer ship", s.OrderID, s.ID)
		}
		site, err := tx.site(s.SiteID)
		if err != nil {
			return err
		}
		oldRes := cloneReservation(r)
		var skus []string
		for _, l := range s.Lines {
			if err := shipLine(tx, p, r, s, l, now); err != nil {
				return err
			}
			if !slices.Contains(skus, l.SKU) {
				skus = append(skus, l.SKU)
			}
		}
		for _, sku := range skus {
			b, err := tx.balance(s.SiteID, sku)
			if err != nil {
				return err
			}
			if err := emitInventory(tx, b, site.GetRegion(), fulfillmentv1.LedgerReason_LEDGER_REASON_SHIPMENT, now); err != nil {
				return err
			}
		}
		if fullyShipped(r) {
			r.Status = fulfillmentv1.ReservationStatus_RESERVATION_STATUS_CONSUMED
		}
		r.UpdateTime = now
		if err := tx.putReservation(oldRes, r); err != nil {
			return err
		}

		inv := bill.invoice(ids.New("inv"), s, now)
		if err := tx.putInvoice(inv); err != nil {
			return err
		}
		for _, bl := range bill.lines {
			if err := recordShipped(tx, bill, bl); err != nil {
				return err
			}
		}
		s.Status = fulfillmentv1.ShipmentStatus_SHIPMENT_STATUS_CONFIRMED
		s.Carrier, s.Tracking = req.GetCarrier(), req.GetTrackingNumber()
		s.ConfirmTime, s.InvoiceID = now, inv.ID
		if err := tx.putShipment(s); err != nil {
			return err
		}
		out = shipmentProto(s)
		if err := tx.emit(events.Subject("shipments", s.ID), s.Region, &eventsv1.ShipmentConfirmed{Shipment: out}); err != nil {
			return err
		}
		if err := tx.emit(events.Subject("invoices", inv.ID), inv.Region, &eventsv1.InvoicePosted{Invoice: invoiceProto(inv)}); err != nil {
			return err
		}
		if inv.Status == fulfillmentv1.InvoiceStatus_INVOICE_STATUS_PAID {
			return tx.emit(events.Subject("invoices", inv.ID), inv.Region, &eventsv1.InvoicePaid{Invoice: invoiceProto(inv)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// shipLine moves one shipment line out of stock: the reservation's line
// gives up what the shipment held, on hand and reserved drop, the hard
// demand of the line's need date is met, and the ledger records it.
func shipLine(tx txn, p auth.Principal, r *reservation, s *shipment, l shipmentLine, now time.Time) error {
	q := num(l.Quantity)
	rl := findReservedLine(r, l.Index, s.SiteID)
	if rl == nil || money.Cmp(num(rl.Allocated), q) < 0 {
		return fmt.Errorf("shipment %s line %d: reservation %s does not hold the quantity", s.ID, l.Index, r.ID)
	}
	rl.Allocated = money.Format(money.Sub(num(rl.Allocated), q))
	rl.Shipped = money.Format(money.Add(num(rl.Shipped), q))
	b, err := tx.balance(s.SiteID, l.SKU)
	if err != nil {
		return err
	}
	if b == nil {
		b = &balance{SiteID: s.SiteID, SKU: l.SKU, Unit: l.Unit, OnHand: "0", Reserved: "0"}
	}
	onHand := money.Sub(num(b.OnHand), q)
	if onHand.Sign() < 0 {
		// The reservation counted on production that has not arrived.
		return &preconditionError{Reason: ReasonInsufficientStock, Field: "id",
			Message: fmt.Sprintf("%s at %s has %s %s on hand; shipment %s needs %s %s for order line %d",
				l.SKU, s.SiteID, money.Format(num(b.OnHand)), b.Unit, s.ID, money.Format(q), l.Unit, l.Index),
			Meta: map[string]string{"sku": l.SKU, "site_id": s.SiteID, "on_hand": money.Format(num(b.OnHand))}}
	}
	reserved := money.Sub(num(b.Reserved), q)
	if reserved.Sign() < 0 {
		reserved = money.Zero()
	}
	b.OnHand, b.Reserved, b.UpdateTime = money.Format(onHand), money.Format(reserved), now
	if err := tx.putBalance(b); err != nil {
		return err
	}
	if err := tx.addHardDemand(s.SiteID, l.SKU, rl.NeedTime, money.Sub(money.Zero(), q)); err != nil {
		return err
	}
	return tx.appendLedger(&ledgerEntry{
		ID: ids.New("led"), SiteID: s.SiteID, SKU: l.SKU, Unit: b.Unit,
		Reason:      fulfillmentv1.LedgerReason_LEDGER_REASON_SHIPMENT,
		OnHandDelta: money.Format(money.Sub(money.Zero(), q)), ReservedDelta: money.Format(money.Sub(money.Zero(), q)),
		OnHandAfter: b.OnHand, ReservedAfter: b.Reserved, Reference: s.ID, Actor: p.KeyID, Time: now,
	})
}

func fullyShipped(r *reservation) bool {
	for _, l := range r.Lines {
		if l.unshipped().Sign() > 0 {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Invoicing.

// billing is the priced content of one shipment's invoice, computed
// before the write transaction from the order's lines.
type billing struct {
	orderID, customerID, region, currency string
	scale                                 int
	taxRate                               *money.Decimal
	lines                                 []billedLine
}

// billedLine is one invoice line and the order-line facts returns need.
type billedLine struct {
	line       invoiceLine
	base       *money.Decimal // shipped, in the base unit
	baseUnit   string
	price      *money.Decimal // per priceUnit
	priceUnit  string
	unitToBase *money.Decimal // base units in one priceUnit
}

// checkShippable refuses a shipment for an order that may not ship: one on
// hold (it keeps its reservation while credit is validated), pending,
// cancelled or already shipped in full.
func (k *core) checkShippable(ctx context.Context, orderID string) error {
	if k.orders == nil {
		return &PeerUnavailableError{Peer: "order", Err: errors.New("no order directory is configured")}
	}
	lines, err := k.orders.OrderLines(ctx, orderID)
	if errors.Is(err, ErrUnknownOrder) {
		return nil // the reservation check names what is missing
	}
	if err != nil {
		return err
	}
	if len(lines) == 0 {
		return nil
	}
	switch st := lines[0].OrderStatus; st {
	case orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, orderv1.OrderStatus_ORDER_STATUS_PARTIALLY_SHIPPED:
		return nil
	default:
		return precondition(ReasonOrderNotShippable, "shipment.order_id", "order %s is %s and cannot ship", orderID, strings.TrimPrefix(st.String(), "ORDER_STATUS_"))
	}
}

// priceShipment asks the order for its lines and prices every shipment
// line with them. The order's unit price is per the ordered unit; a line
// is billed in that unit when the shipped quantity is a whole, exact
// number of it, else in the base unit at the price per base unit. Either
// way its net amount is shipped base quantity × price ÷ (base units per
// ordered unit), rounded half-even to the currency once.
func (k *core) priceShipment(ctx context.Context, s *shipment) (*billing, error) {
	if k.orders == nil {
		return nil, &PeerUnavailableError{Peer: "order", Err: errors.New("no order directory is configured")}
	}
	priced, err := k.orders.OrderLines(ctx, s.OrderID)
	if errors.Is(err, ErrUnknownOrder) {
		return nil, precondition(ReasonOrderUnknown, "id", "the order service does not know order %s of shipment %s", s.OrderID, s.ID)
	}
	if err != nil {
		return nil, err
	}
	byIndex := map[int32]PricedLine{}
	for _, pl := range priced {
		byIndex[pl.Index] = pl
	}
	skus := make([]string, len(s.Lines))
	for i, l := range s.Lines {
		skus[i] = l.SKU
	}
	facts, unknown, err := k.catalog(ctx, skus...)
	if err != nil {
		return nil, err
	}
	b := &billing{orderID: s.OrderID}
	for i, l := range s.Lines {
		pl, ok := byIndex[l.Index]
		switch {
		case !ok || pl.SKU != l.SKU:
			return nil, precondition(ReasonOrderMismatch, "id", "order %s has no line %d for %s", s.OrderID, l.Index, l.SKU)
		case pl.UnitPrice == nil:
			return nil, precondition(ReasonOrderNotPriced, "id", "order %s line %d has no confirmed price yet", s.OrderID, l.Index)
		case unknown[l.SKU]:
			return nil, precondition(ReasonOrderMismatch, "id", "product %s of order line %d no longer exists", l.SKU, l.Index)
		}
		if i == 0 {
			scale, known := money.MinorUnits(pl.Currency)
			if !known {
				return nil, precondition(ReasonOrderMismatch, "id", "order %s is in %q, not an ISO 4217 currency", s.OrderID, pl.Currency)
			}
			b.customerID, b.region, b.currency, b.scale = pl.CustomerID, pl.ShipToRegion, pl.Currency, scale
			b.taxRate = k.taxRate(pl.ShipToRegion)
		}
		f := facts[l.SKU]
		if f.BaseUnit != l.Unit {
			return nil, precondition(ReasonBaseUnitChanged, "id", "shipment %s counts %s in %s but the product's base unit is now %s", s.ID, l.SKU, l.Unit, f.BaseUnit)
		}
		unit, ok := f.Units[pl.Unit]
		if !ok {
			return nil, precondition(ReasonOrderMismatch, "id", "order %s line %d is priced per %q, which %s does not define", s.OrderID, l.Index, pl.Unit, l.SKU)
		}
		b.lines = append(b.lines, billLine(l, num(l.Quantity), f, pl, unit.ToBase, b.scale))
	}
	return b, nil
}

// billLine prices one shipped line; see priceShipment.
func billLine(l shipmentLine, base *money.Decimal, f ProductFacts, pl PricedLine, toBase *money.Decimal, scale int) billedLine {
	bl := billedLine{base: base, baseUnit: f.BaseUnit, price: pl.UnitPrice, priceUnit: pl.Unit, unitToBase: toBase}
	net := roundAmount(mulDiv(base, pl.UnitPrice, toBase), scale)
	if q, ok := f.FromBase(base, pl.Unit); ok {
		bl.line = invoiceLine{Index: l.Index, SKU: l.SKU, Quantity: money.Format(q), Unit: pl.Unit,
			UnitPrice: money.Format(pl.UnitPrice), Net: money.Format(net)}
		return bl
	}
	// Shown per base unit; the net amount still comes from the exact price.
	perBase := money.RoundHalfEven(mulDiv(pl.UnitPrice, apd.New(1, 0), toBase), maxQuantityFracDigits)
	bl.line = invoiceLine{Index: l.Index, SKU: l.SKU, Quantity: money.Format(base), Unit: f.BaseUnit,
		UnitPrice: money.Format(perBase), Net: money.Format(net)}
	return bl
}

// divCtx divides with 60 significant digits. The quotients it computes
// (amount × quantity ÷ unit factor) have denominators far below 10^60, so
// a quotient that is not exact is never within 10^-60 of a rounding tie,
// and rounding it to a currency afterwards is exactly right.
var divCtx = apd.Context{Precision: 60, MaxExponent: apd.MaxExponent, MinExponent: apd.MinExponent, Traps: apd.DefaultTraps, Rounding: apd.RoundHalfEven}

// mulDiv returns a × b ÷ c.
func mulDiv(a, b, c *money.Decimal) *money.Decimal {
	num := money.Mul(a, b)
	var r money.Decimal
	if _, err := divCtx.Quo(&r, num, c); err != nil {
		panic(fmt.Sprintf("fulfillment: %s ÷ %s: %v", num, c, err))
	}
	return &r
}

func roundAmount(d *money.Decimal, scale int) *money.Decimal {
	return reduce(money.RoundHalfEven(d, scale))
}

// invoice builds the invoice of a shipment: net is the sum of the rounded
// line amounts, tax is rounded once on the net total.
func (b *billing) invoice(id string, s *shipment, now time.Time) *invoice {
	inv := &invoice{
		ID: id, OrderID: b.orderID, ShipmentID: s.ID, CustomerID: b.customerID, Region: b.region, Currency: b.currency,
		TaxRate: money.Format(b.taxRate), Paid: "0", Status: fulfillmentv1.InvoiceStatus_INVOICE_STATUS_POSTED, PostTime: now,
	}
	net := money.Zero()
	for _, bl := range b.lines {
		inv.Lines = append(inv.Lines, bl.line)
		net = money.Add(net, num(bl.line.Net))
	}
	tax := roundAmount(money.Mul(net, b.taxRate), b.scale)
	inv.Net, inv.Tax, inv.Gross = money.Format(net), money.Format(tax), money.Format(money.Add(net, tax))
	if num(inv.Gross).Sign() == 0 {
		inv.Status, inv.PaidTime = fulfillmentv1.InvoiceStatus_INVOICE_STATUS_PAID, now
	}
	return inv
}

// recordShipped adds a billed line to what fulfillment knows of its order
// line, the ground returns are checked and credited on.
func recordShipped(tx txn, b *billing, bl billedLine) error {
	ol, err := tx.orderLine(b.orderID, bl.line.Index)
	if err != nil {
		return err
	}
	if ol == nil {
		ol = &orderLine{OrderID: b.orderID, Index: bl.line.Index, SKU: bl.line.SKU, BaseUnit: bl.baseUnit, Shipped: "0", Returned: "0"}
	}
	ol.Shipped = money.Format(money.Add(num(ol.Shipped), bl.base))
	ol.UnitPrice, ol.PriceUnit, ol.PriceUnitToBase = money.Format(bl.price), bl.priceUnit, money.Format(bl.unitToBase)
	ol.Currency, ol.TaxRate, ol.CustomerID, ol.Region = b.currency, money.Format(b.taxRate), b.customerID, b.region
	return tx.putOrderLine(ol)
}

func invoiceProto(inv *invoice) *fulfillmentv1.Invoice {
	out := &fulfillmentv1.Invoice{
		Id: inv.ID, OrderId: inv.OrderID, ShipmentId: inv.ShipmentID, CustomerId: inv.CustomerID,
		NetTotal: moneyOf(inv.Net, inv.Currency), TaxRate: inv.TaxRate, TaxTotal: moneyOf(inv.Tax, inv.Currency),
		GrossTotal: moneyOf(inv.Gross, inv.Currency), PaidTotal: moneyOf(inv.Paid, inv.Currency),
		Status: inv.Status, PostTime: ts(inv.PostTime), PaidTime: ts(inv.PaidTime),
	}
	for _, l := range inv.Lines {
		out.Lines = append(out.Lines, &fulfillmentv1.InvoiceLine{
			OrderLineIndex: l.Index, Sku: l.SKU, Quantity: quantity(num(l.Quantity), l.Unit),
			UnitPrice: &typev1.Money{CurrencyCode: inv.Currency, Amount: priceString(num(l.UnitPrice), inv.Currency)},
			NetAmount: moneyOf(l.Net, inv.Currency),
		})
	}
	return out
}

// priceString renders a unit price with at least the currency's minor
// digits ("12.50") and every digit it has beyond them ("0.125").
func priceString(d *money.Decimal, currency string) string {
	scale, _ := money.MinorUnits(currency)
	return money.FormatScale(d, max(scale, money.Scale(reduce(d))))
}

func visibleInvoice(tx txn, p auth.Principal, id string) (*invoice, error) {
	inv, err := tx.invoice(id)
	if err != nil {
		return nil, err
	}
	if inv == nil || !p.SeesRegion(inv.Region) {
		return nil, &notFoundError{Kind: "invoice", ID: id}
	}
	return inv, nil
}

func (k *core) getInvoice(ctx context.Context, p auth.Principal, id string) (*fulfillmentv1.Invoice, error) {
	var out *fulfillmentv1.Invoice
	err := k.repo.view(ctx, func(tx txn) error {
		inv, err := visibleInvoice(tx, p, id)
		if err != nil {
			return err
		}
		out = invoiceProto(inv)
		return nil
	})
	return out, err
}

func (k *core) listInvoices(ctx context.Context, p auth.Principal, req *fulfillmentv1.ListInvoicesRequest) (*fulfillmentv1.ListInvoicesResponse, error) {
	out, next, err := recordPage(ctx, k, req.GetPageSize(), req.GetPageToken(), []string{"invoices", req.GetOrderId(), req.GetCustomerId()},
		func(tx txn, afterID string, fn func(*invoice) bool) error {
			return tx.scanInvoices(req.GetOrderId(), req.GetCustomerId(), afterID, fn)
		},
		func(inv *invoice) string { return inv.ID },
		func(inv *invoice) bool {
			return p.SeesRegion(inv.Region) && (req.GetCustomerId() == "" || inv.CustomerID == req.GetCustomerId())
		},
		invoiceProto)
	if err != nil {
		return nil, err
	}
	return &fulfillmentv1.ListInvoicesResponse{Invoices: out, NextPageToken: next}, nil
}

// ---------------------------------------------------------------------------
// Payments.

func (k *core) recordPayment(ctx context.Context, p auth.Principal, req *fulfillmentv1.RecordPaymentRequest) (*fulfillmentv1.Invoice, error) {
	m := req.GetAmount()
	if m == nil {
		return nil, invalid("amount", "is required")
	}
	amount, err := money.Parse(m.GetAmount())
	switch {
	case err != nil:
		return nil, invalid("amount.amount", "%q is not a decimal number", m.GetAmount())
	case amount.Sign() <= 0:
		return nil, invalid("amount.amount", "must be greater than zero")
	}
	var out *fulfillmentv1.Invoice
	err = k.repo.update(ctx, func(tx txn) error {
		out = nil
		now := k.now()
		inv, err := visibleInvoice(tx, p, req.GetId())
		if err != nil {
			return err
		}
		if m.GetCurrencyCode() != inv.Currency {
			return invalidReason(ReasonCurrencyMismatch, "amount.currency_code", "invoice %s is in %s, not %s", inv.ID, inv.Currency, m.GetCurrencyCode())
		}
		if scale, _ := money.MinorUnits(inv.Currency); money.Scale(reduce(amount)) > scale {
			return invalid("amount.amount", "%s has %d decimal places", inv.Currency, scale)
		}
		if req.GetReference() != "" {
			prev, err := tx.paymentByRef(inv.ID, req.GetReference())
			if err != nil {
				return err
			}
			if prev != nil {
				if money.Cmp(num(prev.Amount), amount) != 0 {
					return &conflictError{Reason: ReasonPaymentReferenceReused,
						Message: fmt.Sprintf("payment %s on invoice %s was recorded for %s %s", req.GetReference(), inv.ID, prev.Amount, inv.Currency),
						Meta:    map[string]string{"field": "reference", "payment_id": prev.ID}}
				}
				out = invoiceProto(inv) // the same payment again: recorded once
				return nil
			}
		}
		if inv.Status == fulfillmentv1.InvoiceStatus_INVOICE_STATUS_PAID {
			return precondition(ReasonInvoicePaid, "id", "invoice %s is paid in full", inv.ID)
		}
		outstanding := money.Sub(num(inv.Gross), num(inv.Paid))
		if money.Cmp(amount, outstanding) > 0 {
			scale, _ := money.MinorUnits(inv.Currency)
			return invalidReason(ReasonOverpayment, "amount", "%s %s is more than the %s %s outstanding on invoice %s",
				money.FormatScale(amount, scale), inv.Currency, money.FormatScale(outstanding, scale), inv.Currency, inv.ID)
		}
		pay := &payment{ID: ids.New("pay"), InvoiceID: inv.ID, Amount: money.Format(amount), Reference: req.GetReference(), Time: now}
		if err := tx.putPayment(pay); err != nil {
			return err
		}
		inv.Paid = money.Format(money.Add(num(inv.Paid), amount))
		paid := money.Cmp(num(inv.Paid), num(inv.Gross)) == 0
		if paid {
			inv.Status, inv.PaidTime = fulfillmentv1.InvoiceStatus_INVOICE_STATUS_PAID, now
		}
		if err := tx.putInvoice(inv); err != nil {
			return err
		}
		out = invoiceProto(inv)
		if paid {
			return tx.emit(events.Subject("invoices", inv.ID), inv.Region, &eventsv1.InvoicePaid{Invoice: out})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
