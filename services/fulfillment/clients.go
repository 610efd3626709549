package fulfillment

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/money"
)

// The gRPC adapters of the ports. The connections carry the service's own
// credentials (the mesh token or mTLS); the adapters add nothing to the
// outgoing context.

// GRPCStatus makes a peer outage a 503 wherever it surfaces, including to
// a caller of an adapter that is not the fulfillment server.
func (e *PeerUnavailableError) GRPCStatus() *status.Status {
	return status.Convert(apierr.Unavailable(e.Peer, e.Err))
}

// peerError maps a peer's gRPC error onto the ports' errors: notFound for
// NotFound (and InvalidArgument: an id the peer rejects as malformed cannot
// exist), a *PeerUnavailableError for Unavailable, DeadlineExceeded and
// ResourceExhausted, and a plain error for anything else.
func peerError(peer, what string, err, notFound error) error {
	switch status.Code(err) {
	case codes.NotFound, codes.InvalidArgument:
		return notFound
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return &PeerUnavailableError{Peer: peer, Err: err}
	case codes.Canceled:
		return fmt.Errorf("%s %s: %w", peer, what, context.Canceled)
	}
	return fmt.Errorf("%s %s: %w", peer, what, err)
}

// ProductCacheTTL is how long NewProductClient remembers a product. Unit
// conversions change rarely, and availability asks for every line's
// product; a changed conversion reaches fulfillment this late at most.
const ProductCacheTTL = 30 * time.Second

// maxCachedProducts bounds the product cache.
const maxCachedProducts = 10_000

// productClient is the gRPC adapter of ProductCatalog with a short cache.
type productClient struct {
	c   productpricingv1.ProductPricingServiceClient
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]cachedProduct
}

type cachedProduct struct {
	facts   ProductFacts
	expires time.Time
}

// NewProductClient returns a ProductCatalog that reads products with the
// productpricing service's GetProduct over conn and remembers them for
// ProductCacheTTL. Unknown SKUs and failures are never cached.
func NewProductClient(conn grpc.ClientConnInterface) ProductCatalog {
	return newProductClient(conn, ProductCacheTTL, time.Now)
}

func newProductClient(conn grpc.ClientConnInterface, ttl time.Duration, now func() time.Time) *productClient {
	return &productClient{c: productpricingv1.NewProductPricingServiceClient(conn), ttl: ttl, now: now, entries: map[string]cachedProduct{}}
}

// Product answers from the cache while the entry is fresh, else asks
// productpricing. The facts returned are shared: callers must not change
// them (the domain never does; its arithmetic makes new values).
func (c *productClient) Product(ctx context.Context, sku string) (ProductFacts, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[sku]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.facts, nil
	}
	resp, err := c.c.GetProduct(ctx, &productpricingv1.GetProductRequest{Sku: sku})
	if err != nil {
		err = peerError("productpricing", "get product "+sku, err, ErrUnknownProduct)
		if errors.Is(err, ErrUnknownProduct) {
			c.mu.Lock()
			delete(c.entries, sku)
			c.mu.Unlock()
		}
		return ProductFacts{}, err
	}
	facts, err := NewProductFacts(resp.GetProduct())
	if err != nil {
		return ProductFacts{}, fmt.Errorf("productpricing answered an unusable product: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= maxCachedProducts {
		for k, old := range c.entries {
			if !now.Before(old.expires) || len(c.entries) >= maxCachedProducts {
				delete(c.entries, k)
			}
		}
	}
	c.entries[sku] = cachedProduct{facts: facts, expires: now.Add(c.ttl)}
	return facts, nil
}

// orderClient is the gRPC adapter of OrderDirectory. It does not cache:
// invoicing must use the order's prices as they are.
type orderClient struct {
	c orderv1.OrderServiceClient
}

// NewOrderClient returns an OrderDirectory that reads orders with the
// order service's GetOrder over conn.
func NewOrderClient(conn grpc.ClientConnInterface) OrderDirectory {
	return &orderClient{c: orderv1.NewOrderServiceClient(conn)}
}

// OrderLines returns the order's lines with their confirmed prices; a line
// not priced yet has a nil UnitPrice.
func (c *orderClient) OrderLines(ctx context.Context, orderID string) ([]PricedLine, error) {
	resp, err := c.c.GetOrder(ctx, &orderv1.GetOrderRequest{Id: orderID})
	if err != nil {
		return nil, peerError("order", "get order "+orderID, err, ErrUnknownOrder)
	}
	o := resp.GetOrder()
	if o == nil {
		return nil, fmt.Errorf("order %s: empty response", orderID)
	}
	out := make([]PricedLine, len(o.GetLines()))
	for i, l := range o.GetLines() {
		pl := PricedLine{
			Index: int32(i), SKU: l.GetSku(), Unit: l.GetQuantity().GetUnit(),
			Currency: o.GetCurrencyCode(), CustomerID: o.GetCustomerId(), ShipToRegion: o.GetShipToRegion(),
			OrderStatus: o.GetStatus(),
		}
		if up := l.GetUnitPrice(); up.GetAmount() != "" {
			if up.GetCurrencyCode() != "" && up.GetCurrencyCode() != o.GetCurrencyCode() {
				return nil, fmt.Errorf("order %s line %d is priced in %s, the order in %s", orderID, i, up.GetCurrencyCode(), o.GetCurrencyCode())
			}
			price, err := money.Parse(up.GetAmount())
			if err != nil {
				return nil, fmt.Errorf("order %s line %d: unit price %q: %w", orderID, i, up.GetAmount(), err)
			}
			pl.UnitPrice = price
		}
		out[i] = pl
	}
	return out, nil
}
