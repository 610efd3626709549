package order

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/reqctx"
)

// The quote-to-order saga (DESIGN.md). An order is persisted PENDING with
// its next step before any peer is asked for anything; each step then asks
// one peer and persists its outcome together with the next step, so a crash
// resumes at the step that was running and every remote step is safe to
// repeat (both reservations are idempotent by order id).
//
//	price   → confirm prices with productpricing (skipped while the source
//	          quote is valid: its prices stand)
//	reserve → release the source quote's soft hold, place the hard
//	          reservation; not coverable → ON_HOLD{INVENTORY_SHORT}
//	credit  → reserve credit; declined → ON_HOLD{CREDIT_DECLINED};
//	          customer service unavailable → ON_HOLD{CREDIT_PENDING}
//	accept  → ACCEPTED, OrderAccepted
//
// On the usual path (a PENDING order's first try at the reserve step) the
// reserve and credit steps run at once and an order that gets both is
// accepted in one commit (stepReserveAndCredit): three commits per order
// in all. A manual release, and a retry after fulfillment did not answer,
// run the steps in turn.
//
// Pricing or fulfillment unavailable leaves the order PENDING at its step.
// A step that fails for good (pricing refuses a line, a re-priced line no
// longer matches its expired quote) cancels the order with a reason naming
// the line, and whatever was taken is released.

const (
	statusPending   = orderv1.OrderStatus_ORDER_STATUS_PENDING
	statusAccepted  = orderv1.OrderStatus_ORDER_STATUS_ACCEPTED
	statusOnHold    = orderv1.OrderStatus_ORDER_STATUS_ON_HOLD
	statusPartially = orderv1.OrderStatus_ORDER_STATUS_PARTIALLY_SHIPPED
	statusShipped   = orderv1.OrderStatus_ORDER_STATUS_SHIPPED
	statusInvoiced  = orderv1.OrderStatus_ORDER_STATUS_INVOICED
	statusClosed    = orderv1.OrderStatus_ORDER_STATUS_CLOSED
	statusCancelled = orderv1.OrderStatus_ORDER_STATUS_CANCELLED

	holdCreditPending  = orderv1.HoldReason_HOLD_REASON_CREDIT_PENDING
	holdCreditDeclined = orderv1.HoldReason_HOLD_REASON_CREDIT_DECLINED
	holdInventoryShort = orderv1.HoldReason_HOLD_REASON_INVENTORY_SHORT

	// systemActor is the timeline's actor for work the saga and the
	// consumers do by themselves.
	systemActor = "system"
)

// statusName is how errors and metadata name a status: "ON_HOLD".
func statusName(s orderv1.OrderStatus) string {
	return strings.TrimPrefix(s.String(), "ORDER_STATUS_")
}

func holdName(h orderv1.HoldReason) string { return strings.TrimPrefix(h.String(), "HOLD_REASON_") }

// ---------------------------------------------------------------------------
// Creating orders.

// createOrder saves a new order and runs its saga as far as it goes now.
// The same external reference twice returns the order that holds it.
func (k *core) createOrder(ctx context.Context, p auth.Principal, in *orderv1.Order) (*orderv1.Order, error) {
	if err := validateOrder(in); err != nil {
		return nil, err
	}
	if err := checkRegionScope(p, "order.ship_to_region", in.GetShipToRegion()); err != nil {
		return nil, err
	}
	// A retry of a keyed request whose answer was lost in a crash gets the
	// order the first attempt stored.
	if id := reqctx.CreatedBefore(ctx); id != "" {
		rec, err := k.load(ctx, id)
		var nf *notFoundError
		switch {
		case err == nil && seesOrder(p, rec.o):
			return k.existing(ctx, id)
		case err != nil && !errors.As(err, &nf):
			return nil, err
		}
	}
	ref := in.GetExternalRef()
	if ref != nil {
		id, err := k.orderHoldingRef(ctx, p, ref, "order.external_ref")
		if err != nil {
			return nil, err
		}
		if id != "" {
			return k.existing(ctx, id)
		}
	}

	now := k.now()
	lines := cleanLines(in.GetLines())
	rec := &orderRecord{
		o: &orderv1.Order{
			Id:           ids.New("ord"),
			CustomerId:   in.GetCustomerId(),
			CurrencyCode: in.GetCurrencyCode(),
			ShipToRegion: in.GetShipToRegion(),
			Lines:        lines,
			AllowSplit:   in.GetAllowSplit(),
			ExternalRef:  cloneRef(ref),
			CreateTime:   timestamppb.New(now),
			UpdateTime:   timestamppb.New(now),
		},
		st: orderState{Step: StepPrice, CorrelationID: reqctx.CorrelationID(ctx), Traceparent: reqctx.Traceparent(ctx)},
	}
	// The prices are asked for before anything is stored: a line without a
	// price is the caller's mistake, answered at once and leaving nothing
	// behind. Pricing being down is not: the order is saved at its price
	// step and priced when pricing is back.
	why := "created"
	priced, err := k.pricing.Simulate(ctx, rec.o.GetCustomerId(), rec.o.GetCurrencyCode(), now, lines)
	switch {
	case err == nil:
		total, err := pricedLines("order", rec.o.GetCurrencyCode(), lines, priced)
		if err != nil {
			return nil, err
		}
		rec.o.Total = total
		rec.st.Step = StepReserve
		why = "created; prices confirmed"
	case isDefinitive(err):
		return nil, refusal("order", err)
	default:
		rec.st.Waiting = waitingFor("productpricing", err)
		k.log.WarnContext(ctx, "order saved pending: pricing did not answer", "order_id", rec.o.GetId(), "err", err)
	}

	var existing string
	err = k.repo.update(ctx, func(tx txn) error {
		existing = ""
		if ref != nil {
			holder, err := tx.orderByRef(ref.GetSystem(), ref.GetId())
			if err != nil {
				return err
			}
			if holder != "" {
				existing = holder
				return nil
			}
		}
		if err := tx.attach(rec.o.GetId()); err != nil {
			return err
		}
		return k.insertOrder(ctx, tx, cloneRecord(rec), why)
	})
	if err != nil {
		return nil, err
	}
	if existing != "" {
		// Another request with the same reference won the race.
		id, err := k.orderHoldingRef(ctx, p, ref, "order.external_ref")
		if err != nil {
			return nil, err
		}
		return k.existing(ctx, id)
	}
	sctx, cancel := sagaRun(ctx)
	defer cancel()
	out, _, err := k.drive(sctx, rec.o.GetId(), nil)
	if err != nil && sctx.Err() != nil {
		// Out of budget: the order is saved and the re-validator goes on.
		out, err = k.load(ctx, rec.o.GetId())
	}
	if err != nil {
		return nil, err
	}
	return out.o, nil
}

// insertOrder stores a new order PENDING with its first timeline entry and
// event.
func (k *core) insertOrder(ctx context.Context, tx txn, rec *orderRecord, why string) error {
	rec.o.Status = orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED
	if err := k.transition(ctx, tx, rec, change{to: statusPending, reason: why}); err != nil {
		return err
	}
	return tx.putOrder(nil, rec)
}

// orderHoldingRef returns the order holding an external reference, "" when
// none does. A holder the caller may not see is a conflict that does not
// name it.
func (k *core) orderHoldingRef(ctx context.Context, p auth.Principal, ref *typev1.ExternalRef, field string) (string, error) {
	var id string
	err := k.repo.view(ctx, func(tx txn) error {
		holder, err := tx.orderByRef(ref.GetSystem(), ref.GetId())
		if err != nil || holder == "" {
			id = ""
			return err
		}
		rec, err := tx.order(holder)
		if err != nil {
			return err
		}
		if rec == nil || !seesOrder(p, rec.o) {
			return &refTakenError{Field: field, System: ref.GetSystem(), RefID: ref.GetId()}
		}
		id = holder
		return nil
	})
	return id, err
}

// existing answers a repeated create with the order already there. If its
// saga is still running it is driven on first (after any run in progress
// finishes), so a retry sees the order as far as it can get.
func (k *core) existing(ctx context.Context, id string) (*orderv1.Order, error) {
	rec, _, err := k.drive(ctx, id, nil)
	if err != nil {
		return nil, err
	}
	return rec.o, nil
}

// ---------------------------------------------------------------------------
// Driving the saga.

// SagaBudget bounds the part of a create or convert request that runs the
// saga. The run is detached from the caller's cancellation: the order is
// saved already, and a step cut short by a caller that hung up would only
// leave it to the re-validator.
const SagaBudget = 20 * time.Second

func sagaRun(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), SagaBudget)
}

// release is a manual release: who released and why. It lets the step that
// put the order on hold run again.
type release struct {
	actor, reason string
}

// stepResult is what one step did.
type stepResult struct {
	// next says the saga can go on with the following step now.
	next bool
	// note says why it cannot, for a release that did not release.
	note string
	// rec is the order as the step left it when the step wrote it last
	// and the saga stops there, so that it need not be read again.
	rec *orderRecord
}

// drive runs an order's saga from its persisted step for as long as it can
// go on and returns the order as it then stands, with a note saying why it
// stopped short. Only one drive per order runs at a time.
func (k *core) drive(ctx context.Context, id string, rel *release) (*orderRecord, string, error) {
	unlock, err := k.locks.lock(ctx, id)
	if err != nil {
		return nil, "", err
	}
	defer unlock()
	return k.driveLocked(ctx, id, rel)
}

func (k *core) driveLocked(ctx context.Context, id string, rel *release) (*orderRecord, string, error) {
	note := ""
	for {
		rec, err := k.load(ctx, id)
		if err != nil {
			return nil, "", err
		}
		if !runnable(rec, rel) {
			return rec, note, nil
		}
		step := rec.st.Step
		if err := k.fail(step); err != nil {
			return nil, "", err
		}
		var res stepResult
		switch step {
		case StepPrice:
			res, err = k.stepPrice(ctx, rec)
		case StepReserve:
			if rel == nil && rec.o.GetStatus() == statusPending && rec.st.Waiting == "" {
				// First try: both reservations at once. A retry after
				// fulfillment did not answer runs the steps in turn, so
				// the customer service is not asked again on every try.
				res, err = k.stepReserveAndCredit(ctx, rec)
			} else {
				res, err = k.stepReserve(ctx, rec, rel)
			}
		case StepCredit:
			res, err = k.stepCredit(ctx, rec, rel)
		case StepAccept:
			res, err = k.stepAccept(ctx, rec)
		default:
			return nil, "", fmt.Errorf("order %s: unknown saga step %q", id, step)
		}
		if err != nil {
			return nil, "", err
		}
		// A release applies to the step that put the order on hold; the
		// steps after it run as the saga's own.
		rel = nil
		note = res.note
		if !res.next {
			if res.rec != nil {
				return res.rec, note, nil
			}
			rec, err := k.load(ctx, id)
			return rec, note, err
		}
	}
}

// runnable reports whether the saga has a step to run for rec now.
func runnable(rec *orderRecord, rel *release) bool {
	if rec.st.Step == "" {
		return false
	}
	switch rec.o.GetStatus() {
	case statusPending:
		return true
	case statusOnHold:
		switch rec.o.GetHoldReason() {
		case holdCreditPending:
			return rec.st.Step == StepCredit
		case holdCreditDeclined:
			return rel != nil && rec.st.Step == StepCredit
		case holdInventoryShort:
			return rel != nil && rec.st.Step == StepReserve
		}
	}
	return false
}

func (k *core) load(ctx context.Context, id string) (*orderRecord, error) {
	var rec *orderRecord
	err := k.repo.view(ctx, func(tx txn) error {
		r, err := tx.order(id)
		rec = r
		return err
	})
	if err == nil && rec == nil {
		err = &notFoundError{Kind: "order", ID: id}
	}
	return rec, err
}

// commit persists a step's outcome: apply changes the freshly loaded order
// in the transaction. It reports false when the order is no longer where
// the step left it (it was cancelled meanwhile), in which case nothing is
// written and the caller gives back what the step took.
func (k *core) commit(ctx context.Context, rec *orderRecord, apply func(tx txn, r *orderRecord) error) (bool, error) {
	committed, err := k.commitRecord(ctx, rec, apply)
	return committed != nil, err
}

// commitRecord is commit returning the order as it committed it, nil when
// the order had moved on and nothing was written.
func (k *core) commitRecord(ctx context.Context, rec *orderRecord, apply func(tx txn, r *orderRecord) error) (*orderRecord, error) {
	var committed *orderRecord
	err := k.repo.update(ctx, func(tx txn) error {
		committed = nil // the function runs again when its group commit is retried
		cur, err := tx.order(rec.o.GetId())
		if err != nil {
			return err
		}
		if cur == nil || cur.st.Step != rec.st.Step || cur.o.GetStatus() != rec.o.GetStatus() || cur.o.GetHoldReason() != rec.o.GetHoldReason() {
			return nil
		}
		old := storedKeys(cur)
		if err := apply(tx, cur); err != nil {
			return err
		}
		if err := tx.putOrder(old, cur); err != nil {
			return err
		}
		committed = cur
		return nil
	})
	if err != nil {
		return nil, err
	}
	return committed, nil
}

// stall records that a step could not reach its peer. A PENDING order stays
// PENDING at its step (the re-validator retries it); a manual release gets
// the peer's unavailability as its answer.
func (k *core) stall(ctx context.Context, rec *orderRecord, rel *release, peer string, err error) (stepResult, error) {
	if ctx.Err() != nil {
		return stepResult{}, ctx.Err()
	}
	waiting := waitingFor(peer, err)
	k.log.WarnContext(ctx, "order saga waits for a peer", "order_id", rec.o.GetId(), "step", rec.st.Step, "peer", peer, "err", err)
	if rel != nil {
		return stepResult{}, &PeerUnavailableError{Peer: peer, Err: err}
	}
	if rec.st.Waiting != waiting {
		if _, cerr := k.commit(ctx, rec, func(_ txn, r *orderRecord) error { r.st.Waiting = waiting; return nil }); cerr != nil {
			return stepResult{}, cerr
		}
	}
	return stepResult{note: waiting}, nil
}

func waitingFor(peer string, err error) string {
	if errors.Is(err, ErrPeerUnavailable) {
		return peer + " unavailable"
	}
	return fmt.Sprintf("%s failed: %v", peer, err)
}

// fail cancels an order whose saga cannot succeed, releasing what it took.
func (k *core) failOrder(ctx context.Context, rec *orderRecord, why string) (stepResult, error) {
	k.log.WarnContext(ctx, "order saga failed; the order is cancelled", "order_id", rec.o.GetId(), "step", rec.st.Step, "reason", why)
	var comps []compensation
	ok, err := k.commit(ctx, rec, func(tx txn, r *orderRecord) error {
		var err error
		comps, err = k.cancelIn(ctx, tx, r, change{actor: systemActor, reason: why})
		return err
	})
	if err != nil || !ok {
		return stepResult{}, err
	}
	k.settleNow(ctx, comps)
	return stepResult{note: why}, nil
}

// stepPrice confirms the prices. While the source quote is valid its
// prices stand; otherwise productpricing prices the lines, and for an order
// from a quote every line must still cost what the quote said, to the
// currency's minor unit.
func (k *core) stepPrice(ctx context.Context, rec *orderRecord) (stepResult, error) {
	o := rec.o
	now := k.now()
	fromQuote := !rec.st.QuoteValidUntil.IsZero()
	if fromQuote && now.Before(rec.st.QuoteValidUntil) {
		if err := k.fail(StepPrice + ".done"); err != nil {
			return stepResult{}, err
		}
		ok, err := k.commit(ctx, rec, func(_ txn, r *orderRecord) error {
			r.st.Step, r.st.Waiting = StepReserve, ""
			return nil
		})
		return stepResult{next: ok}, err
	}

	lines := cleanLines(o.GetLines())
	priced, err := k.pricing.Simulate(ctx, o.GetCustomerId(), o.GetCurrencyCode(), now, lines)
	if err != nil {
		if isDefinitive(err) {
			return k.failOrder(ctx, rec, "pricing refused the order: "+peerMessage(err))
		}
		return k.stall(ctx, rec, nil, "productpricing", err)
	}
	if err := k.fail(StepPrice + ".done"); err != nil {
		return stepResult{}, err
	}
	total, err := pricedLines("order", o.GetCurrencyCode(), lines, priced)
	var inv *invalidError
	switch {
	case errors.As(err, &inv):
		return k.failOrder(ctx, rec, describeViolations(inv))
	case err != nil:
		return k.stall(ctx, rec, nil, "productpricing", err)
	}
	if fromQuote {
		for i, l := range lines {
			q := o.GetLines()[i]
			if !samePrice(l.GetUnitPrice(), q.GetUnitPrice(), o.GetCurrencyCode()) || !samePrice(l.GetLineTotal(), q.GetLineTotal(), o.GetCurrencyCode()) {
				return k.failOrder(ctx, rec, fmt.Sprintf(
					"%s: order.lines[%d] (%s) now costs %s %s, the quote %s said %s %s and expired at %s",
					ReasonPriceChanged, i, l.GetSku(), l.GetLineTotal().GetAmount(), o.GetCurrencyCode(), o.GetQuoteId(),
					q.GetLineTotal().GetAmount(), o.GetCurrencyCode(), rec.st.QuoteValidUntil.Format(time.RFC3339)))
			}
		}
	}
	ok, err := k.commit(ctx, rec, func(_ txn, r *orderRecord) error {
		if !fromQuote {
			for i, l := range lines {
				r.o.Lines[i].UnitPrice, r.o.Lines[i].LineTotal = l.GetUnitPrice(), l.GetLineTotal()
			}
			r.o.Total = total
			r.o.UpdateTime = timestamppb.New(k.now())
		}
		r.st.Step, r.st.Waiting = StepReserve, ""
		return nil
	})
	return stepResult{next: ok}, err
}

// stepReserve places the hard reservation, which sets each line's site and
// promised date. The source quote's soft hold is released first so the two
// never compete for the same stock.
func (k *core) stepReserve(ctx context.Context, rec *orderRecord, rel *release) (stepResult, error) {
	o := rec.o
	if err := k.releaseQuoteHold(ctx, rec); err != nil {
		return k.stall(ctx, rec, rel, "fulfillment", err)
	}
	lines := cleanLines(o.GetLines())
	res, avail, err := k.inventory.Reserve(ctx, o.GetId(), ReservationHard, o.GetShipToRegion(), lines, o.GetAllowSplit(), time.Time{})
	if err != nil && !isDefinitive(err) {
		return k.stall(ctx, rec, rel, "fulfillment", err)
	}
	if err := k.fail(StepReserve + ".done"); err != nil {
		return stepResult{}, err
	}
	if err != nil || res == nil {
		return k.holdShort(ctx, rec, lines, avail, err)
	}
	ok, err := k.commit(ctx, rec, func(tx txn, r *orderRecord) error {
		k.recordReservation(r, res, avail)
		if r.o.GetStatus() == statusOnHold {
			return k.transition(ctx, tx, r, released(rel, "stock reserved"))
		}
		return nil
	})
	if err == nil && !ok {
		k.repay(ctx, compensation{Kind: compReservation, ReservationID: res.GetId()})
	}
	return stepResult{next: ok}, err
}

// releaseQuoteHold releases the source quote's soft hold, if any, so that
// it and the hard reservation never compete for the same stock. It fails
// only when fulfillment did not answer; a hold fulfillment refuses to
// release expires by itself.
func (k *core) releaseQuoteHold(ctx context.Context, rec *orderRecord) error {
	hold := rec.st.QuoteHoldID
	if hold == "" {
		return nil
	}
	err := k.inventory.Release(ctx, hold)
	if err != nil && isDefinitive(err) {
		k.log.WarnContext(ctx, "the quote's soft hold could not be released; it expires by itself", "order_id", rec.o.GetId(), "reservation_id", hold, "err", err)
		return nil
	}
	return err
}

// holdShort puts an order ON_HOLD{INVENTORY_SHORT}: fulfillment refused the
// reservation (err) or the stock cannot cover the lines (avail says where).
func (k *core) holdShort(ctx context.Context, rec *orderRecord, lines []*orderv1.OrderLine, avail []*fulfillmentv1.LineAvailability, err error) (stepResult, error) {
	why := "fulfillment refused the reservation: " + peerMessage(err)
	if err == nil {
		why, _ = shortLines(lines, avail)
		why = "stock cannot cover the order: " + why
	}
	_, cerr := k.commit(ctx, rec, func(tx txn, r *orderRecord) error {
		r.st.QuoteHoldID, r.st.Waiting = "", ""
		applyAvailability(r.o.Lines, avail)
		return k.transition(ctx, tx, r, change{to: statusOnHold, hold: holdInventoryShort, actor: systemActor, reason: why})
	})
	return stepResult{note: why}, cerr
}

// recordReservation writes the hard reservation onto r (its id, each
// line's sites and promise) and moves it on to the credit step.
func (k *core) recordReservation(r *orderRecord, res *fulfillmentv1.Reservation, avail []*fulfillmentv1.LineAvailability) {
	r.o.ReservationId = res.GetId()
	r.st.Base = applyReservation(r.o.Lines, res, avail)
	r.st.QuoteHoldID, r.st.Waiting = "", ""
	r.st.Step = StepCredit
	r.o.UpdateTime = timestamppb.New(k.now())
}

// creditHold says which hold a credit answer that is not an approval puts
// an order on: CREDIT_PENDING (degraded mode: the customer service did not
// answer; the order waits, nobody may release or ship it, and the
// re-validator finishes it) or CREDIT_DECLINED, with what the order waits
// for and why.
func (k *core) creditHold(ctx context.Context, o *orderv1.Order, dec CreditDecision, err error) (hold orderv1.HoldReason, waiting, why string) {
	switch {
	case err != nil && !isDefinitive(err):
		waiting = waitingFor("customer", err)
		k.log.WarnContext(ctx, "order held until credit can be validated", "order_id", o.GetId(), "err", err)
		return holdCreditPending, waiting, "credit validation has not completed: " + waiting
	case err != nil:
		return holdCreditDeclined, "", "credit declined: " + peerMessage(err)
	}
	return holdCreditDeclined, "", "credit declined: " + dec.Reason
}

// stepReserveAndCredit is the usual path of a PENDING order: the hard
// reservation and the credit reservation are asked for at the same time,
// and an order that gets both is accepted in one commit. Both reservations
// are idempotent by order id, so a crash anywhere here resumes at the
// reserve step and asks again; a cancel at that step releases both.
//
// The outcomes are those of running the two steps in turn: stock short or
// fulfillment unavailable ends as the reserve step would (and gives back
// credit taken meanwhile); stock reserved with credit declined or not
// validated ends as the credit step would.
func (k *core) stepReserveAndCredit(ctx context.Context, rec *orderRecord) (stepResult, error) {
	o := rec.o
	if err := k.fail(StepCredit); err != nil {
		return stepResult{}, err
	}
	type creditAnswer struct {
		dec CreditDecision
		err error
	}
	credit := make(chan creditAnswer, 1)
	go func() {
		dec, err := k.credit.Reserve(ctx, o.GetCustomerId(), o.GetId(), o.GetTotal())
		credit <- creditAnswer{dec, err}
	}()
	giveBackCredit := func() {
		if c := <-credit; c.err == nil && c.dec.Approved {
			k.repay(ctx, compensation{Kind: compCredit, OrderID: o.GetId(), CustomerID: o.GetCustomerId()})
		}
	}
	// Fulfillment not answering leaves the order PENDING at the reserve
	// step. Credit it was granted meanwhile is kept and recorded: the order
	// goes on when fulfillment is back (the credit step then finds its
	// reservation), and a cancel releases it.
	waitForFulfillment := func(err error) (stepResult, error) {
		if c := <-credit; c.err == nil && c.dec.Approved {
			if _, cerr := k.commit(ctx, rec, func(_ txn, r *orderRecord) error { r.st.CreditTaken = true; return nil }); cerr != nil {
				return stepResult{}, cerr
			}
		}
		return k.stall(ctx, rec, nil, "fulfillment", err)
	}

	if err := k.releaseQuoteHold(ctx, rec); err != nil {
		return waitForFulfillment(err)
	}
	lines := cleanLines(o.GetLines())
	res, avail, err := k.inventory.Reserve(ctx, o.GetId(), ReservationHard, o.GetShipToRegion(), lines, o.GetAllowSplit(), time.Time{})
	if err != nil && !isDefinitive(err) {
		return waitForFulfillment(err)
	}
	if ferr := k.fail(StepReserve + ".done"); ferr != nil {
		return stepResult{}, ferr
	}
	if err != nil || res == nil {
		giveBackCredit()
		return k.holdShort(ctx, rec, lines, avail, err)
	}

	c := <-credit
	if c.err != nil && ctx.Err() != nil {
		return stepResult{}, ctx.Err()
	}
	if ferr := k.fail(StepCredit + ".done"); ferr != nil {
		return stepResult{}, ferr
	}
	var (
		note  string
		apply func(tx txn, r *orderRecord) error
		taken = c.err == nil && c.dec.Approved
	)
	if taken {
		if err := k.fail(StepAccept); err != nil {
			return stepResult{}, err
		}
		apply = func(tx txn, r *orderRecord) error {
			k.recordReservation(r, res, avail)
			r.st.CreditTaken = true
			return k.acceptIn(ctx, tx, r)
		}
	} else {
		var (
			hold    orderv1.HoldReason
			waiting string
		)
		hold, waiting, note = k.creditHold(ctx, o, c.dec, c.err)
		apply = func(tx txn, r *orderRecord) error {
			k.recordReservation(r, res, avail)
			r.st.Waiting = waiting
			return k.transition(ctx, tx, r, change{to: statusOnHold, hold: hold, actor: systemActor, reason: note})
		}
	}
	committed, err := k.commitRecord(ctx, rec, apply)
	if err == nil && committed == nil {
		comps := []compensation{{Kind: compReservation, ReservationID: res.GetId()}}
		if taken {
			comps = append(comps, compensation{Kind: compCredit, OrderID: o.GetId(), CustomerID: o.GetCustomerId()})
		}
		k.repay(ctx, comps...)
	}
	return stepResult{note: note, rec: committed}, err
}

// stepCredit reserves the order's total against the customer's credit.
func (k *core) stepCredit(ctx context.Context, rec *orderRecord, rel *release) (stepResult, error) {
	o := rec.o
	dec, err := k.credit.Reserve(ctx, o.GetCustomerId(), o.GetId(), o.GetTotal())
	if err != nil && ctx.Err() != nil {
		return stepResult{}, ctx.Err()
	}
	if err == nil || isDefinitive(err) {
		if err := k.fail(StepCredit + ".done"); err != nil {
			return stepResult{}, err
		}
	}
	if err != nil || !dec.Approved {
		if err != nil && !isDefinitive(err) && o.GetStatus() == statusOnHold && o.GetHoldReason() == holdCreditPending &&
			rec.st.Waiting == waitingFor("customer", err) {
			// Still down; nothing new to record.
			return stepResult{note: "credit validation has not completed: " + rec.st.Waiting}, nil
		}
		hold, waiting, why := k.creditHold(ctx, o, dec, err)
		_, cerr := k.commit(ctx, rec, func(tx txn, r *orderRecord) error {
			r.st.Waiting = waiting
			return k.transition(ctx, tx, r, change{to: statusOnHold, hold: hold, actor: systemActor, reason: why})
		})
		return stepResult{note: why}, cerr
	}
	if rel == nil && rec.o.GetStatus() == statusPending {
		// The usual path: a PENDING order within credit is accepted in the
		// same commit that records the credit, which saves every order one
		// fsync. A crash before this commit resumes at the credit step,
		// whose reservation is idempotent by order id.
		if err := k.fail(StepAccept); err != nil {
			return stepResult{}, err
		}
		ok, err := k.commit(ctx, rec, func(tx txn, r *orderRecord) error {
			r.st.CreditTaken = true
			return k.acceptIn(ctx, tx, r)
		})
		if err == nil && !ok {
			k.repay(ctx, compensation{Kind: compCredit, OrderID: o.GetId(), CustomerID: o.GetCustomerId()})
		}
		return stepResult{}, err
	}
	ok, err := k.commit(ctx, rec, func(tx txn, r *orderRecord) error {
		r.st.CreditTaken, r.st.Waiting, r.st.Step = true, "", StepAccept
		if r.o.GetStatus() == statusOnHold {
			why := "credit approved"
			if r.o.GetHoldReason() == holdCreditPending {
				why = "credit validated once the customer service answered"
			}
			return k.transition(ctx, tx, r, released(rel, why))
		}
		return nil
	})
	if err == nil && !ok {
		k.repay(ctx, compensation{Kind: compCredit, OrderID: o.GetId(), CustomerID: o.GetCustomerId()})
	}
	return stepResult{next: ok}, err
}

// stepAccept accepts the order.
func (k *core) stepAccept(ctx context.Context, rec *orderRecord) (stepResult, error) {
	_, err := k.commit(ctx, rec, func(tx txn, r *orderRecord) error { return k.acceptIn(ctx, tx, r) })
	return stepResult{}, err
}

// acceptIn moves r to ACCEPTED in tx and ends its saga.
func (k *core) acceptIn(ctx context.Context, tx txn, r *orderRecord) error {
	r.st.Step, r.st.Waiting = "", ""
	if err := k.transition(ctx, tx, r, change{to: statusAccepted, actor: systemActor, reason: "priced, stock reserved and within credit"}); err != nil {
		return err
	}
	// Fulfillment may have reported shipments while the order waited (they
	// are recorded, not acted on, before acceptance).
	if next := lifecycleStatus(r); next != statusAccepted {
		return k.transition(ctx, tx, r, change{to: next, actor: systemActor, reason: "shipments and invoices recorded before acceptance"})
	}
	return nil
}

// released is the change that takes an order off hold back into its saga:
// by the releasing key with its reason, or by the saga itself.
func released(rel *release, why string) change {
	if rel == nil {
		return change{to: statusPending, actor: systemActor, reason: why}
	}
	reason := "released: " + why
	if rel.reason != "" {
		reason = fmt.Sprintf("released (%s): %s", rel.reason, why)
	}
	return change{to: statusPending, actor: rel.actor, reason: reason}
}

// ---------------------------------------------------------------------------
// Cancel and release.

// shippedAny reports whether any goods of the order left a site.
func shippedAny(rec *orderRecord) bool {
	switch rec.o.GetStatus() {
	case statusPartially, statusShipped, statusInvoiced, statusClosed:
		return true
	}
	return len(rec.st.Shipments) > 0
}

// cancelIn cancels rec inside tx and queues the releases it owes: the hard
// reservation (or a probe for one that may exist without its id being
// known), the source quote's soft hold, and the credit reservation when the
// credit step was reached. The caller writes rec.
func (k *core) cancelIn(ctx context.Context, tx txn, rec *orderRecord, ch change) ([]compensation, error) {
	o := rec.o
	var comps []compensation
	switch {
	case o.GetReservationId() != "":
		comps = append(comps, compensation{Kind: compReservation, ReservationID: o.GetReservationId()})
	case rec.st.Step == StepReserve:
		comps = append(comps, compensation{Kind: compProbe, OrderID: o.GetId()})
	}
	if rec.st.QuoteHoldID != "" {
		comps = append(comps, compensation{Kind: compReservation, ReservationID: rec.st.QuoteHoldID})
	}
	// At the reserve step credit may have been taken already: a PENDING
	// order asks for both reservations at once.
	if rec.st.CreditTaken || rec.st.Step == StepCredit || rec.st.Step == StepReserve {
		comps = append(comps, compensation{Kind: compCredit, OrderID: o.GetId(), CustomerID: o.GetCustomerId()})
	}
	for _, c := range comps {
		if err := tx.owe(c); err != nil {
			return nil, err
		}
	}
	rec.st.Step, rec.st.Waiting, rec.st.QuoteHoldID = "", "", ""
	ch.to = statusCancelled
	return comps, k.transition(ctx, tx, rec, ch)
}

// cancelOrder cancels an order that has not shipped, releasing its
// reservation and credit. Cancelling a cancelled order returns it.
func (k *core) cancelOrder(ctx context.Context, p auth.Principal, id, reason string) (*orderv1.Order, error) {
	unlock, err := k.locks.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var (
		out   *orderRecord
		comps []compensation
	)
	err = k.repo.update(ctx, func(tx txn) error {
		out, comps = nil, nil
		rec, err := tx.order(id)
		if err != nil {
			return err
		}
		if rec == nil || !seesOrder(p, rec.o) {
			return &notFoundError{Kind: "order", ID: id}
		}
		if rec.o.GetStatus() == statusCancelled {
			out = rec
			return nil
		}
		if shippedAny(rec) {
			return &transitionError{Kind: "order", ID: id, From: statusName(rec.o.GetStatus()), To: statusName(statusCancelled),
				Message: fmt.Sprintf("order %s has shipped goods (%s) and can no longer be cancelled; return the goods instead", id, statusName(rec.o.GetStatus()))}
		}
		old := storedKeys(rec)
		why := "cancelled"
		if reason != "" {
			why = "cancelled: " + reason
		}
		comps, err = k.cancelIn(ctx, tx, rec, change{reason: why})
		if err != nil {
			return err
		}
		out = rec
		return tx.putOrder(old, rec)
	})
	if err != nil {
		return nil, err
	}
	k.settleNow(ctx, comps)
	return out.o, nil
}

// releaseOrder takes an order off hold by running again the step that put
// it there. CREDIT_PENDING is not released by hand: the re-validator
// releases it once credit could be validated.
func (k *core) releaseOrder(ctx context.Context, p auth.Principal, id, reason string) (*orderv1.Order, error) {
	unlock, err := k.locks.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, err := k.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if !seesOrder(p, rec.o) {
		return nil, &notFoundError{Kind: "order", ID: id}
	}
	if rec.o.GetStatus() != statusOnHold {
		return nil, &transitionError{Kind: "order", ID: id, From: statusName(rec.o.GetStatus()), To: statusName(statusPending),
			Message: fmt.Sprintf("order %s is %s; only an order ON_HOLD can be released", id, statusName(rec.o.GetStatus()))}
	}
	hold := rec.o.GetHoldReason()
	if hold == holdCreditPending {
		return nil, &preconditionError{Reason: ReasonCreditNotValidated,
			Message: fmt.Sprintf("order %s cannot be released: credit validation has not completed; it is released by itself once the customer service answers", id),
			Meta:    map[string]string{"order_id": id, "hold_reason": holdName(hold)}}
	}
	out, note, err := k.driveLocked(ctx, id, &release{actor: reqctx.Actor(ctx), reason: reason})
	if err != nil {
		return nil, err
	}
	if out.o.GetStatus() == statusOnHold && out.o.GetHoldReason() == hold {
		if note == "" {
			note = "nothing could be run again"
		}
		return nil, &preconditionError{Reason: ReasonReleaseStillBlocked,
			Message: fmt.Sprintf("order %s stays ON_HOLD (%s): the step was run again and %s", id, holdName(hold), note),
			Meta:    map[string]string{"order_id": id, "hold_reason": holdName(hold)}}
	}
	return out.o, nil
}

// ---------------------------------------------------------------------------
// Compensations.

// settleNow pays compensations already queued in the store and removes the
// ones the peers confirmed; the rest wait for the background.
func (k *core) settleNow(ctx context.Context, comps []compensation) {
	for _, c := range comps {
		if err := k.pay(ctx, c); err != nil {
			k.log.WarnContext(ctx, "release owed to a peer failed; it is retried in the background", "kind", c.Kind, "target", c.target(), "err", err)
			continue
		}
		if err := k.repo.update(ctx, func(tx txn) error { return tx.settle(c) }); err != nil {
			k.log.ErrorContext(ctx, "a settled release could not be removed from the queue; it will be paid again (harmless)", "kind", c.Kind, "target", c.target(), "err", err)
		}
	}
}

// repay pays compensations that are not queued yet and queues the ones
// that fail.
func (k *core) repay(ctx context.Context, comps ...compensation) {
	for _, c := range comps {
		if err := k.pay(ctx, c); err == nil {
			continue
		}
		if err := k.repo.update(ctx, func(tx txn) error { return tx.owe(c) }); err != nil {
			k.log.ErrorContext(ctx, "a release owed to a peer could not be queued", "kind", c.Kind, "target", c.target(), "err", err)
		}
	}
}

// pay asks the peer for one release.
func (k *core) pay(ctx context.Context, c compensation) error {
	switch c.Kind {
	case compReservation:
		return k.inventory.Release(ctx, c.ReservationID)
	case compCredit:
		return k.credit.Release(ctx, c.CustomerID, c.OrderID)
	case compProbe:
		rec, err := k.load(ctx, c.OrderID)
		var nf *notFoundError
		if errors.As(err, &nf) {
			return nil
		}
		if err != nil {
			return err
		}
		res, _, err := k.inventory.Reserve(ctx, c.OrderID, ReservationHard, rec.o.GetShipToRegion(), cleanLines(rec.o.GetLines()), rec.o.GetAllowSplit(), time.Time{})
		if err != nil {
			if isDefinitive(err) {
				return nil
			}
			return err
		}
		if res == nil {
			return nil
		}
		return k.inventory.Release(ctx, res.GetId())
	}
	return fmt.Errorf("unknown compensation kind %q", c.Kind)
}

// ---------------------------------------------------------------------------
// Helpers.

// storedKeys returns what putOrder reads of the record as it was stored
// before a change: the fields its indexes are keyed by. It is what a
// writer keeps of the old record instead of a whole copy.
func storedKeys(r *orderRecord) *orderRecord {
	o := r.o
	return &orderRecord{o: &orderv1.Order{
		Id:          o.GetId(),
		CustomerId:  o.GetCustomerId(),
		Status:      o.GetStatus(),
		CreateTime:  o.GetCreateTime(),
		ExternalRef: cloneRef(o.GetExternalRef()),
	}}
}

func cloneRecord(r *orderRecord) *orderRecord {
	st := r.st
	st.Base = append([]baseQty(nil), r.st.Base...)
	st.Shipments = append([]string(nil), r.st.Shipments...)
	if r.st.Invoices != nil {
		st.Invoices = make(map[string]*invoiceFacts, len(r.st.Invoices))
		for id, inv := range r.st.Invoices {
			lines := make(map[int]string, len(inv.Lines))
			for i, q := range inv.Lines {
				lines[i] = q
			}
			st.Invoices[id] = &invoiceFacts{Lines: lines, Paid: inv.Paid}
		}
	}
	return &orderRecord{o: r.o.CloneVT(), st: st}
}

func cloneRef(r *typev1.ExternalRef) *typev1.ExternalRef {
	if r == nil {
		return nil
	}
	return &typev1.ExternalRef{System: r.GetSystem(), Id: r.GetId()}
}

func describeViolations(e *invalidError) string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return ReasonLineNotPriced + ": " + strings.Join(parts, "; ")
}
