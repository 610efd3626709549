package productpricing

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

// Page sizes of the list methods.
const (
	defaultPageSize      = 50
	maxProductPageSize   = 500
	maxPriceListPageSize = 200
)

// Server implements productpricingv1.ProductPricingServiceServer.
type Server struct {
	productpricingv1.UnimplementedProductPricingServiceServer

	store     *store
	customers CustomerDirectory
	now       func() time.Time
}

var _ productpricingv1.ProductPricingServiceServer = (*Server)(nil)

// NewServer returns the product-pricing service over db, which must have
// been opened with Schema.
func NewServer(db *storage.DB, opts Options) *Server {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Server{
		store:     newStore(db, now, opts.Notify),
		customers: opts.Customers,
		now:       now,
	}
}

// CreateProduct creates a product keyed by its SKU.
func (s *Server) CreateProduct(ctx context.Context, req *productpricingv1.CreateProductRequest) (*productpricingv1.CreateProductResponse, error) {
	if req.GetProduct() == nil {
		return nil, mapError(ctx, invalid("product", "is required"))
	}
	p, err := s.store.createProduct(ctx, req.GetProduct())
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return &productpricingv1.CreateProductResponse{Product: p}, nil
}

// GetProduct returns one product.
func (s *Server) GetProduct(ctx context.Context, req *productpricingv1.GetProductRequest) (*productpricingv1.GetProductResponse, error) {
	if req.GetSku() == "" {
		return nil, mapError(ctx, invalid("sku", "is required"))
	}
	p, err := s.store.getProduct(req.GetSku())
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return &productpricingv1.GetProductResponse{Product: p}, nil
}

// ListProducts lists products in SKU order, filtered by status or by an
// external reference.
func (s *Server) ListProducts(ctx context.Context, req *productpricingv1.ListProductsRequest) (*productpricingv1.ListProductsResponse, error) {
	if (req.GetExternalRefSystem() == "") != (req.GetExternalRefId() == "") {
		field := "external_ref_id"
		if req.GetExternalRefSystem() == "" {
			field = "external_ref_system"
		}
		return nil, mapError(ctx, invalid(field, "filter by external reference with both its system and its id"))
	}
	f := productFilter{status: req.GetStatus(), refSystem: req.GetExternalRefSystem(), refID: req.GetExternalRefId()}
	products, next, err := s.store.listProducts(f, pageSize(req.GetPageSize(), maxProductPageSize), req.GetPageToken())
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return &productpricingv1.ListProductsResponse{Products: products, NextPageToken: next}, nil
}

// UpdateProduct changes the fields named in the update mask.
func (s *Server) UpdateProduct(ctx context.Context, req *productpricingv1.UpdateProductRequest) (*productpricingv1.UpdateProductResponse, error) {
	in := req.GetProduct()
	switch {
	case in == nil:
		return nil, mapError(ctx, invalid("product", "is required"))
	case in.GetSku() == "":
		return nil, mapError(ctx, invalid("product.sku", "is required"))
	case req.GetUpdateMask() == nil:
		return nil, mapError(ctx, invalid("update_mask", "is required"))
	}
	p, err := s.store.updateProduct(ctx, in.GetSku(), in.GetEtag(), func(p *productpricingv1.Product) error {
		return applyMask(p, in, req.GetUpdateMask().GetPaths(), productMaskPaths)
	})
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return &productpricingv1.UpdateProductResponse{Product: p}, nil
}

// UpsertProductByExternalRef creates or replaces the product that carries
// the reference. The product's values replace the stored ones; an etag, when
// sent, must match.
func (s *Server) UpsertProductByExternalRef(ctx context.Context, req *productpricingv1.UpsertProductByExternalRefRequest) (*productpricingv1.UpsertProductByExternalRefResponse, error) {
	ref := req.GetExternalRef()
	switch {
	case ref == nil:
		return nil, mapError(ctx, invalid("external_ref", "is required"))
	case ref.GetSystem() == "":
		return nil, mapError(ctx, invalid("external_ref.system", "is required"))
	case ref.GetId() == "":
		return nil, mapError(ctx, invalid("external_ref.id", "is required"))
	case req.GetProduct() == nil:
		return nil, mapError(ctx, invalid("product", "is required"))
	}
	p, created, err := s.store.upsertProductByRef(ctx, ref, req.GetProduct())
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return &productpricingv1.UpsertProductByExternalRefResponse{Product: p, Created: created}, nil
}

// ConvertQuantity converts a quantity between two units of a product.
func (s *Server) ConvertQuantity(ctx context.Context, req *productpricingv1.ConvertQuantityRequest) (*productpricingv1.ConvertQuantityResponse, error) {
	switch {
	case req.GetSku() == "":
		return nil, mapError(ctx, invalid("sku", "is required"))
	case req.GetQuantity() == nil:
		return nil, mapError(ctx, invalid("quantity", "is required"))
	}
	p, err := s.store.getProduct(req.GetSku())
	if err != nil {
		return nil, mapError(ctx, err)
	}
	resp, err := ConvertQuantity(p, req.GetQuantity(), req.GetToUnit())
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return resp, nil
}

// CreatePriceList creates a price list.
func (s *Server) CreatePriceList(ctx context.Context, req *productpricingv1.CreatePriceListRequest) (*productpricingv1.CreatePriceListResponse, error) {
	in := req.GetPriceList()
	if in == nil {
		return nil, mapError(ctx, invalid("price_list", "is required"))
	}
	who := principal(ctx)
	if err := checkWritable(who, in.GetRegion()); err != nil {
		return nil, mapError(ctx, err)
	}
	if in.GetCustomerId() != "" {
		if _, err := s.customerFor(ctx, who, in); err != nil {
			return nil, mapError(ctx, err)
		}
	}
	pl, err := s.store.createPriceList(ctx, in)
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return &productpricingv1.CreatePriceListResponse{PriceList: pl}, nil
}

// GetPriceList returns one price list with its entries, in SKU order.
func (s *Server) GetPriceList(ctx context.Context, req *productpricingv1.GetPriceListRequest) (*productpricingv1.GetPriceListResponse, error) {
	if req.GetId() == "" {
		return nil, mapError(ctx, invalid("id", "is required"))
	}
	who := principal(ctx)
	pl, err := s.store.getPriceList(req.GetId(), func(pl *productpricingv1.PriceList) bool { return visible(who, pl) })
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return &productpricingv1.GetPriceListResponse{PriceList: pl}, nil
}

// ListPriceLists lists price lists without their entries (GetPriceList
// returns those), filtered by currency and region. A key with a region scope
// sees its region's lists and the lists for every region.
func (s *Server) ListPriceLists(ctx context.Context, req *productpricingv1.ListPriceListsRequest) (*productpricingv1.ListPriceListsResponse, error) {
	f := priceListFilter{currency: req.GetCurrencyCode(), region: req.GetRegion(), scope: principal(ctx).Region}
	lists, next, err := s.store.listPriceLists(f, pageSize(req.GetPageSize(), maxPriceListPageSize), req.GetPageToken())
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return &productpricingv1.ListPriceListsResponse{PriceLists: lists, NextPageToken: next}, nil
}

// UpdatePriceList changes the fields named in the update mask.
func (s *Server) UpdatePriceList(ctx context.Context, req *productpricingv1.UpdatePriceListRequest) (*productpricingv1.UpdatePriceListResponse, error) {
	in := req.GetPriceList()
	switch {
	case in == nil:
		return nil, mapError(ctx, invalid("price_list", "is required"))
	case in.GetId() == "":
		return nil, mapError(ctx, invalid("price_list.id", "is required"))
	case req.GetUpdateMask() == nil:
		return nil, mapError(ctx, invalid("update_mask", "is required"))
	}
	who := principal(ctx)
	paths := req.GetUpdateMask().GetPaths()

	// A change that names a customer (or moves a customer's list to another
	// region) is checked against the customer directory, a network call
	// that must not run inside the write transaction. So the change is
	// previewed on the stored list first, the customer is looked up, and the
	// transaction then verifies that it still names the customer checked.
	var checked *CustomerFacts
	stored, err := s.store.getPriceList(in.GetId(), func(pl *productpricingv1.PriceList) bool { return visible(who, pl) })
	if err != nil {
		return nil, mapError(ctx, err)
	}
	preview := proto.Clone(stored).(*productpricingv1.PriceList)
	if err := applyMask(preview, in, paths, priceListMaskPaths); err != nil {
		return nil, mapError(ctx, err)
	}
	if customerChanged(stored, preview) {
		if checked, err = s.customerFor(ctx, who, preview); err != nil {
			return nil, mapError(ctx, err)
		}
	}

	pl, err := s.store.updatePriceList(ctx, in.GetId(), in.GetEtag(), func(pl *productpricingv1.PriceList) error {
		if !visible(who, pl) {
			return &NotFoundError{Kind: "price list", ID: pl.GetId()}
		}
		if err := checkWritable(who, pl.GetRegion()); err != nil {
			return err
		}
		before := proto.Clone(pl).(*productpricingv1.PriceList)
		if err := applyMask(pl, in, paths, priceListMaskPaths); err != nil {
			return err
		}
		if err := checkWritable(who, pl.GetRegion()); err != nil {
			return err
		}
		if !customerChanged(before, pl) {
			return nil
		}
		if checked == nil || checked.ID != pl.GetCustomerId() {
			// Changed by someone else since the preview.
			return &StaleEtagError{Kind: "price list", ID: pl.GetId()}
		}
		return checkCustomerScope(pl, *checked)
	})
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return &productpricingv1.UpdatePriceListResponse{PriceList: pl}, nil
}

// DeletePriceList deletes a price list; an etag, when sent, must match.
func (s *Server) DeletePriceList(ctx context.Context, req *productpricingv1.DeletePriceListRequest) (*productpricingv1.DeletePriceListResponse, error) {
	if req.GetId() == "" {
		return nil, mapError(ctx, invalid("id", "is required"))
	}
	who := principal(ctx)
	err := s.store.deletePriceList(ctx, req.GetId(), req.GetEtag(), func(pl *productpricingv1.PriceList) error {
		if !visible(who, pl) {
			return &NotFoundError{Kind: "price list", ID: pl.GetId()}
		}
		return checkWritable(who, pl.GetRegion())
	})
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return &productpricingv1.DeletePriceListResponse{}, nil
}

// SimulatePrices prices a basket for a customer.
func (s *Server) SimulatePrices(ctx context.Context, req *productpricingv1.SimulatePricesRequest) (*productpricingv1.SimulatePricesResponse, error) {
	if req.GetCustomerId() == "" {
		return nil, mapError(ctx, invalid("customer_id", "is required"))
	}
	at := s.now().UTC()
	if req.GetPriceTime() != nil {
		if err := req.GetPriceTime().CheckValid(); err != nil {
			return nil, mapError(ctx, invalid("price_time", "is not a valid time"))
		}
		at = req.GetPriceTime().AsTime().UTC()
	}
	facts, err := s.lookupCustomer(ctx, principal(ctx), req.GetCustomerId(), "customer_id")
	if err != nil {
		return nil, mapError(ctx, err)
	}
	resp, err := s.store.simulate(facts, req.GetCurrencyCode(), at, req.GetLines())
	if err != nil {
		return nil, mapError(ctx, err)
	}
	return resp, nil
}

// customerChanged reports whether an update makes a list name a customer
// it did not, or moves a customer's list to another region: the changes
// that need the customer directory's word.
func customerChanged(before, after *productpricingv1.PriceList) bool {
	return after.GetCustomerId() != "" &&
		(after.GetCustomerId() != before.GetCustomerId() || after.GetRegion() != before.GetRegion())
}

// customerFor looks up the customer a customer-specific list names and
// checks the list against it.
func (s *Server) customerFor(ctx context.Context, who auth.Principal, pl *productpricingv1.PriceList) (*CustomerFacts, error) {
	facts, err := s.lookupCustomer(ctx, who, pl.GetCustomerId(), "price_list.customer_id")
	if err != nil {
		return nil, err
	}
	if err := checkCustomerScope(pl, facts); err != nil {
		return nil, err
	}
	return &facts, nil
}

// lookupCustomer asks the customer directory. An unknown customer, or one
// of a region the caller's key may not see, is an invalid field, so whether
// it exists elsewhere does not leak.
func (s *Server) lookupCustomer(ctx context.Context, who auth.Principal, id, field string) (CustomerFacts, error) {
	if s.customers == nil {
		return CustomerFacts{}, &PeerUnavailableError{Peer: "customer", Err: errors.New("no customer directory configured")}
	}
	facts, err := s.customers.Lookup(ctx, id)
	if errors.Is(err, ErrCustomerNotFound) || (err == nil && !who.SeesRegion(facts.Region)) {
		return CustomerFacts{}, invalidReason(ReasonUnknownCustomer, map[string]string{"customer_id": id}, field, "no customer has id %q", id)
	}
	if err != nil {
		return CustomerFacts{}, err
	}
	if facts.ID == "" {
		facts.ID = id
	}
	return facts, nil
}

// principal returns the caller. Behind the platform's auth interceptor there
// always is one; without it (in-process callers), the zero principal has no
// region scope.
func principal(ctx context.Context) auth.Principal {
	p, _ := auth.FromContext(ctx)
	return p
}

// visible reports whether a caller may see a list: lists for every region
// are visible to all, others to keys of their region or without a scope.
func visible(who auth.Principal, pl *productpricingv1.PriceList) bool {
	return pl.GetRegion() == "" || who.SeesRegion(pl.GetRegion())
}

// checkWritable refuses a write of a list outside the caller's region scope.
// A key with a scope writes only its region's lists: a list for every region
// (region empty) affects every region's prices.
func checkWritable(who auth.Principal, region string) error {
	if who.Region == "" || region == who.Region {
		return nil
	}
	return &ForbiddenError{
		Reason:  ReasonRegionOutOfScope,
		Field:   "price_list.region",
		Message: "this key may only write price lists of region " + who.Region,
	}
}

func pageSize(requested int32, maxSize int) int {
	switch {
	case requested <= 0:
		return defaultPageSize
	case int(requested) > maxSize:
		return maxSize
	}
	return int(requested)
}

// mapError turns a domain error into the status a caller sees. It is the
// one place the service decides codes: invalid input 400 with the field,
// not found 404, conflicts and stale etags 409, a peer that is down 503.
// Anything else is a fault of ours: logged with the correlation id and
// answered as a bare internal error.
func mapError(ctx context.Context, err error) error {
	var (
		inv      *InvalidError
		nf       *NotFoundError
		conflict *ConflictError
		stale    *StaleEtagError
		pre      *PreconditionError
		forbid   *ForbiddenError
		peer     *PeerUnavailableError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &inv):
		return invalidStatus(inv)
	case errors.As(err, &nf):
		return apierr.NotFound(nf.Kind, nf.ID)
	case errors.As(err, &conflict):
		reason := conflict.Reason
		if reason == "" {
			reason = apierr.ReasonAlreadyExists
		}
		return apierr.AlreadyExists(reason, conflict.Message, conflict.Meta)
	case errors.As(err, &stale):
		return apierr.StaleEtag(stale.Kind, stale.ID)
	case errors.As(err, &pre):
		return apierr.FailedPrecondition(pre.Reason, pre.Message, pre.Meta)
	case errors.As(err, &forbid):
		return apierr.PermissionDenied(forbid.Reason, forbid.Message, map[string]string{"field": forbid.Field})
	case errors.As(err, &peer):
		slog.WarnContext(ctx, "productpricing: peer unavailable", "peer", peer.Peer, "err", peer.Err, "correlation_id", reqctx.CorrelationID(ctx))
		return apierr.Unavailable(peer.Peer, peer.Err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	// A status from a peer (wrapped by an adapter) is not passed through:
	// its message is the peer's, and an unexpected one is our fault too.
	slog.ErrorContext(ctx, "productpricing: internal error", "err", err, "correlation_id", reqctx.CorrelationID(ctx))
	return apierr.Internal()
}

// invalidStatus renders an InvalidError: field violations, and the error's
// own reason when it has one (NOT_WHOLE_UNITS, NOT_EXACT…) rather than the
// generic INVALID_ARGUMENT.
func invalidStatus(e *InvalidError) error {
	fvs := make([]apierr.FieldViolation, len(e.Violations))
	for i, v := range e.Violations {
		fvs[i] = apierr.FieldViolation{Field: v.Field, Description: v.Description}
	}
	if e.Reason == "" {
		return apierr.InvalidFields(fvs...)
	}
	meta := map[string]string{}
	for k, v := range e.Meta {
		meta[k] = v
	}
	if len(e.Violations) > 0 {
		meta["field"] = e.Violations[0].Field
	}
	st, _ := status.FromError(apierr.New(codes.InvalidArgument, e.Reason, e.Error(), meta))
	br := &errdetails.BadRequest{}
	for _, v := range e.Violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
	}
	if withBR, err := st.WithDetails(br); err == nil {
		return withBR.Err()
	}
	return st.Err()
}
