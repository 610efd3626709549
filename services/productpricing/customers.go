package productpricing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
)

// customerClient is the gRPC adapter of CustomerDirectory: it asks the
// customer service, the system of record for region and tier.
type customerClient struct {
	c customerv1.CustomerServiceClient
}

// NewCustomerClient returns a CustomerDirectory that looks customers up with
// the customer service's GetCustomer over conn. The connection carries the
// service's own credentials (per-RPC credentials or mTLS); the adapter adds
// nothing to the outgoing context.
func NewCustomerClient(conn grpc.ClientConnInterface) CustomerDirectory {
	return &customerClient{c: customerv1.NewCustomerServiceClient(conn)}
}

// Lookup maps the customer service's answer onto the port: NotFound (and an
// id the service rejects as malformed, which no customer can have) is
// ErrCustomerNotFound; Unavailable, DeadlineExceeded and ResourceExhausted
// are a *PeerUnavailableError the server answers with 503; anything else is
// an internal fault.
func (c *customerClient) Lookup(ctx context.Context, id string) (CustomerFacts, error) {
	resp, err := c.c.GetCustomer(ctx, &customerv1.GetCustomerRequest{Id: id})
	if err != nil {
		switch status.Code(err) {
		case codes.NotFound, codes.InvalidArgument:
			return CustomerFacts{}, ErrCustomerNotFound
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
			return CustomerFacts{}, &PeerUnavailableError{Peer: "customer", Err: err}
		case codes.Canceled:
			return CustomerFacts{}, fmt.Errorf("customer lookup: %w", context.Canceled)
		}
		return CustomerFacts{}, fmt.Errorf("customer lookup %s: %w", id, err)
	}
	cu := resp.GetCustomer()
	if cu == nil {
		return CustomerFacts{}, fmt.Errorf("customer lookup %s: empty response", id)
	}
	return CustomerFacts{ID: cu.GetId(), Region: cu.GetRegion(), Tier: cu.GetTier()}, nil
}

// CachedDirectory remembers successful lookups of another directory for a
// short time. Pricing a basket needs the customer's region and tier on every
// call; in mesh mode that is a network hop per simulation, and region and
// tier change rarely. The price of the cache is that a changed tier reaches
// prices up to ttl late, so keep ttl to seconds. Unknown customers and
// failures are never cached.
type CachedDirectory struct {
	next CustomerDirectory
	ttl  time.Duration
	max  int
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]cachedFacts
}

type cachedFacts struct {
	facts   CustomerFacts
	expires time.Time
}

// NewCachedDirectory caches next's answers for ttl, holding at most
// maxEntries customers (<= 0 means 10,000). now may be nil for time.Now.
func NewCachedDirectory(next CustomerDirectory, ttl time.Duration, maxEntries int, now func() time.Time) *CachedDirectory {
	if maxEntries <= 0 {
		maxEntries = 10_000
	}
	if now == nil {
		now = time.Now
	}
	return &CachedDirectory{next: next, ttl: ttl, max: maxEntries, now: now, entries: map[string]cachedFacts{}}
}

// Lookup answers from the cache while the entry is fresh, else asks next.
func (d *CachedDirectory) Lookup(ctx context.Context, id string) (CustomerFacts, error) {
	now := d.now()
	d.mu.Lock()
	e, ok := d.entries[id]
	d.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.facts, nil
	}
	f, err := d.next.Lookup(ctx, id)
	if err != nil {
		if errors.Is(err, ErrCustomerNotFound) {
			d.Forget(id)
		}
		return f, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.entries) >= d.max {
		d.evict(now)
	}
	d.entries[id] = cachedFacts{facts: f, expires: now.Add(d.ttl)}
	return f, nil
}

// Forget drops a customer from the cache, for a consumer of
// CustomerUpdated events that wants changes to apply at once.
func (d *CachedDirectory) Forget(id string) {
	d.mu.Lock()
	delete(d.entries, id)
	d.mu.Unlock()
}

// evict makes room: expired entries first, then arbitrary ones (map order)
// until a tenth of the cache is free. Called with mu held.
func (d *CachedDirectory) evict(now time.Time) {
	for id, e := range d.entries {
		if !now.Before(e.expires) {
			delete(d.entries, id)
		}
	}
	for id := range d.entries {
		if len(d.entries) < d.max-d.max/10 {
			break
		}
		delete(d.entries, id)
	}
}
