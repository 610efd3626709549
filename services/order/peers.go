package order

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/reqctx"
)

// The gRPC adapters of the ports. Each call gets its own deadline and goes
// through a circuit breaker per peer, and its error is classified once,
// here:
//   - UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED, and an open
//     breaker, are a *PeerUnavailableError (errors.Is ErrPeerUnavailable):
//     the peer did not answer, and the saga waits for it;
//   - every other status is the peer's answer, a *PeerError; the codes that
//     say something about the request itself (INVALID_ARGUMENT, NOT_FOUND,
//     FAILED_PRECONDITION, OUT_OF_RANGE, ALREADY_EXISTS) are definitive,
//     the others (INTERNAL, PERMISSION_DENIED…) are treated as a peer fault
//     worth retrying.
// Only an outage counts against the breaker: a peer that answers "no" is a
// healthy peer.

// Defaults of the adapters.
const (
	// DefaultCallTimeout bounds one call to a peer.
	DefaultCallTimeout = 2 * time.Second
	// DefaultBreakerTrips is how many consecutive outages open a breaker.
	DefaultBreakerTrips = 5
	// DefaultBreakerOpenFor is how long an open breaker refuses calls
	// before it lets one through to test the peer.
	DefaultBreakerOpenFor = 3 * time.Second
)

// PeerOption tunes a peer adapter.
type PeerOption func(*peerConfig)

type peerConfig struct {
	timeout time.Duration
	trips   uint32
	openFor time.Duration
}

// WithCallTimeout sets the deadline of each call (default 2 s).
func WithCallTimeout(d time.Duration) PeerOption { return func(c *peerConfig) { c.timeout = d } }

// WithBreaker sets how many consecutive outages open the breaker and how
// long it then stays open (defaults 5 and 3 s).
func WithBreaker(trips uint32, openFor time.Duration) PeerOption {
	return func(c *peerConfig) { c.trips, c.openFor = trips, openFor }
}

// PeerError is a peer's answer that is an error: a gRPC status other than
// an outage.
type PeerError struct {
	Peer   string
	Status *status.Status
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("%s answered %s: %s", e.Peer, e.Status.Code(), e.Status.Message())
}

// GRPCStatus is not implemented on purpose: a peer's status is never
// passed through to our caller as if it were ours.

// Definitive reports whether the answer is about the request itself, so
// asking again would get the same answer.
func (e *PeerError) Definitive() bool {
	switch e.Status.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.OutOfRange, codes.AlreadyExists:
		return true
	}
	return false
}

// reason returns the peer's ErrorInfo reason, "" when it gave none.
func (e *PeerError) reason() string {
	for _, d := range e.Status.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

func (e *PeerError) violations() []*errdetails.BadRequest_FieldViolation {
	for _, d := range e.Status.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			return br.GetFieldViolations()
		}
	}
	return nil
}

// isDefinitive reports whether err is a definitive answer of a peer.
func isDefinitive(err error) bool {
	var pe *PeerError
	return errors.As(err, &pe) && pe.Definitive()
}

// peerMessage renders a peer's error for a timeline reason or a hold.
func peerMessage(err error) string {
	var pe *PeerError
	if errors.As(err, &pe) {
		if r := pe.reason(); r != "" {
			return r + ": " + pe.Status.Message()
		}
		return pe.Status.Message()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// refusal turns a peer's error on a request path into the answer for our
// caller: an outage stays a *PeerUnavailableError (503); a peer's
// complaint about the input becomes ours, its field paths placed under
// path ("lines[0].quantity" → "order.lines[0].quantity"); anything else is
// an internal fault.
func refusal(path string, err error) error {
	var pe *PeerError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Status.Code() {
	case codes.InvalidArgument:
		fvs := pe.violations()
		if len(fvs) == 0 {
			return invalid(path, "%s", pe.Status.Message())
		}
		ie := &invalidError{}
		for _, fv := range fvs {
			ie.Violations = append(ie.Violations, fieldViolation{Field: path + "." + strings.TrimPrefix(fv.GetField(), "."), Description: fv.GetDescription()})
		}
		return ie
	case codes.NotFound, codes.FailedPrecondition, codes.OutOfRange, codes.AlreadyExists:
		reason := pe.reason()
		if reason == "" {
			reason = ReasonPeerRejected
		}
		return &preconditionError{Reason: reason, Message: fmt.Sprintf("the %s service refused: %s", pe.Peer, pe.Status.Message()),
			Meta: map[string]string{"peer": pe.Peer}}
	}
	return err
}

// peer is one remote service behind a deadline and a breaker.
type peer struct {
	name    string
	timeout time.Duration
	cb      *gobreaker.CircuitBreaker[any]
}

func newPeer(name string, opts []PeerOption) *peer {
	cfg := peerConfig{timeout: DefaultCallTimeout, trips: DefaultBreakerTrips, openFor: DefaultBreakerOpenFor}
	for _, o := range opts {
		o(&cfg)
	}
	trips := cfg.trips
	return &peer{
		name:    name,
		timeout: cfg.timeout,
		cb: gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
			Name:        name,
			Timeout:     cfg.openFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= trips },
			// A peer that answers is healthy, whatever it answers.
			IsSuccessful: func(err error) bool { return err == nil || !isOutage(err) },
			// A call our own caller abandoned says nothing about the peer.
			IsExcluded: func(err error) bool { return status.Code(err) == codes.Canceled },
		}),
	}
}

func isOutage(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// call runs fn against the peer with a deadline, through the breaker, and
// classifies its error.
func call[T any](ctx context.Context, p *peer, fn func(context.Context) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	cctx = outgoing(cctx)
	v, err := p.cb.Execute(func() (any, error) { return fn(cctx) })
	if err == nil {
		return v.(T), nil
	}
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return zero, &PeerUnavailableError{Peer: p.name, Err: err}
	case ctx.Err() != nil:
		return zero, ctx.Err()
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return zero, &PeerUnavailableError{Peer: p.name, Err: err}
	}
	return zero, &PeerError{Peer: p.name, Status: st}
}

// outgoing carries the request's correlation id and traceparent to the
// peer, so its logs and events join the same trace.
func outgoing(ctx context.Context) context.Context {
	var kv []string
	if id := reqctx.CorrelationID(ctx); id != "" {
		kv = append(kv, "x-correlation-id", id)
	}
	if tp := reqctx.Traceparent(ctx); tp != "" {
		kv = append(kv, "traceparent", tp)
	}
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// ---------------------------------------------------------------------------
// Pricing over productpricing's SimulatePrices.

type pricingClient struct {
	c productpricingv1.ProductPricingServiceClient
	p *peer
}

// NewPricingClient returns the Pricing port over a connection to the
// productpricing service. The connection carries the service's own
// credentials.
func NewPricingClient(conn grpc.ClientConnInterface, opts ...PeerOption) Pricing {
	return &pricingClient{c: productpricingv1.NewProductPricingServiceClient(conn), p: newPeer("productpricing", opts)}
}

func (c *pricingClient) Simulate(ctx context.Context, customerID, currency string, at time.Time, lines []*orderv1.OrderLine) ([]*productpricingv1.PricedLine, error) {
	req := &productpricingv1.SimulatePricesRequest{CustomerId: customerID, CurrencyCode: currency, PriceTime: timestamppb.New(at)}
	for _, l := range lines {
		req.Lines = append(req.Lines, &productpricingv1.SimulationLine{Sku: l.GetSku(), Quantity: qtyOf(l)})
	}
	resp, err := call(ctx, c.p, func(ctx context.Context) (*productpricingv1.SimulatePricesResponse, error) {
		return c.c.SimulatePrices(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	return resp.GetLines(), nil
}

func qtyOf(l *orderv1.OrderLine) *typev1.Quantity {
	return &typev1.Quantity{Value: l.GetQuantity().GetValue(), Unit: l.GetQuantity().GetUnit()}
}

func availabilityLines(lines []*orderv1.OrderLine) []*fulfillmentv1.AvailabilityLine {
	out := make([]*fulfillmentv1.AvailabilityLine, len(lines))
	for i, l := range lines {
		out[i] = &fulfillmentv1.AvailabilityLine{Sku: l.GetSku(), Quantity: qtyOf(l)}
	}
	return out
}

// ---------------------------------------------------------------------------
// Inventory over fulfillment.

type inventoryClient struct {
	c fulfillmentv1.FulfillmentServiceClient
	p *peer
}

// NewInventoryClient returns the Inventory port over a connection to the
// fulfillment service.
func NewInventoryClient(conn grpc.ClientConnInterface, opts ...PeerOption) Inventory {
	return &inventoryClient{c: fulfillmentv1.NewFulfillmentServiceClient(conn), p: newPeer("fulfillment", opts)}
}

func (c *inventoryClient) Check(ctx context.Context, region string, lines []*orderv1.OrderLine, allowSplit bool) ([]*fulfillmentv1.LineAvailability, error) {
	req := &fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: region, Lines: availabilityLines(lines), AllowSplit: allowSplit}
	resp, err := call(ctx, c.p, func(ctx context.Context) (*fulfillmentv1.CheckAvailabilityResponse, error) {
		return c.c.CheckAvailability(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	return resp.GetLines(), nil
}

func (c *inventoryClient) Reserve(ctx context.Context, referenceID string, kind ReservationKind, region string, lines []*orderv1.OrderLine, allowSplit bool, expire time.Time) (*fulfillmentv1.Reservation, []*fulfillmentv1.LineAvailability, error) {
	req := &fulfillmentv1.CreateReservationRequest{Kind: kind, ReferenceId: referenceID, ShipToRegion: region, Lines: availabilityLines(lines), AllowSplit: allowSplit}
	if kind == ReservationSoft && !expire.IsZero() {
		req.ExpireTime = timestamppb.New(expire)
	}
	resp, err := call(ctx, c.p, func(ctx context.Context) (*fulfillmentv1.CreateReservationResponse, error) {
		return c.c.CreateReservation(ctx, req)
	})
	if err != nil {
		return nil, nil, err
	}
	return resp.GetReservation(), resp.GetLines(), nil
}

// Release treats a reservation fulfillment no longer knows or no longer
// holds (NOT_FOUND, FAILED_PRECONDITION) as released: the stock is free.
func (c *inventoryClient) Release(ctx context.Context, reservationID string) error {
	_, err := call(ctx, c.p, func(ctx context.Context) (*fulfillmentv1.ReleaseReservationResponse, error) {
		return c.c.ReleaseReservation(ctx, &fulfillmentv1.ReleaseReservationRequest{Id: reservationID})
	})
	var pe *PeerError
	if errors.As(err, &pe) && (pe.Status.Code() == codes.NotFound || pe.Status.Code() == codes.FailedPrecondition) {
		return nil
	}
	return err
}

// ---------------------------------------------------------------------------
// Credit over the customer service.

type creditClient struct {
	c customerv1.CustomerServiceClient
	p *peer
}

// NewCreditClient returns the Credit port over a connection to the customer
// service.
func NewCreditClient(conn grpc.ClientConnInterface, opts ...PeerOption) Credit {
	return &creditClient{c: customerv1.NewCustomerServiceClient(conn), p: newPeer("customer", opts)}
}

func (c *creditClient) Reserve(ctx context.Context, customerID, orderID string, amount *typev1.Money) (CreditDecision, error) {
	resp, err := call(ctx, c.p, func(ctx context.Context) (*customerv1.ReserveCreditResponse, error) {
		return c.c.ReserveCredit(ctx, &customerv1.ReserveCreditRequest{CustomerId: customerID, OrderId: orderID, Amount: amount})
	})
	if err != nil {
		return CreditDecision{}, err
	}
	switch resp.GetDecision() {
	case customerv1.CreditDecision_CREDIT_DECISION_APPROVED:
		return CreditDecision{Approved: true}, nil
	case customerv1.CreditDecision_CREDIT_DECISION_DECLINED:
		reason := resp.GetReason()
		if reason == "" {
			reason = "DECLINED"
		}
		return CreditDecision{Reason: reason}, nil
	}
	return CreditDecision{}, fmt.Errorf("customer service answered ReserveCredit for order %s without a decision", orderID)
}

func (c *creditClient) Release(ctx context.Context, customerID, orderID string) error {
	_, err := call(ctx, c.p, func(ctx context.Context) (*customerv1.ReleaseCreditResponse, error) {
		return c.c.ReleaseCredit(ctx, &customerv1.ReleaseCreditRequest{CustomerId: customerID, OrderId: orderID})
	})
	var pe *PeerError
	if errors.As(err, &pe) && pe.Status.Code() == codes.NotFound {
		return nil
	}
	return err
}
