package fulfillment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

// Server implements fulfillmentv1.FulfillmentServiceServer on a store
// opened with Schema. It expects the platform's interceptors in front of
// it: a principal in every context, contract rules already checked. It
// checks the rules that need state itself, and enough of the stateless
// ones to keep its store sound on its own.
type Server struct {
	fulfillmentv1.UnimplementedFulfillmentServiceServer
	core        *core
	expiryEvery time.Duration
}

// NewServer returns the fulfillment service on db. It panics when
// opts.TaxRates holds a rate that is not a decimal fraction in [0, 1): the
// table is configuration, and a service that would invoice wrong amounts
// must not start.
func NewServer(db *storage.DB, opts Options) *Server {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	table := opts.TaxRates
	if table == nil {
		table = DefaultTaxRates
	}
	rates, err := parseTaxRates(table)
	if err != nil {
		panic(err)
	}
	every := opts.ExpiryInterval
	if every <= 0 {
		every = DefaultExpiryInterval
	}
	return &Server{
		core: &core{
			repo:     newStore(db, opts.Notify),
			now:      func() time.Time { return now().UTC().Truncate(time.Microsecond) },
			products: opts.Products,
			orders:   opts.Orders,
			taxRates: rates,
		},
		expiryEvery: every,
	}
}

// Run does the service's background work until ctx ends: it expires soft
// holds whose time is up, freeing their stock and emitting
// ReservationExpired. Availability already ignores such holds, so Run
// being late never over-promises; it only makes the expiry visible.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.expiryEvery)
	defer t.Stop()
	for {
		s.expirePass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// expirePass runs one expiry pass; a failure is logged and retried on the
// next tick, and a panic (a corrupt record) does not stop the loop.
func (s *Server) expirePass(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			slog.ErrorContext(ctx, "fulfillment: soft hold expiry failed", "panic", fmt.Sprint(r))
		}
	}()
	n, err := s.core.expireDue(ctx)
	if err != nil && ctx.Err() == nil {
		slog.ErrorContext(ctx, "fulfillment: soft hold expiry failed", "err", err)
	}
	if n > 0 {
		slog.DebugContext(ctx, "fulfillment: soft holds expired", "count", n)
	}
}

// principal returns the caller the auth interceptor put into ctx.
func principal(ctx context.Context) (auth.Principal, error) { return auth.Require(ctx) }

// call runs one RPC: the principal, the domain, the error mapping.
func call[Resp any](ctx context.Context, fn func(auth.Principal) (Resp, error)) (Resp, error) {
	var zero Resp
	p, err := principal(ctx)
	if err != nil {
		return zero, err
	}
	resp, err := fn(p)
	if err != nil {
		return zero, apiError(ctx, err)
	}
	return resp, nil
}

// CreateSite implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) CreateSite(ctx context.Context, req *fulfillmentv1.CreateSiteRequest) (*fulfillmentv1.CreateSiteResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.CreateSiteResponse, error) {
		site, err := s.core.createSite(ctx, p, req.GetSite())
		return &fulfillmentv1.CreateSiteResponse{Site: site}, err
	})
}

// GetSite implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) GetSite(ctx context.Context, req *fulfillmentv1.GetSiteRequest) (*fulfillmentv1.GetSiteResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.GetSiteResponse, error) {
		site, err := s.core.getSite(ctx, p, req.GetId())
		return &fulfillmentv1.GetSiteResponse{Site: site}, err
	})
}

// ListSites implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) ListSites(ctx context.Context, req *fulfillmentv1.ListSitesRequest) (*fulfillmentv1.ListSitesResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.ListSitesResponse, error) {
		return s.core.listSites(ctx, p, req)
	})
}

// AdjustInventory implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) AdjustInventory(ctx context.Context, req *fulfillmentv1.AdjustInventoryRequest) (*fulfillmentv1.AdjustInventoryResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.AdjustInventoryResponse, error) {
		return s.core.adjustInventory(ctx, p, req)
	})
}

// ListInventory implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) ListInventory(ctx context.Context, req *fulfillmentv1.ListInventoryRequest) (*fulfillmentv1.ListInventoryResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.ListInventoryResponse, error) {
		return s.core.listInventory(ctx, p, req)
	})
}

// CreateSupplyPlan implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) CreateSupplyPlan(ctx context.Context, req *fulfillmentv1.CreateSupplyPlanRequest) (*fulfillmentv1.CreateSupplyPlanResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.CreateSupplyPlanResponse, error) {
		pl, err := s.core.createSupplyPlan(ctx, p, req.GetSupplyPlan())
		return &fulfillmentv1.CreateSupplyPlanResponse{SupplyPlan: pl}, err
	})
}

// ListSupplyPlans implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) ListSupplyPlans(ctx context.Context, req *fulfillmentv1.ListSupplyPlansRequest) (*fulfillmentv1.ListSupplyPlansResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.ListSupplyPlansResponse, error) {
		return s.core.listSupplyPlans(ctx, p, req)
	})
}

// CheckAvailability implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) CheckAvailability(ctx context.Context, req *fulfillmentv1.CheckAvailabilityRequest) (*fulfillmentv1.CheckAvailabilityResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.CheckAvailabilityResponse, error) {
		return s.core.checkAvailability(ctx, p, req)
	})
}

// CreateReservation implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) CreateReservation(ctx context.Context, req *fulfillmentv1.CreateReservationRequest) (*fulfillmentv1.CreateReservationResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.CreateReservationResponse, error) {
		return s.core.createReservation(ctx, p, req)
	})
}

// ReleaseReservation implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) ReleaseReservation(ctx context.Context, req *fulfillmentv1.ReleaseReservationRequest) (*fulfillmentv1.ReleaseReservationResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.ReleaseReservationResponse, error) {
		r, err := s.core.releaseReservation(ctx, p, req.GetId())
		return &fulfillmentv1.ReleaseReservationResponse{Reservation: r}, err
	})
}

// CreateShipment implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) CreateShipment(ctx context.Context, req *fulfillmentv1.CreateShipmentRequest) (*fulfillmentv1.CreateShipmentResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.CreateShipmentResponse, error) {
		sh, err := s.core.createShipment(ctx, p, req.GetShipment())
		return &fulfillmentv1.CreateShipmentResponse{Shipment: sh}, err
	})
}

// GetShipment implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) GetShipment(ctx context.Context, req *fulfillmentv1.GetShipmentRequest) (*fulfillmentv1.GetShipmentResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.GetShipmentResponse, error) {
		sh, err := s.core.getShipment(ctx, p, req.GetId())
		return &fulfillmentv1.GetShipmentResponse{Shipment: sh}, err
	})
}

// ListShipments implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) ListShipments(ctx context.Context, req *fulfillmentv1.ListShipmentsRequest) (*fulfillmentv1.ListShipmentsResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.ListShipmentsResponse, error) {
		return s.core.listShipments(ctx, p, req)
	})
}

// ConfirmShipment implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) ConfirmShipment(ctx context.Context, req *fulfillmentv1.ConfirmShipmentRequest) (*fulfillmentv1.ConfirmShipmentResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.ConfirmShipmentResponse, error) {
		sh, err := s.core.confirmShipment(ctx, p, req)
		return &fulfillmentv1.ConfirmShipmentResponse{Shipment: sh}, err
	})
}

// GetInvoice implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) GetInvoice(ctx context.Context, req *fulfillmentv1.GetInvoiceRequest) (*fulfillmentv1.GetInvoiceResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.GetInvoiceResponse, error) {
		inv, err := s.core.getInvoice(ctx, p, req.GetId())
		return &fulfillmentv1.GetInvoiceResponse{Invoice: inv}, err
	})
}

// ListInvoices implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) ListInvoices(ctx context.Context, req *fulfillmentv1.ListInvoicesRequest) (*fulfillmentv1.ListInvoicesResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.ListInvoicesResponse, error) {
		return s.core.listInvoices(ctx, p, req)
	})
}

// RecordPayment implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) RecordPayment(ctx context.Context, req *fulfillmentv1.RecordPaymentRequest) (*fulfillmentv1.RecordPaymentResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.RecordPaymentResponse, error) {
		inv, err := s.core.recordPayment(ctx, p, req)
		return &fulfillmentv1.RecordPaymentResponse{Invoice: inv}, err
	})
}

// CreateReturn implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) CreateReturn(ctx context.Context, req *fulfillmentv1.CreateReturnRequest) (*fulfillmentv1.CreateReturnResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.CreateReturnResponse, error) {
		r, err := s.core.createReturn(ctx, p, req.GetReturn())
		return &fulfillmentv1.CreateReturnResponse{Return: r}, err
	})
}

// GetReturn implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) GetReturn(ctx context.Context, req *fulfillmentv1.GetReturnRequest) (*fulfillmentv1.GetReturnResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.GetReturnResponse, error) {
		r, err := s.core.getReturn(ctx, p, req.GetId())
		return &fulfillmentv1.GetReturnResponse{Return: r}, err
	})
}

// ListReturns implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) ListReturns(ctx context.Context, req *fulfillmentv1.ListReturnsRequest) (*fulfillmentv1.ListReturnsResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.ListReturnsResponse, error) {
		return s.core.listReturns(ctx, p, req)
	})
}

// ReceiveReturn implements fulfillmentv1.FulfillmentServiceServer.
func (s *Server) ReceiveReturn(ctx context.Context, req *fulfillmentv1.ReceiveReturnRequest) (*fulfillmentv1.ReceiveReturnResponse, error) {
	return call(ctx, func(p auth.Principal) (*fulfillmentv1.ReceiveReturnResponse, error) {
		r, err := s.core.receiveReturn(ctx, p, req)
		return &fulfillmentv1.ReceiveReturnResponse{Return: r}, err
	})
}

// apiError maps a domain error to the error the caller sees. It is the one
// place the fulfillment service decides codes and reasons; anything it
// does not recognise is a fault, logged here and answered without details.
func apiError(ctx context.Context, err error) error {
	var (
		inv  *invalidError
		nf   *notFoundError
		conf *conflictError
		pre  *preconditionError
		reg  *regionError
		peer *PeerUnavailableError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &inv):
		return invalidStatus(inv)
	case errors.As(err, &nf):
		return apierr.NotFound(nf.Kind, nf.ID)
	case errors.As(err, &conf):
		return apierr.AlreadyExists(conf.Reason, conf.Message, conf.Meta)
	case errors.As(err, &pre):
		meta := map[string]string{"field": pre.Field}
		for k, v := range pre.Meta {
			meta[k] = v
		}
		return apierr.FailedPrecondition(pre.Reason, pre.Message, meta)
	case errors.As(err, &reg):
		return apierr.PermissionDenied(ReasonRegionOutOfScope, reg.Error(), map[string]string{"field": reg.Field, "region": reg.Region})
	case errors.As(err, &peer):
		slog.WarnContext(ctx, "fulfillment: peer unavailable", "peer", peer.Peer, "err", peer.Err, "correlation_id", reqctx.CorrelationID(ctx))
		return apierr.Unavailable(peer.Peer, peer.Err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case apierr.IsStatus(err):
		return err
	}
	slog.ErrorContext(ctx, "fulfillment service: internal error", "err", err, "correlation_id", reqctx.CorrelationID(ctx))
	return apierr.Internal()
}

// invalidStatus is apierr.InvalidFields with the domain's own reason
// (UNKNOWN_PRODUCT, OVERPAYMENT…) where it has one.
func invalidStatus(e *invalidError) error {
	v := make([]apierr.FieldViolation, len(e.Violations))
	for i, fv := range e.Violations {
		v[i] = apierr.FieldViolation{Field: fv.Field, Description: fv.Description}
	}
	if e.Reason == "" {
		return apierr.InvalidFields(v...)
	}
	br := &errdetails.BadRequest{}
	for _, fv := range e.Violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: fv.Field, Description: fv.Description})
	}
	meta := map[string]string{"field": e.Violations[0].Field}
	for k, v := range e.Meta {
		meta[k] = v
	}
	st := status.New(codes.InvalidArgument, e.Error())
	withDetails, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.Reason, Domain: apierr.Domain, Metadata: meta}, br)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}
