package fulfillment

import (
	"context"
	"errors"
	"slices"
	"time"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/money"
)

// ---------------------------------------------------------------------------
// Availability.

// basket is a request's lines, converted to base units outside any
// transaction (the catalog is a network call).
type basket struct {
	lines []lineResult
	facts map[string]ProductFacts
}

// prepareBasket checks the lines of a request and converts them. A line of
// an unknown product or unit, or one that does not convert, gets its
// reason; only malformed input or a catalog outage fails the call.
func (k *core) prepareBasket(ctx context.Context, in []*fulfillmentv1.AvailabilityLine) (*basket, error) {
	if len(in) == 0 {
		return nil, invalid("lines", "at least one line is required")
	}
	ch := &checker{}
	values := make([]*money.Decimal, len(in))
	skus := make([]string, 0, len(in))
	for i, l := range in {
		// Field paths are built only for a line at fault.
		if l.GetSku() == "" {
			ch.add(path(indexed("lines", i), "sku"), "is required")
		}
		v, err := parseQuantity("", l.GetQuantity(), false)
		if err != nil {
			var inv *invalidError
			if errors.As(err, &inv) {
				for _, fv := range inv.Violations {
					fv.Field = path(indexed("lines", i), "quantity", fv.Field)
					ch.v = append(ch.v, fv)
				}
			}
			continue
		}
		values[i] = v
		skus = append(skus, l.GetSku())
	}
	if err := ch.err(); err != nil {
		return nil, err
	}
	facts, unknown, err := k.catalog(ctx, skus...)
	if err != nil {
		return nil, err
	}
	b := &basket{facts: facts, lines: make([]lineResult, len(in))}
	for i, l := range in {
		r := lineResult{index: i, sku: l.GetSku()}
		f, ok := facts[l.GetSku()]
		switch {
		case !ok || unknown[l.GetSku()]:
			r.reason = LineUnknownProduct
		default:
			r.baseUnit = f.BaseUnit
			base, err := f.ToBase(values[i], l.GetQuantity().GetUnit())
			switch {
			case errors.Is(err, ErrUnknownUnit):
				r.reason = LineUnknownUnit
			case err != nil:
				r.reason = LineNotConvertible
			default:
				r.base = base
			}
		}
		b.lines[i] = r
	}
	return b, nil
}

// loadAllocator reads the supply of every SKU of the basket.
func loadAllocator(tx txn, b *basket, region string, now time.Time) (*allocator, error) {
	a := &allocator{now: now, region: region, items: map[string][]*supply{}}
	for _, l := range b.lines {
		if l.base == nil {
			continue
		}
		if _, done := a.items[l.sku]; done {
			continue
		}
		sups, err := loadSupplies(tx, b.facts[l.sku], now)
		if err != nil {
			return nil, err
		}
		a.items[l.sku] = sups
	}
	return a, nil
}

// loadSupplies reads the supply of one SKU at every site that has a
// balance or an open plan for it, in site id order. The supplies are the
// allocator's own: the stored ones are shared and never changed.
func loadSupplies(tx txn, f ProductFacts, now time.Time) ([]*supply, error) {
	items, err := tx.supply(f.SKU)
	if err != nil {
		return nil, err
	}
	out := make([]*supply, 0, len(items))
	for i := range items {
		it := &items[i]
		s := &supply{site: it.site, onHand: it.onHand, plans: slices.Clip(it.plans)}
		if it.onHand == nil {
			s.onHand = money.Zero()
		} else if it.unit != f.BaseUnit {
			continue // stock counted in a unit the product no longer has as base
		}
		// Room for the allocations of a basket's lines; take appends here.
		s.demand = make([]dated, 0, len(it.hard)+len(it.soft)+2)
		s.demand = append(s.demand, it.hard...)
		for _, d := range it.soft {
			if d.live(now) {
				s.demand = append(s.demand, d.dated)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// allocateBasket covers every convertible line in request order.
func allocateBasket(a *allocator, b *basket, split bool) []lineResult {
	out := slices.Clone(b.lines)
	for i := range out {
		if out[i].base == nil {
			continue
		}
		srcs, ok := a.allocate(out[i].sku, out[i].base, split)
		if !ok {
			out[i].reason = LineShort
			continue
		}
		out[i].covered, out[i].sources = true, srcs
	}
	return out
}

func linesProto(lines []lineResult) []*fulfillmentv1.LineAvailability {
	out := make([]*fulfillmentv1.LineAvailability, len(lines))
	for i, l := range lines {
		la := &fulfillmentv1.LineAvailability{Index: int32(l.index), Sku: l.sku, Covered: l.covered, Reason: l.reason}
		if l.base != nil {
			la.BaseQuantity = quantity(l.base, l.baseUnit)
		}
		for _, s := range l.sources {
			la.Sources = append(la.Sources, &fulfillmentv1.SupplySource{
				SiteId: s.site.ID, Quantity: quantity(s.qty, l.baseUnit), AvailableTime: ts(s.at),
				TransitDays: s.transit, Kind: s.kind,
			})
		}
		if l.covered {
			la.PromisedTime = ts(l.promised())
		}
		out[i] = la
	}
	return out
}

func (k *core) checkAvailability(ctx context.Context, p auth.Principal, req *fulfillmentv1.CheckAvailabilityRequest) (*fulfillmentv1.CheckAvailabilityResponse, error) {
	if req.GetShipToRegion() == "" {
		return nil, invalid("ship_to_region", "is required")
	}
	if err := checkScope(p, "ship_to_region", req.GetShipToRegion()); err != nil {
		return nil, err
	}
	b, err := k.prepareBasket(ctx, req.GetLines())
	if err != nil {
		return nil, err
	}
	var resp *fulfillmentv1.CheckAvailabilityResponse
	err = k.repo.view(ctx, func(tx txn) error {
		now := k.now()
		a, err := loadAllocator(tx, b, req.GetShipToRegion(), now)
		if err != nil {
			return err
		}
		resp = &fulfillmentv1.CheckAvailabilityResponse{
			Lines:     linesProto(allocateBasket(a, b, req.GetAllowSplit())),
			CheckTime: ts(now),
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ---------------------------------------------------------------------------
// Reservations.

func (k *core) createReservation(ctx context.Context, p auth.Principal, req *fulfillmentv1.CreateReservationRequest) (*fulfillmentv1.CreateReservationResponse, error) {
	ch := &checker{}
	kind := req.GetKind()
	soft := kind == fulfillmentv1.ReservationKind_RESERVATION_KIND_SOFT
	if kind != fulfillmentv1.ReservationKind_RESERVATION_KIND_HARD && !soft {
		ch.add("kind", "must be HARD or SOFT")
	}
	if req.GetReferenceId() == "" {
		ch.add("reference_id", "is required")
	}
	if req.GetShipToRegion() == "" {
		ch.add("ship_to_region", "is required")
	}
	var expire time.Time
	now := k.now()
	switch {
	case soft && req.GetExpireTime() == nil:
		ch.add("expire_time", "is required for a soft hold")
	case soft:
		expire = req.GetExpireTime().AsTime().UTC().Truncate(time.Microsecond)
		if !expire.After(now) {
			ch.add("expire_time", "must be in the future")
		} else if expire.Sub(now) > MaxSoftHold {
			ch.add("expire_time", "must be at most %d days ahead", int(MaxSoftHold/(24*time.Hour)))
		}
	case req.GetExpireTime() != nil:
		ch.add("expire_time", "only soft holds expire; a hard reservation is released")
	}
	if err := ch.err(); err != nil {
		return nil, err
	}
	if err := checkScope(p, "ship_to_region", req.GetShipToRegion()); err != nil {
		return nil, err
	}
	b, err := k.prepareBasket(ctx, req.GetLines())
	if err != nil {
		return nil, err
	}

	// The answer to a new reservation is built after the commit from what
	// the transaction decided: the store's writer runs one request's
	// function after another, and rendering protos there would hold up
	// the others.
	var (
		resp   *fulfillmentv1.CreateReservationResponse // a reservation placed before
		lines  []lineResult
		placed *reservation // nil when a line could not be covered
	)
	err = k.repo.update(ctx, func(tx txn) error {
		resp, lines, placed = nil, nil, nil
		now := k.now()
		existing, err := tx.reservationByRef(req.GetReferenceId())
		if err != nil {
			return err
		}
		if existing != nil {
			if existing.Kind != kind {
				return &conflictError{Reason: ReasonReservationRefTaken,
					Message: "reference " + req.GetReferenceId() + " already has a reservation of another kind",
					Meta:    map[string]string{"field": "reference_id", "reservation_id": existing.ID}}
			}
			if !p.SeesRegion(existing.ShipToRegion) {
				return &conflictError{Reason: ReasonReservationRefTaken,
					Message: "reference " + req.GetReferenceId() + " already has a reservation",
					Meta:    map[string]string{"field": "reference_id"}}
			}
			// An order's reservation is returned whatever became of it: a
			// late retry of a cancelled order must not reserve again. A
			// quote may hold again once its previous hold is gone.
			if !soft || existing.liveSoft(now) {
				resp = &fulfillmentv1.CreateReservationResponse{Reservation: reservationProto(existing), Lines: existingLines(existing)}
				return nil
			}
			if existing.Status == fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE {
				if err := expireReservation(ctx, tx, existing, now); err != nil {
					return err
				}
			}
		}
		a, err := loadAllocator(tx, b, req.GetShipToRegion(), now)
		if err != nil {
			return err
		}
		lines = allocateBasket(a, b, req.GetAllowSplit())
		for _, l := range lines {
			if !l.covered {
				// All or nothing: the caller puts the order on hold.
				return nil
			}
		}
		r := &reservation{
			ID: ids.New("res"), Kind: kind, Status: fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE,
			ReferenceID: req.GetReferenceId(), ShipToRegion: req.GetShipToRegion(),
			ExpireTime: expire, CreateTime: now, UpdateTime: now,
		}
		for _, l := range lines {
			for _, s := range l.sources {
				rl := reservedLine{
					LineIndex: int32(l.index), SKU: l.sku, SiteID: s.site.ID, Unit: l.baseUnit,
					Quantity: money.Format(s.qty), AvailableTime: s.at, SourceKind: s.kind,
					TransitDays: s.transit, PromisedTime: s.arrival(), Allocated: "0", Shipped: "0",
				}
				if s.at.After(now) {
					rl.NeedTime = s.at
				}
				r.Lines = append(r.Lines, rl)
			}
		}
		if err := changeDemand(tx, p, r, b.facts, +1, now); err != nil {
			return err
		}
		if err := tx.putReservation(existing, r); err != nil {
			return err
		}
		placed = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	if resp != nil {
		return resp, nil
	}
	resp = &fulfillmentv1.CreateReservationResponse{Lines: linesProto(lines)}
	if placed != nil {
		resp.Reservation = reservationProto(placed)
	}
	return resp, nil
}

// changeDemand adds (sign +1) or removes (sign -1) a reservation's demand:
// for a hard reservation its lines' unshipped quantity from the item's
// reserved stock and hard demand, with a ledger entry per line; for a soft
// hold its lines from the soft demand. Each changed balance is announced
// once. facts may be nil when no balance can be new (removal).
func changeDemand(tx txn, p auth.Principal, r *reservation, facts map[string]ProductFacts, sign int, now time.Time) error {
	hard := r.Kind == fulfillmentv1.ReservationKind_RESERVATION_KIND_HARD
	type item struct{ site, sku string }
	var order []item
	balances := map[item]*balance{}
	for _, l := range r.Lines {
		q := num(l.Quantity)
		if hard {
			q = l.unshipped()
		}
		if q.Sign() <= 0 {
			continue
		}
		if sign < 0 {
			q = money.Sub(money.Zero(), q)
		}
		it := item{l.SiteID, l.SKU}
		if _, seen := balances[it]; !seen {
			order = append(order, it)
			b, err := tx.balance(l.SiteID, l.SKU)
			if err != nil {
				return err
			}
			if b == nil {
				b = &balance{SiteID: l.SiteID, SKU: l.SKU, Unit: l.Unit, OnHand: "0", Reserved: "0"}
				if f, ok := facts[l.SKU]; ok {
					b.Unit = f.BaseUnit
				}
			}
			balances[it] = b
		}
		if !hard {
			if err := tx.addSoftDemand(l.SiteID, l.SKU, r.ExpireTime, l.NeedTime, q); err != nil {
				return err
			}
			continue
		}
		if err := tx.addHardDemand(l.SiteID, l.SKU, l.NeedTime, q); err != nil {
			return err
		}
		b := balances[it]
		reserved := money.Add(num(b.Reserved), q)
		if reserved.Sign() < 0 {
			reserved = money.Zero() // never below zero, whatever history says
		}
		b.Reserved = money.Format(reserved)
		if err := tx.appendLedger(&ledgerEntry{
			ID: ids.New("led"), SiteID: b.SiteID, SKU: b.SKU, Unit: b.Unit,
			Reason:      fulfillmentv1.LedgerReason_LEDGER_REASON_RESERVATION,
			OnHandDelta: "0", ReservedDelta: money.Format(q), OnHandAfter: money.Format(num(b.OnHand)), ReservedAfter: b.Reserved,
			Reference: r.ID, Actor: p.KeyID, Time: now,
		}); err != nil {
			return err
		}
	}
	for _, it := range order {
		b := balances[it]
		if hard {
			b.UpdateTime = now
			if err := tx.putBalance(b); err != nil {
				return err
			}
		}
		site, err := tx.siteInfo(it.site)
		if err != nil {
			return err
		}
		region := ""
		if site != nil {
			region = site.Region
		}
		// A soft hold changes soft_held and available, a hard one reserved
		// and available: either way the balance changed.
		if err := emitInventory(tx, b, region, fulfillmentv1.LedgerReason_LEDGER_REASON_RESERVATION, now); err != nil {
			return err
		}
	}
	return nil
}

// existingLines renders a stored reservation as the availability it was
// placed with, for an idempotent repeat of CreateReservation.
func existingLines(r *reservation) []*fulfillmentv1.LineAvailability {
	var out []*fulfillmentv1.LineAvailability
	byIndex := map[int32]*fulfillmentv1.LineAvailability{}
	for _, l := range r.Lines {
		la, ok := byIndex[l.LineIndex]
		if !ok {
			la = &fulfillmentv1.LineAvailability{Index: l.LineIndex, Sku: l.SKU, Covered: true, BaseQuantity: quantity(money.Zero(), l.Unit)}
			byIndex[l.LineIndex] = la
			out = append(out, la)
		}
		la.BaseQuantity.Value = money.Format(money.Add(num(la.BaseQuantity.GetValue()), num(l.Quantity)))
		la.Sources = append(la.Sources, &fulfillmentv1.SupplySource{
			SiteId: l.SiteID, Quantity: quantity(num(l.Quantity), l.Unit), AvailableTime: ts(l.AvailableTime),
			TransitDays: l.TransitDays, Kind: l.SourceKind,
		})
		if la.PromisedTime == nil || l.PromisedTime.After(la.PromisedTime.AsTime()) {
			la.PromisedTime = ts(l.PromisedTime)
		}
	}
	return out
}

func reservationProto(r *reservation) *fulfillmentv1.Reservation {
	out := &fulfillmentv1.Reservation{
		Id: r.ID, Kind: r.Kind, Status: r.Status, ReferenceId: r.ReferenceID,
		ExpireTime: ts(r.ExpireTime), CreateTime: ts(r.CreateTime),
	}
	for _, l := range r.Lines {
		out.Lines = append(out.Lines, &fulfillmentv1.ReservedLine{
			LineIndex: l.LineIndex, Sku: l.SKU, SiteId: l.SiteID,
			Quantity: quantity(num(l.Quantity), l.Unit), PromisedTime: ts(l.PromisedTime),
		})
	}
	return out
}

// visibleReservation loads a reservation whose ship-to region the
// principal sees; any other is not found.
func visibleReservation(tx txn, p auth.Principal, id string) (*reservation, error) {
	r, err := tx.reservation(id)
	if err != nil {
		return nil, err
	}
	if r == nil || !p.SeesRegion(r.ShipToRegion) {
		return nil, &notFoundError{Kind: "reservation", ID: id}
	}
	return r, nil
}

func (k *core) releaseReservation(ctx context.Context, p auth.Principal, id string) (*fulfillmentv1.Reservation, error) {
	var out *fulfillmentv1.Reservation
	err := k.repo.update(ctx, func(tx txn) error {
		out = nil
		now := k.now()
		r, err := visibleReservation(tx, p, id)
		if err != nil {
			return err
		}
		switch {
		case r.Status != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE:
			// Released, expired or shipped already: nothing left to free.
		case r.Kind == fulfillmentv1.ReservationKind_RESERVATION_KIND_SOFT && !r.liveSoft(now):
			// The hold ran out before the release; say so.
			if err := expireReservation(ctx, tx, r, now); err != nil {
				return err
			}
		default:
			old := *r
			if err := changeDemand(tx, p, r, nil, -1, now); err != nil {
				return err
			}
			r.Status = fulfillmentv1.ReservationStatus_RESERVATION_STATUS_RELEASED
			r.UpdateTime = now
			if err := tx.putReservation(&old, r); err != nil {
				return err
			}
		}
		out = reservationProto(r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// expireReservation ends a soft hold whose time is up: its stock is free
// again and ReservationExpired says so. r is updated in place.
func expireReservation(ctx context.Context, tx txn, r *reservation, now time.Time) error {
	old := *r
	if err := changeDemand(tx, auth.System, r, nil, -1, now); err != nil {
		return err
	}
	r.Status = fulfillmentv1.ReservationStatus_RESERVATION_STATUS_EXPIRED
	r.UpdateTime = now
	if err := tx.putReservation(&old, r); err != nil {
		return err
	}
	return tx.emit(events.Subject("reservations", r.ID), r.ShipToRegion, &eventsv1.ReservationExpired{Reservation: reservationProto(r)})
}

// expireDue expires every soft hold whose time is up, a chunk per
// transaction, and returns how many it expired.
func (k *core) expireDue(ctx context.Context) (int, error) {
	total := 0
	for {
		n := 0
		err := k.repo.update(ctx, func(tx txn) error {
			n = 0
			now := k.now()
			due, err := tx.dueSoftHolds(now, expiryChunk)
			if err != nil {
				return err
			}
			for _, id := range due {
				r, err := tx.reservation(id)
				if err != nil {
					return err
				}
				if r == nil || r.Kind != fulfillmentv1.ReservationKind_RESERVATION_KIND_SOFT ||
					r.Status != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE || r.liveSoft(now) {
					continue
				}
				if err := expireReservation(ctx, tx, r, now); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < expiryChunk {
			return total, nil
		}
	}
}
