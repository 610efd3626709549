package order

import (
	"context"
	"errors"
	"github.com/millrace/millrace/internal/events"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

// Server implements orderv1.OrderServiceServer on an order store opened
// with Schema. It expects the platform's interceptors in front of it: a
// principal in every context, contract rules already checked. It checks the
// rules that need state itself, and enough of the stateless ones to keep
// its store sound on its own.
type Server struct {
	orderv1.UnimplementedOrderServiceServer
	core  *core
	opts  Options
	every time.Duration

	subMu sync.Mutex
	sub   events.Subscription
}

// NewServer returns the order service on db. Run does its background work.
func NewServer(db *storage.DB, opts Options) *Server {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	every := opts.RevalidateEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	log = log.With("service", "order")
	if opts.Pricing == nil {
		opts.Pricing = unconfiguredPort{peer: "productpricing"}
	}
	if opts.Inventory == nil {
		opts.Inventory = unconfiguredPort{peer: "fulfillment"}
	}
	if opts.Credit == nil {
		opts.Credit = unconfiguredCredit{unconfiguredPort{peer: "customer"}}
	}
	m, err := newMetrics(opts.Metrics, db, func() time.Time { return now().UTC() })
	if err != nil {
		// A second order service on one registry: its KPIs would be
		// counted twice, so this one counts none.
		log.Error("order metrics not registered", "err", err)
	}
	return &Server{
		opts:  opts,
		every: every,
		core: &core{
			repo:      &store{db: db, notify: opts.Notify, metrics: m},
			now:       func() time.Time { return now().UTC() },
			pricing:   opts.Pricing,
			inventory: opts.Inventory,
			credit:    opts.Credit,
			failpoint: opts.Failpoint,
			metrics:   m,
			log:       log,
		},
	}
}

// principal returns the caller the auth interceptor put into ctx.
func principal(ctx context.Context) (auth.Principal, error) { return auth.Require(ctx) }

// CreateQuote implements orderv1.OrderServiceServer.
func (s *Server) CreateQuote(ctx context.Context, req *orderv1.CreateQuoteRequest) (*orderv1.CreateQuoteResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	q, err := s.core.createQuote(ctx, p, req.GetQuote())
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return &orderv1.CreateQuoteResponse{Quote: q}, nil
}

// GetQuote implements orderv1.OrderServiceServer.
func (s *Server) GetQuote(ctx context.Context, req *orderv1.GetQuoteRequest) (*orderv1.GetQuoteResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	q, err := s.core.getQuote(ctx, p, req.GetId())
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return &orderv1.GetQuoteResponse{Quote: q}, nil
}

// ListQuotes implements orderv1.OrderServiceServer.
func (s *Server) ListQuotes(ctx context.Context, req *orderv1.ListQuotesRequest) (*orderv1.ListQuotesResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.core.listQuotes(ctx, p, req)
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return resp, nil
}

// SubmitQuote implements orderv1.OrderServiceServer.
func (s *Server) SubmitQuote(ctx context.Context, req *orderv1.SubmitQuoteRequest) (*orderv1.SubmitQuoteResponse, error) {
	q, err := s.moveQuote(ctx, req.GetId(), quoteSubmitted)
	if err != nil {
		return nil, err
	}
	return &orderv1.SubmitQuoteResponse{Quote: q}, nil
}

// ApproveQuote implements orderv1.OrderServiceServer. Who may approve is the
// permission table's business (quotes.approve).
func (s *Server) ApproveQuote(ctx context.Context, req *orderv1.ApproveQuoteRequest) (*orderv1.ApproveQuoteResponse, error) {
	q, err := s.moveQuote(ctx, req.GetId(), quoteApproved)
	if err != nil {
		return nil, err
	}
	if req.GetNote() != "" {
		s.core.log.InfoContext(ctx, "quote approved", "quote_id", q.GetId(), "actor", reqctx.Actor(ctx), "note", req.GetNote())
	}
	return &orderv1.ApproveQuoteResponse{Quote: q}, nil
}

// RejectQuote implements orderv1.OrderServiceServer.
func (s *Server) RejectQuote(ctx context.Context, req *orderv1.RejectQuoteRequest) (*orderv1.RejectQuoteResponse, error) {
	q, err := s.moveQuote(ctx, req.GetId(), quoteRejected)
	if err != nil {
		return nil, err
	}
	s.core.log.InfoContext(ctx, "quote rejected", "quote_id", q.GetId(), "actor", reqctx.Actor(ctx), "reason", req.GetReason())
	return &orderv1.RejectQuoteResponse{Quote: q}, nil
}

func (s *Server) moveQuote(ctx context.Context, id string, to orderv1.QuoteStatus) (*orderv1.Quote, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	q, err := s.core.moveQuote(ctx, p, id, to)
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return q, nil
}

// ConvertQuote implements orderv1.OrderServiceServer.
func (s *Server) ConvertQuote(ctx context.Context, req *orderv1.ConvertQuoteRequest) (*orderv1.ConvertQuoteResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	o, q, err := s.core.convertQuote(ctx, p, req.GetId(), req.GetExternalRef())
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return &orderv1.ConvertQuoteResponse{Order: o, Quote: q}, nil
}

// CreateOrder implements orderv1.OrderServiceServer. The order comes back
// as saved: ACCEPTED, ON_HOLD, or PENDING while a peer is unavailable.
func (s *Server) CreateOrder(ctx context.Context, req *orderv1.CreateOrderRequest) (*orderv1.CreateOrderResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.core.createOrder(ctx, p, req.GetOrder())
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return &orderv1.CreateOrderResponse{Order: o}, nil
}

// GetOrder implements orderv1.OrderServiceServer.
func (s *Server) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.core.getOrder(ctx, p, req.GetId())
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return &orderv1.GetOrderResponse{Order: o}, nil
}

// ListOrders implements orderv1.OrderServiceServer.
func (s *Server) ListOrders(ctx context.Context, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.core.listOrders(ctx, p, req)
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return resp, nil
}

// CancelOrder implements orderv1.OrderServiceServer.
func (s *Server) CancelOrder(ctx context.Context, req *orderv1.CancelOrderRequest) (*orderv1.CancelOrderResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.core.cancelOrder(ctx, p, req.GetId(), req.GetReason())
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return &orderv1.CancelOrderResponse{Order: o}, nil
}

// ReleaseOrder implements orderv1.OrderServiceServer. Which roles may
// release is the permission table's business (orders.release).
func (s *Server) ReleaseOrder(ctx context.Context, req *orderv1.ReleaseOrderRequest) (*orderv1.ReleaseOrderResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.core.releaseOrder(ctx, p, req.GetId(), req.GetReason())
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return &orderv1.ReleaseOrderResponse{Order: o}, nil
}

// GetOrderTimeline implements orderv1.OrderServiceServer.
func (s *Server) GetOrderTimeline(ctx context.Context, req *orderv1.GetOrderTimelineRequest) (*orderv1.GetOrderTimelineResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	entries, err := s.core.orderTimeline(ctx, p, req.GetId())
	if err != nil {
		return nil, s.apiError(ctx, err)
	}
	return &orderv1.GetOrderTimelineResponse{Entries: entries}, nil
}

// apiError maps a domain error to the error the caller sees, in one place.
func (s *Server) apiError(ctx context.Context, err error) error {
	var (
		inv   *invalidError
		nf    *notFoundError
		tr    *transitionError
		pre   *preconditionError
		taken *refTakenError
		reg   *regionError
		down  *PeerUnavailableError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &inv):
		v := make([]apierr.FieldViolation, len(inv.Violations))
		for i, fv := range inv.Violations {
			v[i] = apierr.FieldViolation{Field: fv.Field, Description: fv.Description}
		}
		return apierr.InvalidFields(v...)
	case errors.As(err, &nf):
		return apierr.NotFound(nf.Kind, nf.ID)
	case errors.As(err, &tr):
		return apierr.FailedPrecondition(ReasonInvalidTransition, tr.Message,
			map[string]string{"kind": tr.Kind, "id": tr.ID, "from": tr.From, "to": tr.To})
	case errors.As(err, &pre):
		return apierr.FailedPrecondition(pre.Reason, pre.Message, pre.Meta)
	case errors.As(err, &taken):
		meta := map[string]string{"field": taken.Field, "system": taken.System, "ref_id": taken.RefID}
		if taken.Holder != "" {
			meta["holder_id"] = taken.Holder
		}
		return apierr.AlreadyExists(ReasonExternalRefTaken, taken.Error(), meta)
	case errors.As(err, &reg):
		return apierr.PermissionDenied(ReasonRegionOutOfScope, reg.Error(), map[string]string{"field": reg.Field, "region": reg.Region})
	case errors.As(err, &down):
		return apierr.Unavailable(down.Peer, down.Err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case apierr.IsStatus(err):
		return err
	}
	s.core.log.ErrorContext(ctx, "internal error", "err", err, "correlation_id", reqctx.CorrelationID(ctx))
	return apierr.Internal()
}

// unconfiguredPort stands in for a port the process was started without:
// every call is an outage, so orders wait (PENDING or CREDIT_PENDING)
// instead of failing.
type unconfiguredPort struct{ peer string }

func (u unconfiguredPort) err() error {
	return &PeerUnavailableError{Peer: u.peer, Err: errors.New("no connection configured")}
}

func (u unconfiguredPort) Simulate(context.Context, string, string, time.Time, []*orderv1.OrderLine) ([]*productpricingv1.PricedLine, error) {
	return nil, u.err()
}

func (u unconfiguredPort) Check(context.Context, string, []*orderv1.OrderLine, bool) ([]*fulfillmentv1.LineAvailability, error) {
	return nil, u.err()
}

func (u unconfiguredPort) Reserve(context.Context, string, ReservationKind, string, []*orderv1.OrderLine, bool, time.Time) (*fulfillmentv1.Reservation, []*fulfillmentv1.LineAvailability, error) {
	return nil, nil, u.err()
}

func (u unconfiguredPort) Release(context.Context, string) error { return u.err() }

type unconfiguredCredit struct{ unconfiguredPort }

func (u unconfiguredCredit) Reserve(context.Context, string, string, *typev1.Money) (CreditDecision, error) {
	return CreditDecision{}, u.err()
}

func (u unconfiguredCredit) Release(context.Context, string, string) error { return u.err() }
