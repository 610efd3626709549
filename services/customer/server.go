package customer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/status"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/internal/validation"
)

// Options configures the customer service.
type Options struct {
	// Notify is called after every commit that appended events, so the
	// outbox relay publishes at once. May be nil.
	Notify func()
	// Now returns the current time; tests pin it. Nil means the wall
	// clock. Times are stored in UTC.
	Now func() time.Time
}

// Server implements customerv1.CustomerServiceServer on a customer store
// opened with Schema. It expects the platform's interceptors in front of
// it: a principal in every context, contract rules already checked. It
// checks the rules that need state itself, and enough of the stateless ones
// to keep its store sound on its own.
type Server struct {
	customerv1.UnimplementedCustomerServiceServer
	core *core
}

// NewServer returns the customer service on db, which must have been
// opened with Schema; anything else is a wiring mistake and panics here
// rather than on the first request.
func NewServer(db *storage.DB, opts Options) *Server {
	if db == nil || db.Name() != Schema.Name {
		panic("customer.NewServer: the store must be opened with customer.Schema")
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Server{core: &core{
		repo: &store{db: db, notify: opts.Notify},
		now:  func() time.Time { return now().UTC() },
	}}
}

// principal returns the caller the auth interceptor put into ctx.
func principal(ctx context.Context) (auth.Principal, error) { return auth.Require(ctx) }

// CreateCustomer implements customerv1.CustomerServiceServer.
func (s *Server) CreateCustomer(ctx context.Context, req *customerv1.CreateCustomerRequest) (*customerv1.CreateCustomerResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.core.create(ctx, p, req.GetCustomer())
	if err != nil {
		return nil, apiError(ctx, err)
	}
	return &customerv1.CreateCustomerResponse{Customer: c}, nil
}

// GetCustomer implements customerv1.CustomerServiceServer.
func (s *Server) GetCustomer(ctx context.Context, req *customerv1.GetCustomerRequest) (*customerv1.GetCustomerResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID("id", req.GetId()); err != nil {
		return nil, apiError(ctx, err)
	}
	c, err := s.core.get(ctx, p, req.GetId())
	if err != nil {
		return nil, apiError(ctx, err)
	}
	return &customerv1.GetCustomerResponse{Customer: c}, nil
}

// ListCustomers implements customerv1.CustomerServiceServer.
func (s *Server) ListCustomers(ctx context.Context, req *customerv1.ListCustomersRequest) (*customerv1.ListCustomersResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := s.core.list(ctx, p, req)
	if err != nil {
		return nil, apiError(ctx, err)
	}
	return resp, nil
}

// UpdateCustomer implements customerv1.CustomerServiceServer.
func (s *Server) UpdateCustomer(ctx context.Context, req *customerv1.UpdateCustomerRequest) (*customerv1.UpdateCustomerResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.core.update(ctx, p, req.GetCustomer(), req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, apiError(ctx, err)
	}
	return &customerv1.UpdateCustomerResponse{Customer: c}, nil
}

// UpsertCustomerByExternalRef implements customerv1.CustomerServiceServer.
func (s *Server) UpsertCustomerByExternalRef(ctx context.Context, req *customerv1.UpsertCustomerByExternalRefRequest) (*customerv1.UpsertCustomerByExternalRefResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	r := s.core.upsert(ctx, p, req)
	if r.err != nil {
		return nil, apiError(ctx, r.err)
	}
	return &customerv1.UpsertCustomerByExternalRefResponse{Customer: r.customer, Result: r.result}, nil
}

// BatchUpsertCustomers implements customerv1.CustomerServiceServer. Items
// that fail carry their error as a google.rpc.Status built exactly as the
// same failure of a single upsert would be, field paths prefixed with the
// item ("items[3].customer.region").
func (s *Server) BatchUpsertCustomers(ctx context.Context, req *customerv1.BatchUpsertCustomersRequest) (*customerv1.BatchUpsertCustomersResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	items := req.GetItems()
	if len(items) == 0 || len(items) > MaxBatchItems {
		return nil, apiError(ctx, invalid("items", "must hold 1 to %d items, not %d", MaxBatchItems, len(items)))
	}
	// The contract's rules are checked per item here (the platform skips
	// this method), so one bad item fails alone with its field path.
	resp := &customerv1.BatchUpsertCustomersResponse{Results: make([]*customerv1.BatchUpsertItemResult, len(items))}
	checked := make([]*customerv1.UpsertCustomerByExternalRefRequest, len(items))
	anyValid := false
	for i, it := range items {
		if err := validation.CheckAt(fmt.Sprintf("items[%d]", i), it); err != nil {
			resp.Results[i] = &customerv1.BatchUpsertItemResult{Index: int32(i), Error: status.Convert(err).Proto()}
			continue
		}
		checked[i], anyValid = it, true
	}
	if !anyValid {
		return resp, nil
	}
	results, err := s.core.batchUpsert(ctx, p, checked)
	if err != nil {
		return nil, apiError(ctx, err)
	}
	for i, r := range results {
		if checked[i] == nil {
			continue
		}
		item := &customerv1.BatchUpsertItemResult{Index: int32(i)}
		if r.err != nil {
			item.Error = status.Convert(apiError(ctx, r.err)).Proto()
		} else {
			item.CustomerId, item.Result = r.customer.GetId(), r.result
		}
		resp.Results[i] = item
	}
	return resp, nil
}

// GetCustomerHierarchy implements customerv1.CustomerServiceServer.
func (s *Server) GetCustomerHierarchy(ctx context.Context, req *customerv1.GetCustomerHierarchyRequest) (*customerv1.GetCustomerHierarchyResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID("id", req.GetId()); err != nil {
		return nil, apiError(ctx, err)
	}
	resp, err := s.core.hierarchy(ctx, p, req)
	if err != nil {
		return nil, apiError(ctx, err)
	}
	return resp, nil
}

// BlockCustomer implements customerv1.CustomerServiceServer.
func (s *Server) BlockCustomer(ctx context.Context, req *customerv1.BlockCustomerRequest) (*customerv1.BlockCustomerResponse, error) {
	c, err := s.setStatus(ctx, req.GetId(), req.GetReason(), customerv1.CustomerStatus_CUSTOMER_STATUS_BLOCKED)
	if err != nil {
		return nil, err
	}
	return &customerv1.BlockCustomerResponse{Customer: c}, nil
}

// UnblockCustomer implements customerv1.CustomerServiceServer.
func (s *Server) UnblockCustomer(ctx context.Context, req *customerv1.UnblockCustomerRequest) (*customerv1.UnblockCustomerResponse, error) {
	c, err := s.setStatus(ctx, req.GetId(), req.GetReason(), customerv1.CustomerStatus_CUSTOMER_STATUS_ACTIVE)
	if err != nil {
		return nil, err
	}
	return &customerv1.UnblockCustomerResponse{Customer: c}, nil
}

func (s *Server) setStatus(ctx context.Context, id, reason string, st customerv1.CustomerStatus) (*customerv1.Customer, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	ch := &checker{}
	ch.length("id", id, 1, 64)
	ch.length("reason", reason, 0, 500)
	if err := ch.err(); err != nil {
		return nil, apiError(ctx, err)
	}
	c, err := s.core.setStatus(ctx, p, id, st, reason)
	if err != nil {
		return nil, apiError(ctx, err)
	}
	return c, nil
}

// CheckCredit implements customerv1.CustomerServiceServer.
func (s *Server) CheckCredit(ctx context.Context, req *customerv1.CheckCreditRequest) (*customerv1.CheckCreditResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID("id", req.GetId()); err != nil {
		return nil, apiError(ctx, err)
	}
	resp, err := s.core.checkCredit(ctx, p, req.GetId(), req.GetAmount())
	if err != nil {
		return nil, apiError(ctx, err)
	}
	return resp, nil
}

// ReserveCredit implements customerv1.CustomerServiceServer.
func (s *Server) ReserveCredit(ctx context.Context, req *customerv1.ReserveCreditRequest) (*customerv1.ReserveCreditResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID("customer_id", req.GetCustomerId()); err != nil {
		return nil, apiError(ctx, err)
	}
	resp, err := s.core.reserve(ctx, p, req.GetCustomerId(), req.GetOrderId(), req.GetAmount())
	if err != nil {
		return nil, apiError(ctx, err)
	}
	return resp, nil
}

// ReleaseCredit implements customerv1.CustomerServiceServer.
func (s *Server) ReleaseCredit(ctx context.Context, req *customerv1.ReleaseCreditRequest) (*customerv1.ReleaseCreditResponse, error) {
	p, err := principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkID("customer_id", req.GetCustomerId()); err != nil {
		return nil, apiError(ctx, err)
	}
	resp, err := s.core.release(ctx, p, req.GetCustomerId(), req.GetOrderId())
	if err != nil {
		return nil, apiError(ctx, err)
	}
	return resp, nil
}

func checkID(field, id string) error {
	ch := &checker{}
	ch.length(field, id, 1, 64)
	return ch.err()
}

// apiError maps a domain error to the error the caller sees. It is the one
// place the customer service decides codes and reasons; anything it does
// not recognise is a fault, logged here and answered without details.
func apiError(ctx context.Context, err error) error {
	var (
		inv   *invalidError
		nf    *notFoundError
		stale *staleEtagError
		taken *refTakenError
		owned *fieldOwnedError
		reg   *regionError
		pre   *preconditionError
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
		return apierr.NotFound("customer", nf.ID)
	case errors.As(err, &stale):
		return apierr.StaleEtag("customer", stale.ID)
	case errors.As(err, &taken):
		meta := map[string]string{"field": taken.Field, "system": taken.System, "ref_id": taken.RefID}
		if taken.Holder != "" {
			meta["holder_id"] = taken.Holder
		}
		return apierr.AlreadyExists(ReasonExternalRefTaken, taken.Error(), meta)
	case errors.As(err, &owned):
		return apierr.FieldOwned(owned.Field, owned.Owner)
	case errors.As(err, &reg):
		return apierr.PermissionDenied(ReasonRegionOutOfScope, reg.Error(), map[string]string{"field": reg.Field, "region": reg.Region})
	case errors.As(err, &pre):
		return apierr.FailedPrecondition(pre.Reason, pre.Message, map[string]string{"field": pre.Field})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case apierr.IsStatus(err):
		return err
	}
	slog.ErrorContext(ctx, "customer service: internal error", "err", err, "correlation_id", reqctx.CorrelationID(ctx))
	return apierr.Internal()
}
