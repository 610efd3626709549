// Package order is the order service: the system of record for quotes, sales
// orders, the quote-to-order saga, holds and releases, and the order
// timeline.
//
// The package is layered like every Millrace service. The domain files
// (core.go, quote.go, saga.go, lifecycle.go, query.go, validate.go) hold
// the rules and know nothing of gRPC or bbolt: they run against the small
// txn and repository interfaces in core.go and against the ports to the
// peer services declared here (Pricing, Inventory, Credit). store.go
// implements the repository on a storage.DB (buckets in schema.go), one
// bbolt transaction per operation, with secondary indexes, timeline entries,
// owed releases and outgoing events written in the same transaction as the
// record. server.go implements orderv1.OrderServiceServer and maps domain
// errors to API errors in one function; peers.go holds the gRPC adapters of
// the ports (deadline, circuit breaker, error classification); run.go the
// background work.
//
// Rules a reader of the contract may want to find quickly:
//   - An order is saved PENDING before any peer is asked for anything; the
//     saga then prices it, reserves stock (hard, idempotent by order id),
//     reserves credit (idempotent by order id) and accepts it. The next step
//     is persisted after each one, so a crash resumes at that step and a
//     repeated remote call is answered from the peer's idempotency record.
//   - A peer that is down never loses an order: pricing or fulfillment down
//     leaves it PENDING, customer (credit) down puts it ON_HOLD with
//     CREDIT_PENDING; Run's re-validator finishes it when the peer is back.
//   - Status moves forward only: PENDING → ACCEPTED → PARTIALLY_SHIPPED →
//     SHIPPED → INVOICED → CLOSED, with ON_HOLD beside PENDING and CANCELLED
//     reachable before anything shipped. Shipment and invoice events set the
//     later states from quantities (see lifecycle.go for the exact rule).
//   - A region-scoped key sees the orders and quotes shipping to its region
//     only; any other is NOT_FOUND.
package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/events"
)

// Options configures the order service.
type Options struct {
	// Notify is called after every commit that appended events, so the
	// outbox relay publishes at once. May be nil.
	Notify func()
	// Now returns the current time; tests pin it. Nil means the wall clock.
	// Times are stored in UTC.
	Now func() time.Time
	// Pricing prices baskets (the productpricing service).
	Pricing Pricing
	// Inventory checks availability and holds stock (the fulfillment
	// service).
	Inventory Inventory
	// Credit reserves credit for orders (the customer service).
	Credit Credit
	// Bus delivers the fulfillment events (ShipmentConfirmed,
	// InvoicePosted, InvoicePaid) that move orders after acceptance. Nil
	// means Run does not consume events.
	Bus events.Bus
	// RevalidateEvery is how often Run resumes waiting sagas, expires
	// quotes and retries owed releases. Zero means 5 seconds.
	RevalidateEvery time.Duration
	// Failpoint, when set, is called with the name of each saga step before
	// it runs (StepPrice, StepReserve, StepCredit, StepAccept) and with the
	// name plus ".done" after the step's remote call answered but before its
	// result is persisted. An error stops the saga on the spot, as if the
	// process had died there. Tests use it to inject crashes.
	Failpoint func(step string) error
	// Log receives what the background work has to report. Nil means
	// slog.Default().
	Log *slog.Logger
	// Metrics, when set, receives the order KPIs (metrics.go): status
	// changes, and the held and pending orders with their age.
	Metrics prometheus.Registerer
}

// Saga steps, in order. An order's persisted step is the next one to run.
const (
	StepPrice   = "price"
	StepReserve = "reserve"
	StepCredit  = "credit"
	StepAccept  = "accept"
)

// Bounds of the order service.
const (
	// MaxLines is the most lines a quote or an order carries.
	MaxLines = 200
	// DefaultPageSize and MaxPageSize bound list pages.
	DefaultPageSize = 50
	MaxPageSize     = 500
	// MaxQuoteValidity is how far in the future a quote's valid_until may
	// be. A soft hold lasts as long as its quote, so an unbounded validity
	// would let a quote park stock forever.
	MaxQuoteValidity = 366 * 24 * time.Hour
	// minListScan is the least number of index entries one list page may
	// examine before it returns a shorter page with a next_page_token; it
	// bounds the cost of filters applied to records (the region scope of a
	// key).
	minListScan = 1000
)

// Stable reasons the order service adds to the shared ones in apierr.
// Clients branch on them, so they never change once released.
const (
	// ReasonInvalidTransition: the quote's or order's state does not allow
	// the change; ErrorInfo metadata names "from" and "to".
	ReasonInvalidTransition = "INVALID_TRANSITION"
	// ReasonExternalRefTaken: another record holds the CRM reference.
	ReasonExternalRefTaken = "EXTERNAL_REF_TAKEN"
	// ReasonRegionOutOfScope: the key may not write that region.
	ReasonRegionOutOfScope = "REGION_OUT_OF_SCOPE"
	// ReasonCreditNotValidated: an order ON_HOLD{CREDIT_PENDING} cannot be
	// released by hand; the re-validator releases it.
	ReasonCreditNotValidated = "CREDIT_NOT_VALIDATED"
	// ReasonReleaseStillBlocked: the released step ran again and put the
	// order back on the same hold.
	ReasonReleaseStillBlocked = "STILL_ON_HOLD"
	// ReasonStockShort: stock for a quote's soft hold is short.
	ReasonStockShort = "STOCK_SHORT"
	// ReasonPeerRejected: a peer refused the request for a reason of its
	// own (its ErrorInfo reason is used when it gives one).
	ReasonPeerRejected = "PEER_REJECTED"

	// Reasons that start the timeline reason of an order the saga
	// cancelled because a step failed for good.
	ReasonPriceChanged  = "PRICE_CHANGED"
	ReasonLineNotPriced = "LINE_NOT_PRICED"
)

// ---------------------------------------------------------------------------
// Ports to the peer services. The domain declares what it needs; peers.go
// holds the gRPC adapters; tests swap in fakes.

// Pricing prices baskets. It is the port to the productpricing service.
type Pricing interface {
	// Simulate prices lines for a customer in a currency at a time. It
	// returns one priced line per input line, in order. A line without a
	// price is not an error: its status and reason say why. A peer that
	// cannot be reached is a *PeerUnavailableError.
	Simulate(ctx context.Context, customerID, currency string, at time.Time, lines []*orderv1.OrderLine) ([]*productpricingv1.PricedLine, error)
}

// ReservationKind says whether a reservation is binding (HARD, for an
// order) or a soft hold that expires by itself (SOFT, for a quote).
type ReservationKind = fulfillmentv1.ReservationKind

// The reservation kinds.
const (
	ReservationHard = fulfillmentv1.ReservationKind_RESERVATION_KIND_HARD
	ReservationSoft = fulfillmentv1.ReservationKind_RESERVATION_KIND_SOFT
)

// Inventory checks availability and holds stock. It is the port to the
// fulfillment service.
type Inventory interface {
	// Check answers, per line, whether and when the quantity can be
	// covered, without holding anything.
	Check(ctx context.Context, region string, lines []*orderv1.OrderLine, allowSplit bool) ([]*fulfillmentv1.LineAvailability, error)
	// Reserve holds stock for a reference (an order or a quote id). A
	// second call with the same reference returns the existing
	// reservation. A basket that cannot be covered returns a nil
	// reservation and the per-line answer, not an error. expire is the end
	// of a soft hold and ignored for a hard one.
	Reserve(ctx context.Context, referenceID string, kind ReservationKind, region string, lines []*orderv1.OrderLine, allowSplit bool, expire time.Time) (*fulfillmentv1.Reservation, []*fulfillmentv1.LineAvailability, error)
	// Release frees a reservation. Releasing one that is already released,
	// expired or unknown is not an error.
	Release(ctx context.Context, reservationID string) error
}

// CreditDecision is the customer service's answer to a credit reservation.
type CreditDecision struct {
	Approved bool
	// Reason is the stable decline reason, for example
	// "CREDIT_LIMIT_EXCEEDED"; empty when approved.
	Reason string
}

// Credit reserves credit for orders. It is the port to the customer
// service.
type Credit interface {
	// Reserve reserves amount for an order, idempotently by order id.
	Reserve(ctx context.Context, customerID, orderID string, amount *typev1.Money) (CreditDecision, error)
	// Release frees an order's reservation; releasing none is not an
	// error.
	Release(ctx context.Context, customerID, orderID string) error
}

// ErrPeerUnavailable is what every *PeerUnavailableError matches with
// errors.Is: the peer could not answer (UNAVAILABLE, a deadline, an open
// circuit breaker). It is never an answer about the order.
var ErrPeerUnavailable = errors.New("peer unavailable")

// PeerUnavailableError reports a peer service that could not answer.
type PeerUnavailableError struct {
	Peer string // "productpricing", "fulfillment", "customer"
	Err  error
}

func (e *PeerUnavailableError) Error() string {
	return fmt.Sprintf("%s is unavailable: %v", e.Peer, e.Err)
}

// Unwrap returns the cause.
func (e *PeerUnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrPeerUnavailable) true.
func (e *PeerUnavailableError) Is(target error) bool { return target == ErrPeerUnavailable }

// ---------------------------------------------------------------------------
// Domain errors. server.go maps each to its API error in one place.

// fieldViolation names one invalid field by its full path in the request.
type fieldViolation struct {
	Field       string
	Description string
}

// invalidError reports invalid input, one violation per field.
type invalidError struct {
	Violations []fieldViolation
}

func (e *invalidError) Error() string {
	msg := fmt.Sprintf("invalid %s: %s", e.Violations[0].Field, e.Violations[0].Description)
	if n := len(e.Violations) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return msg
}

func invalid(field, format string, args ...any) error {
	return &invalidError{Violations: []fieldViolation{{Field: field, Description: fmt.Sprintf(format, args...)}}}
}

// notFoundError reports a quote or order that does not exist or that the
// caller may not see; the two are indistinguishable on purpose.
type notFoundError struct {
	Kind string // "order" or "quote"
	ID   string
}

func (e *notFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.Kind, e.ID) }

// transitionError reports a state change the current state does not allow.
type transitionError struct {
	Kind     string // "order" or "quote"
	ID       string
	From, To string // status names, for example "DRAFT" and "APPROVED"
	Message  string
}

func (e *transitionError) Error() string { return e.Message }

// preconditionError reports an operation the stored state does not allow
// for a reason other than the state machine.
type preconditionError struct {
	Reason  string
	Message string
	Meta    map[string]string
}

func (e *preconditionError) Error() string { return e.Message }

// refTakenError reports an external reference held by another record.
type refTakenError struct {
	Field, System, RefID, Holder string
}

func (e *refTakenError) Error() string {
	if e.Holder == "" {
		return fmt.Sprintf("external ref %s/%s already belongs to another record", e.System, e.RefID)
	}
	return fmt.Sprintf("external ref %s/%s already belongs to %s", e.System, e.RefID, e.Holder)
}

// regionError reports a write into a region outside the caller's scope.
type regionError struct{ Field, Region, Scope string }

func (e *regionError) Error() string {
	return fmt.Sprintf("this key is scoped to region %q and cannot write orders or quotes shipping to %q", e.Scope, e.Region)
}

// errCrashed is returned when a failpoint stopped the saga: the process
// "died" there. Only tests set failpoints.
var errCrashed = errors.New("saga stopped by a failpoint")
