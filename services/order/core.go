package order

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/reqctx"
)

// orderRecord is an order as the domain handles it: the contract's message
// and the state kept beside it.
type orderRecord struct {
	o  *orderv1.Order
	st orderState
}

// orderState is what the saga and the event consumers keep beside an order.
type orderState struct {
	// Step is the next saga step to run; empty once the saga is over
	// (accepted or cancelled).
	Step string `json:"step,omitempty"`
	// QuoteValidUntil is the end of the source quote's validity: until
	// then the quote's prices stand without asking pricing again.
	QuoteValidUntil time.Time `json:"quote_valid_until,omitzero"`
	// QuoteHoldID is the source quote's soft hold, released just before
	// the order's hard reservation is placed so the two never compete for
	// the same stock.
	QuoteHoldID string `json:"quote_hold_id,omitempty"`
	// CreditTaken records that the customer service approved a credit
	// reservation for the order.
	CreditTaken bool `json:"credit_taken,omitempty"`
	// Base holds, per line, the ordered quantity in the product's base
	// unit, as the reservation reported it; shipment and invoice
	// quantities are compared with it.
	Base []baseQty `json:"base,omitempty"`
	// Waiting says what the saga waits for while it cannot go on, for the
	// log and for operations; empty when it is not waiting.
	Waiting string `json:"waiting,omitempty"`
	// CorrelationID and Traceparent are those of the request that created
	// the order; work the background does for the order carries them, so
	// a trace leads from the CRM's call to the order's acceptance.
	CorrelationID string `json:"correlation_id,omitempty"`
	Traceparent   string `json:"traceparent,omitempty"`
	// Shipments are the confirmed shipments applied to the order.
	Shipments []string `json:"shipments,omitempty"`
	// Invoices are the invoices posted for the order, by id.
	Invoices map[string]*invoiceFacts `json:"invoices,omitempty"`
	// EventSeq is the sequence of the order's last event (the envelope's
	// per-aggregate sequence), kept here because every transaction that
	// emits an order event writes this state anyway. Zero for an order
	// whose events so far took the store's counter (transition starts
	// from it).
	EventSeq uint64 `json:"event_seq,omitempty"`
}

// baseQty is a quantity in a product's base unit.
type baseQty struct {
	Value string `json:"value"`
	Unit  string `json:"unit"`
}

// invoiceFacts is what the order needs to know of one invoice.
type invoiceFacts struct {
	// Lines maps an order line index to the base-unit quantity billed.
	Lines map[int]string `json:"lines"`
	Paid  bool           `json:"paid,omitempty"`
}

// quoteRecord is a quote as the domain handles it.
type quoteRecord struct {
	q *orderv1.Quote
}

// compensation is a release owed to a peer. Exactly one of the kinds'
// fields is set.
type compensation struct {
	// Kind is compReservation, compCredit or compProbe.
	Kind string `json:"kind"`
	// ReservationID is the reservation to release (compReservation).
	ReservationID string `json:"reservation_id,omitempty"`
	// OrderID and CustomerID name the credit reservation to release
	// (compCredit) or the order whose hard reservation may exist
	// without its id being known (compProbe).
	OrderID    string `json:"order_id,omitempty"`
	CustomerID string `json:"customer_id,omitempty"`
}

// The kinds of compensation.
const (
	compReservation = "reservation"
	compCredit      = "credit"
	// compProbe is owed by an order cancelled while its reservation step
	// may have reached fulfillment without the answer being persisted (a
	// crash between the call and the commit). The reservation is found
	// through the idempotent Reserve, which returns it by order id, and
	// released.
	compProbe = "probe"
)

func (c compensation) target() string {
	switch c.Kind {
	case compReservation:
		return c.ReservationID
	default:
		return c.OrderID
	}
}

// listKind names the index a list pages through.
type listKind int

const (
	listByCreated listKind = iota
	listByCustomer
	listByStatus
	listByCustomerStatus
)

// scanQuery selects a range of one list index. The index key of each entry
// is the given parts followed by the creation time.
type scanQuery struct {
	kind  listKind
	parts []string
	// from and before bound the creation time: from inclusive (zero means
	// no bound), before exclusive (zero means no bound).
	from, before time.Time
	// after resumes after the entry a page token names.
	after *position
}

// position is an entry of a list index: its index key and primary key. A
// page token carries the last one a page examined.
type position struct {
	Key []byte `json:"k"`
	PK  string `json:"p"`
}

// txn is one store transaction as the domain sees it. Reads see the
// transaction's own writes.
type txn interface {
	// order returns the stored order, nil when there is none.
	order(id string) (*orderRecord, error)
	// orderByRef returns the id of the order holding an external
	// reference, "" when none does.
	orderByRef(system, refID string) (string, error)
	// attach records on the request's idempotency claim, when it has one,
	// that it created the order or quote id (see idempotency.Attach).
	attach(id string) error
	// putOrder writes rec and moves its index entries (and its place in
	// the set of orders the background drives) from old, nil for a new
	// order; of old it reads only the indexed fields, which storedKeys
	// keeps. A reference another order holds is a *refTakenError.
	putOrder(old, rec *orderRecord) error
	// scanOrders calls fn with the orders of a range in creation order
	// until fn returns false.
	scanOrders(q scanQuery, fn func(rec *orderRecord, pos position) bool) error
	// dueOrders returns the ids of the orders the background must drive.
	dueOrders() ([]string, error)
	// appendTimeline adds an entry to an order's timeline.
	appendTimeline(orderID string, e *orderv1.TimelineEntry) error
	// timeline returns an order's entries, oldest first.
	timeline(orderID string) ([]*orderv1.TimelineEntry, error)

	// quote returns the stored quote, nil when there is none.
	quote(id string) (*quoteRecord, error)
	// quoteByRef returns the id of the quote holding an external
	// reference, "" when none does.
	quoteByRef(system, refID string) (string, error)
	// putQuote writes rec and moves its index entries from old, nil for a
	// new quote.
	putQuote(old, rec *quoteRecord) error
	// scanQuotes is scanOrders for quotes.
	scanQuotes(q scanQuery, fn func(rec *quoteRecord, pos position) bool) error
	// expiringQuotes returns the ids of open quotes whose validity ended
	// before now, at most limit of them.
	expiringQuotes(now time.Time, limit int) ([]string, error)

	// owe queues a compensation.
	owe(c compensation) error
	// owed returns the queued compensations.
	owed() ([]compensation, error)
	// settle removes a compensation from the queue.
	settle(c compensation) error

	// emit appends an event to the outbox and returns its id.
	emit(subject, region string, msg proto.Message) (string, error)
	// emitAt is emit with the event's subject sequence given (seq > 0).
	emitAt(subject, region string, seq uint64, msg proto.Message) (string, error)
	// eventSeq is the store's counter of subject (storage.AggregateSeq).
	eventSeq(subject string) uint64
	// processed records that the consumer applied an event; true means it
	// already had.
	processed(consumer, eventID string, at time.Time) (bool, error)
}

// repository runs transactions. update may run fn more than once (group
// commit retries the others when one function of a shared commit fails),
// so fn must reset whatever it reports at its start.
type repository interface {
	view(ctx context.Context, fn func(txn) error) error
	update(ctx context.Context, fn func(txn) error) error
	// updateSolo runs fn once in a transaction of its own.
	updateSolo(ctx context.Context, fn func(txn) error) error
}

// core applies the order rules on top of a repository and the peers.
type core struct {
	repo      repository
	now       func() time.Time
	pricing   Pricing
	inventory Inventory
	credit    Credit
	failpoint func(string) error
	metrics   *metrics // nil: no KPIs
	log       *slog.Logger
	locks     keyedMutex
}

// fail runs the failpoint of a step; an error means the saga must stop
// where it is.
func (k *core) fail(step string) error {
	if k.failpoint == nil {
		return nil
	}
	if err := k.failpoint(step); err != nil {
		return errCrashed
	}
	return nil
}

// ---------------------------------------------------------------------------
// Status changes. Every change of an order's status (or of its hold reason)
// goes through transition, which keeps the timeline and the events in the
// same transaction as the change.

// change describes one status change.
type change struct {
	to     orderv1.OrderStatus
	hold   orderv1.HoldReason
	actor  string // "" means reqctx.Actor(ctx)
	reason string
	// eventID is the event that caused the change, when one did.
	eventID string
}

// transition applies ch to rec (already loaded in tx), appends the timeline
// entry and emits OrderStatusChanged and the specific event. The caller
// writes rec with putOrder afterwards. A change to the same status and hold
// reason does nothing.
func (k *core) transition(ctx context.Context, tx txn, rec *orderRecord, ch change) error {
	o := rec.o
	from, fromHold := o.GetStatus(), o.GetHoldReason()
	if ch.to != orderv1.OrderStatus_ORDER_STATUS_ON_HOLD {
		ch.hold = orderv1.HoldReason_HOLD_REASON_UNSPECIFIED
	}
	if from == ch.to && fromHold == ch.hold {
		return nil
	}
	actor := ch.actor
	if actor == "" {
		actor = reqctx.Actor(ctx)
	}
	now := k.now()
	o.Status, o.HoldReason = ch.to, ch.hold
	o.UpdateTime = timestamppb.New(now)
	if err := tx.appendTimeline(o.GetId(), &orderv1.TimelineEntry{
		Time:          timestamppb.New(now),
		FromStatus:    from,
		ToStatus:      ch.to,
		HoldReason:    ch.hold,
		Actor:         actor,
		Reason:        ch.reason,
		CorrelationId: reqctx.CorrelationID(ctx),
		Traceparent:   reqctx.Traceparent(ctx),
		EventId:       ch.eventID,
	}); err != nil {
		return err
	}

	subject, region := orderSubject(o.GetId()), o.GetShipToRegion()
	// The events carry the order as it is now; they are encoded into the
	// outbox before this returns, so they need no copy of it.
	snapshot := o
	var specific []proto.Message
	if from == orderv1.OrderStatus_ORDER_STATUS_ON_HOLD && ch.to != from {
		specific = append(specific, &eventsv1.OrderReleased{Order: snapshot, Actor: actor})
	}
	switch ch.to {
	case orderv1.OrderStatus_ORDER_STATUS_ACCEPTED:
		specific = append(specific, &eventsv1.OrderAccepted{Order: snapshot})
	case orderv1.OrderStatus_ORDER_STATUS_ON_HOLD:
		specific = append(specific, &eventsv1.OrderHeld{Order: snapshot, HoldReason: ch.hold})
	case orderv1.OrderStatus_ORDER_STATUS_CANCELLED:
		specific = append(specific, &eventsv1.OrderCancelled{Order: snapshot, Reason: ch.reason})
	}
	// The order's events are numbered from its own state, which putOrder
	// writes after this: no counter page to rewrite per event.
	if rec.st.EventSeq == 0 {
		rec.st.EventSeq = tx.eventSeq(subject)
	}
	emit := func(m proto.Message) error {
		rec.st.EventSeq++
		_, err := tx.emitAt(subject, region, rec.st.EventSeq, m)
		return err
	}
	for _, m := range specific {
		if err := emit(m); err != nil {
			return err
		}
	}
	if from != ch.to {
		if err := emit(&eventsv1.OrderStatusChanged{
			OrderId:     o.GetId(),
			FromStatus:  from,
			ToStatus:    ch.to,
			ExternalRef: o.GetExternalRef(),
		}); err != nil {
			return err
		}
	}
	return nil
}

func orderSubject(id string) string { return events.Subject("orders", id) }

func quoteSubject(id string) string { return events.Subject("quotes", id) }

// ---------------------------------------------------------------------------
// Visibility.

// seesOrder reports whether the principal may see an order: region-scoped
// keys see the orders shipping to their region.
func seesOrder(p auth.Principal, o *orderv1.Order) bool { return p.SeesRegion(o.GetShipToRegion()) }

func seesQuote(p auth.Principal, q *orderv1.Quote) bool { return p.SeesRegion(q.GetShipToRegion()) }

// checkRegionScope refuses a write into a region the key may not touch.
func checkRegionScope(p auth.Principal, field, region string) error {
	if p.Region != "" && p.Region != region {
		return &regionError{Field: field, Region: region, Scope: p.Region}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Per-order serialisation. One process owns the store file, so an in-process
// lock is enough to keep two saga runs (a request and the re-validator, or a
// cancel racing a saga step) off the same order.

// keyedMutex is a set of mutexes by key, created on demand and dropped when
// nobody holds or waits for them.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	ch   chan struct{}
	refs int
}

// lock takes the mutex of key, waiting at most until ctx ends, and returns
// the function that releases it.
func (m *keyedMutex) lock(ctx context.Context, key string) (func(), error) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]*keyedLock{}
	}
	l := m.locks[key]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		m.locks[key] = l
	}
	l.refs++
	m.mu.Unlock()

	drop := func() {
		m.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(m.locks, key)
		}
		m.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}
