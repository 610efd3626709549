package order

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/reqctx"
)

// Quotes: DRAFT → SUBMITTED → APPROVED → CONVERTED, SUBMITTED → REJECTED,
// and any open quote (DRAFT, SUBMITTED, APPROVED) → EXPIRED at valid_until.
// A quote carries its price simulation (unit prices, line totals, total)
// and its availability snapshot (site and promised date per line) as they
// were when it was created; with hold_stock it also holds the stock softly
// until valid_until. Leaving the open states releases that hold (a
// converted quote's hold is released by its order's reservation step).

const (
	quoteDraft     = orderv1.QuoteStatus_QUOTE_STATUS_DRAFT
	quoteSubmitted = orderv1.QuoteStatus_QUOTE_STATUS_SUBMITTED
	quoteApproved  = orderv1.QuoteStatus_QUOTE_STATUS_APPROVED
	quoteConverted = orderv1.QuoteStatus_QUOTE_STATUS_CONVERTED
	quoteExpired   = orderv1.QuoteStatus_QUOTE_STATUS_EXPIRED
	quoteRejected  = orderv1.QuoteStatus_QUOTE_STATUS_REJECTED
)

func quoteStatusName(s orderv1.QuoteStatus) string {
	return strings.TrimPrefix(s.String(), "QUOTE_STATUS_")
}

// quoteOpen reports whether a quote can still expire.
func quoteOpen(s orderv1.QuoteStatus) bool {
	return s == quoteDraft || s == quoteSubmitted || s == quoteApproved
}

// quoteMoves lists the transitions a caller may ask for.
var quoteMoves = map[orderv1.QuoteStatus][]orderv1.QuoteStatus{
	quoteDraft:     {quoteSubmitted},
	quoteSubmitted: {quoteApproved, quoteRejected},
	quoteApproved:  {quoteConverted},
}

func quoteMoveAllowed(from, to orderv1.QuoteStatus) bool {
	for _, s := range quoteMoves[from] {
		if s == to {
			return true
		}
	}
	return false
}

// quoteCalls names the call that makes each move, for the hint of a
// refused transition.
var quoteCalls = map[orderv1.QuoteStatus]string{
	quoteSubmitted: ":submit",
	quoteApproved:  ":approve (an erp or ops key)",
	quoteRejected:  ":reject",
	quoteConverted: ":convert",
}

func quoteTransitionError(q *orderv1.Quote, to orderv1.QuoteStatus, now time.Time) error {
	from := q.GetStatus()
	msg := fmt.Sprintf("quote %s is %s and cannot become %s", q.GetId(), quoteStatusName(from), quoteStatusName(to))
	if from == quoteExpired {
		msg = fmt.Sprintf("quote %s expired at %s and cannot become %s", q.GetId(), q.GetValidUntil().AsTime().UTC().Format(time.RFC3339), quoteStatusName(to))
	}
	if hint := quoteHint(from, to); hint != "" {
		msg += ": " + hint
	}
	return &transitionError{Kind: "quote", ID: q.GetId(), From: quoteStatusName(from), To: quoteStatusName(to), Message: msg}
}

// quoteHint tells the caller of a refused quote transition what to do: the
// calls that lead from the quote's status to the one asked for, or that a
// quote in a final status is done with.
func quoteHint(from, to orderv1.QuoteStatus) string {
	if len(quoteMoves[from]) == 0 {
		return "that is final; create a new quote"
	}
	// The shortest way through quoteMoves, breadth first.
	prev := map[orderv1.QuoteStatus]orderv1.QuoteStatus{from: from}
	queue := []orderv1.QuoteStatus{from}
	for len(queue) > 0 {
		if _, found := prev[to]; found {
			break
		}
		s := queue[0]
		queue = queue[1:]
		for _, n := range quoteMoves[s] {
			if _, seen := prev[n]; !seen {
				prev[n] = s
				queue = append(queue, n)
			}
		}
	}
	if _, ok := prev[to]; !ok || to == from {
		return ""
	}
	var steps []string
	for s := prev[to]; s != from; s = prev[s] {
		steps = append([]string{quoteCalls[s]}, steps...)
	}
	return "call " + strings.Join(steps, ", then ") + " first"
}

// createQuote prices the lines, checks availability, optionally holds the
// stock softly until valid_until, and saves the quote as a DRAFT. The same
// external reference twice returns the quote that holds it.
func (k *core) createQuote(ctx context.Context, p auth.Principal, in *orderv1.Quote) (*orderv1.Quote, error) {
	now := k.now()
	if err := validateQuote(in, now); err != nil {
		return nil, err
	}
	if err := checkRegionScope(p, "quote.ship_to_region", in.GetShipToRegion()); err != nil {
		return nil, err
	}
	// A retry of a keyed request whose answer was lost in a crash gets the
	// quote the first attempt stored.
	if id := reqctx.CreatedBefore(ctx); id != "" {
		var prev *orderv1.Quote
		if err := k.repo.view(ctx, func(tx txn) error {
			rec, err := tx.quote(id)
			if rec != nil {
				prev = rec.q
			}
			return err
		}); err != nil {
			return nil, err
		}
		if prev != nil && seesQuote(p, prev) {
			return prev, nil
		}
	}
	ref := in.GetExternalRef()
	if ref != nil {
		if q, err := k.quoteHoldingRef(ctx, p, ref); err != nil || q != nil {
			return q, err
		}
	}

	lines := cleanLines(in.GetLines())
	priced, err := k.pricing.Simulate(ctx, in.GetCustomerId(), in.GetCurrencyCode(), now, lines)
	if err != nil {
		return nil, refusal("quote", err)
	}
	total, err := pricedLines("quote", in.GetCurrencyCode(), lines, priced)
	if err != nil {
		return nil, err
	}
	avail, err := k.inventory.Check(ctx, in.GetShipToRegion(), lines, in.GetAllowSplit())
	if err != nil {
		return nil, refusal("quote", err)
	}
	applyAvailability(lines, avail)

	validUntil := in.GetValidUntil().AsTime().UTC()
	q := &orderv1.Quote{
		Id:           ids.New("quo"),
		CustomerId:   in.GetCustomerId(),
		CurrencyCode: in.GetCurrencyCode(),
		ShipToRegion: in.GetShipToRegion(),
		Lines:        lines,
		AllowSplit:   in.GetAllowSplit(),
		HoldStock:    in.GetHoldStock(),
		ValidUntil:   timestamppb.New(validUntil),
		ExternalRef:  cloneRef(ref),
		Status:       quoteDraft,
		Total:        total,
		CreateTime:   timestamppb.New(now),
		UpdateTime:   timestamppb.New(now),
	}
	if in.GetHoldStock() {
		res, held, err := k.inventory.Reserve(ctx, q.GetId(), ReservationSoft, q.GetShipToRegion(), cleanLines(lines), q.GetAllowSplit(), validUntil)
		if err != nil {
			return nil, refusal("quote", err)
		}
		if res == nil {
			why, line := shortLines(lines, held)
			return nil, &preconditionError{Reason: ReasonStockShort,
				Message: "the stock cannot be held for the quote: " + why + "; create it without hold_stock to quote later dates",
				Meta:    map[string]string{"field": fmt.Sprintf("quote.lines[%d].quantity", line)}}
		}
		q.ReservationId = res.GetId()
		if len(held) > 0 {
			applyAvailability(q.Lines, held)
		}
	}

	var dup *orderv1.Quote
	err = k.repo.update(ctx, func(tx txn) error {
		dup = nil
		if ref != nil {
			holder, err := tx.quoteByRef(ref.GetSystem(), ref.GetId())
			if err != nil {
				return err
			}
			if holder != "" {
				rec, err := tx.quote(holder)
				if err != nil || rec == nil {
					return err
				}
				dup = rec.q
				return nil
			}
		}
		if err := tx.attach(q.GetId()); err != nil {
			return err
		}
		return tx.putQuote(nil, &quoteRecord{q: proto.Clone(q).(*orderv1.Quote)})
	})
	if (err != nil || dup != nil) && q.GetReservationId() != "" {
		// Another request with the same reference won, or the write
		// failed: this request's soft hold has no quote.
		k.repay(ctx, compensation{Kind: compReservation, ReservationID: q.GetReservationId()})
	}
	switch {
	case err != nil:
		return nil, err
	case dup != nil:
		if !seesQuote(p, dup) {
			return nil, &refTakenError{Field: "quote.external_ref", System: ref.GetSystem(), RefID: ref.GetId()}
		}
		return dup, nil
	}
	return q, nil
}

// quoteHoldingRef returns the quote holding an external reference, nil
// when none does.
func (k *core) quoteHoldingRef(ctx context.Context, p auth.Principal, ref *typev1.ExternalRef) (*orderv1.Quote, error) {
	var out *orderv1.Quote
	err := k.repo.view(ctx, func(tx txn) error {
		out = nil
		holder, err := tx.quoteByRef(ref.GetSystem(), ref.GetId())
		if err != nil || holder == "" {
			return err
		}
		rec, err := tx.quote(holder)
		if err != nil || rec == nil {
			return err
		}
		if !seesQuote(p, rec.q) {
			return &refTakenError{Field: "quote.external_ref", System: ref.GetSystem(), RefID: ref.GetId()}
		}
		out = rec.q
		return nil
	})
	return out, err
}

func (k *core) getQuote(ctx context.Context, p auth.Principal, id string) (*orderv1.Quote, error) {
	var out *orderv1.Quote
	err := k.repo.view(ctx, func(tx txn) error {
		rec, err := tx.quote(id)
		if err != nil {
			return err
		}
		if rec == nil || !seesQuote(p, rec.q) {
			return &notFoundError{Kind: "quote", ID: id}
		}
		out = rec.q
		return nil
	})
	return out, err
}

// moveQuote applies a transition a caller asked for. A quote found past its
// valid_until is expired first (in the same transaction, which commits),
// and the caller is told it expired.
func (k *core) moveQuote(ctx context.Context, p auth.Principal, id string, to orderv1.QuoteStatus) (*orderv1.Quote, error) {
	var (
		out     *orderv1.Quote
		refused error
		comps   []compensation
	)
	err := k.repo.update(ctx, func(tx txn) error {
		out, refused, comps = nil, nil, nil
		rec, err := tx.quote(id)
		if err != nil {
			return err
		}
		if rec == nil || !seesQuote(p, rec.q) {
			return &notFoundError{Kind: "quote", ID: id}
		}
		now := k.now()
		if quoteOpen(rec.q.GetStatus()) && !now.Before(rec.q.GetValidUntil().AsTime()) {
			comps, err = k.expireIn(ctx, tx, rec)
			refused = quoteTransitionError(rec.q, to, now)
			return err
		}
		if !quoteMoveAllowed(rec.q.GetStatus(), to) {
			return quoteTransitionError(rec.q, to, now)
		}
		old := &quoteRecord{q: proto.Clone(rec.q).(*orderv1.Quote)}
		rec.q.Status = to
		rec.q.UpdateTime = timestamppb.New(now)
		switch to {
		case quoteApproved:
			if _, err := tx.emit(quoteSubject(id), rec.q.GetShipToRegion(), &eventsv1.QuoteApproved{Quote: proto.Clone(rec.q).(*orderv1.Quote)}); err != nil {
				return err
			}
		case quoteRejected:
			if r := rec.q.GetReservationId(); r != "" {
				comps = append(comps, compensation{Kind: compReservation, ReservationID: r})
				if err := tx.owe(comps[0]); err != nil {
					return err
				}
			}
		}
		out = rec.q
		return tx.putQuote(old, rec)
	})
	if err != nil {
		return nil, err
	}
	k.settleNow(ctx, comps)
	if refused != nil {
		return nil, refused
	}
	return out, nil
}

// expireIn expires an open quote in tx and queues the release of its soft
// hold.
func (k *core) expireIn(ctx context.Context, tx txn, rec *quoteRecord) ([]compensation, error) {
	old := &quoteRecord{q: proto.Clone(rec.q).(*orderv1.Quote)}
	rec.q.Status = quoteExpired
	rec.q.UpdateTime = timestamppb.New(k.now())
	var comps []compensation
	if r := rec.q.GetReservationId(); r != "" {
		c := compensation{Kind: compReservation, ReservationID: r}
		if err := tx.owe(c); err != nil {
			return nil, err
		}
		comps = append(comps, c)
	}
	k.log.InfoContext(ctx, "quote expired", "quote_id", rec.q.GetId(), "valid_until", rec.q.GetValidUntil().AsTime())
	return comps, tx.putQuote(old, rec)
}

// expireQuotes expires every open quote past its valid_until, a batch at a
// time, and releases their soft holds. It returns how many it expired.
func (k *core) expireQuotes(ctx context.Context) (int, error) {
	n := 0
	for {
		now := k.now()
		var due []string
		if err := k.repo.view(ctx, func(tx txn) error {
			var err error
			due, err = tx.expiringQuotes(now, 100)
			return err
		}); err != nil {
			return n, err
		}
		if len(due) == 0 {
			return n, nil
		}
		var comps []compensation
		expired := 0
		err := k.repo.update(ctx, func(tx txn) error {
			comps, expired = nil, 0
			for _, id := range due {
				rec, err := tx.quote(id)
				if err != nil {
					return err
				}
				if rec == nil || !quoteOpen(rec.q.GetStatus()) || now.Before(rec.q.GetValidUntil().AsTime()) {
					continue
				}
				c, err := k.expireIn(ctx, tx, rec)
				if err != nil {
					return err
				}
				comps = append(comps, c...)
				expired++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n += expired
		k.settleNow(ctx, comps)
		if len(due) < 100 || expired == 0 {
			return n, nil
		}
	}
}

// convertQuote turns an approved quote into an order and runs the order's
// saga. The quote's prices stand while it is valid. Converting a converted
// quote returns the order it became.
func (k *core) convertQuote(ctx context.Context, p auth.Principal, id string, ref *typev1.ExternalRef) (*orderv1.Order, *orderv1.Quote, error) {
	if ref != nil {
		var c checker
		c.ref("external_ref", ref)
		if err := c.err(); err != nil {
			return nil, nil, err
		}
	}
	var (
		orderID string
		created bool
		refused error
		comps   []compensation
		cycle   time.Duration // from the quote's creation to its order's
	)
	err := k.repo.update(ctx, func(tx txn) error {
		orderID, created, refused, comps = "", false, nil, nil
		rec, err := tx.quote(id)
		if err != nil {
			return err
		}
		if rec == nil || !seesQuote(p, rec.q) {
			return &notFoundError{Kind: "quote", ID: id}
		}
		q := rec.q
		now := k.now()
		switch {
		case q.GetStatus() == quoteConverted:
			orderID = q.GetOrderId()
			return nil
		case quoteOpen(q.GetStatus()) && !now.Before(q.GetValidUntil().AsTime()):
			comps, err = k.expireIn(ctx, tx, rec)
			refused = quoteTransitionError(q, quoteConverted, now)
			return err
		case !quoteMoveAllowed(q.GetStatus(), quoteConverted):
			return quoteTransitionError(q, quoteConverted, now)
		}
		if ref != nil {
			holder, err := tx.orderByRef(ref.GetSystem(), ref.GetId())
			if err != nil {
				return err
			}
			if holder != "" {
				return &refTakenError{Field: "external_ref", System: ref.GetSystem(), RefID: ref.GetId(), Holder: holder}
			}
		}
		lines := make([]*orderv1.OrderLine, len(q.GetLines()))
		for i, l := range q.GetLines() {
			lines[i] = &orderv1.OrderLine{
				Sku:       l.GetSku(),
				Quantity:  proto.Clone(l.GetQuantity()).(*typev1.Quantity),
				UnitPrice: proto.Clone(l.GetUnitPrice()).(*typev1.Money),
				LineTotal: proto.Clone(l.GetLineTotal()).(*typev1.Money),
			}
		}
		o := &orderRecord{
			o: &orderv1.Order{
				Id:           ids.New("ord"),
				CustomerId:   q.GetCustomerId(),
				CurrencyCode: q.GetCurrencyCode(),
				ShipToRegion: q.GetShipToRegion(),
				Lines:        lines,
				AllowSplit:   q.GetAllowSplit(),
				ExternalRef:  cloneRef(ref),
				QuoteId:      q.GetId(),
				Total:        proto.Clone(q.GetTotal()).(*typev1.Money),
				CreateTime:   timestamppb.New(now),
				UpdateTime:   timestamppb.New(now),
			},
			st: orderState{
				Step:            StepPrice,
				QuoteValidUntil: q.GetValidUntil().AsTime().UTC(),
				QuoteHoldID:     q.GetReservationId(),
				CorrelationID:   reqctx.CorrelationID(ctx),
				Traceparent:     reqctx.Traceparent(ctx),
			},
		}
		if err := k.insertOrder(ctx, tx, o, "converted from quote "+q.GetId()); err != nil {
			return err
		}
		old := &quoteRecord{q: proto.Clone(q).(*orderv1.Quote)}
		q.Status, q.OrderId, q.UpdateTime = quoteConverted, o.o.GetId(), timestamppb.New(now)
		orderID, created = o.o.GetId(), true
		cycle = now.Sub(q.GetCreateTime().AsTime())
		return tx.putQuote(old, rec)
	})
	if err != nil {
		return nil, nil, err
	}
	if refused != nil {
		k.settleNow(ctx, comps)
		return nil, nil, refused
	}
	if created {
		k.log.InfoContext(ctx, "quote converted", "quote_id", id, "order_id", orderID)
		k.metrics.quoteConverted(cycle)
	}
	// The first conversion runs the saga; a repeated one drives a saga
	// still in progress, so both answer with the order as far as it got.
	dctx := ctx
	if created {
		var cancel context.CancelFunc
		dctx, cancel = sagaRun(ctx)
		defer cancel()
	}
	rec, _, err := k.drive(dctx, orderID, nil)
	if err != nil && created && dctx.Err() != nil {
		rec, err = k.load(ctx, orderID)
	}
	if err != nil {
		return nil, nil, err
	}
	q, err := k.getQuote(ctx, p, id)
	if err != nil {
		return nil, nil, err
	}
	return rec.o, q, nil
}
