package productpricing

import (
	"sync"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
)

// maxCacheEntries bounds the read cache. Past it the cache starts over;
// the working set of a catalog (the SKUs people actually quote) refills it.
const maxCacheEntries = 100_000

// pricingCache keeps what pricing reads, decoded and compiled: products with
// their unit tables, list headers, and the candidate lists per SKU and
// currency. Simulating a basket is the hot path (every quote, every order
// confirms its prices); decoding protobuf records and rebuilding unit tables
// on each call would cost more than the pricing itself.
//
// The cache only ever holds one committed state of the store, so a basket
// priced from it is consistent. The rules that make it so:
//   - a write announces itself before it commits (beginWrite) and clears the
//     cache after (endWrite); while a write is in flight the cache answers
//     nothing and accepts nothing, because the store may already be ahead of
//     it;
//   - a reader takes the generation before it opens its read transaction,
//     and reads or fills the cache only while the generation is unchanged,
//     so it never mixes what it read from an older snapshot with what others
//     cached from a newer one.
//
// A write's response is sent after endWrite, so a caller that changed a price
// sees the change on its next simulation.
type pricingCache struct {
	mu         sync.RWMutex
	gen        uint64
	writers    int
	products   map[string]*catalogProduct // nil value: no such SKU
	heads      map[string]*productpricingv1.PriceList
	candidates map[candidateKey][]candidate
}

type candidateKey struct{ sku, currency string }

func newPricingCache() *pricingCache {
	c := &pricingCache{}
	c.reset()
	return c
}

// reset empties the maps. Called with mu held.
func (c *pricingCache) reset() {
	c.products = map[string]*catalogProduct{}
	c.heads = map[string]*productpricingv1.PriceList{}
	c.candidates = map[candidateKey][]candidate{}
}

// generation returns the current generation; take it before opening the
// read transaction whose results will be cached.
func (c *pricingCache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// beginWrite announces a write about to commit.
func (c *pricingCache) beginWrite() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writers++
}

// endWrite ends a write; a committed one clears the cache.
func (c *pricingCache) endWrite(committed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writers--
	if committed {
		c.gen++
		c.reset()
	}
}

// usable reports whether a reader of generation gen may use the cache.
// Called with mu held.
func (c *pricingCache) usable(gen uint64) bool { return c.gen == gen && c.writers == 0 }

func (c *pricingCache) product(gen uint64, sku string) (*catalogProduct, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.usable(gen) {
		return nil, false
	}
	p, ok := c.products[sku]
	return p, ok
}

func (c *pricingCache) head(gen uint64, id string) (*productpricingv1.PriceList, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.usable(gen) {
		return nil, false
	}
	h, ok := c.heads[id]
	return h, ok
}

func (c *pricingCache) candidatesFor(gen uint64, k candidateKey) ([]candidate, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.usable(gen) {
		return nil, false
	}
	cs, ok := c.candidates[k]
	return cs, ok
}

// store runs put under the lock if the reader's generation is current and
// no write is in flight.
func (c *pricingCache) store(gen uint64, put func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.usable(gen) {
		return
	}
	if len(c.products)+len(c.heads)+len(c.candidates) >= maxCacheEntries {
		c.reset()
	}
	put()
}

func (c *pricingCache) putProduct(gen uint64, sku string, p *catalogProduct) {
	c.store(gen, func() { c.products[sku] = p })
}

func (c *pricingCache) putHead(gen uint64, h *productpricingv1.PriceList) {
	c.store(gen, func() { c.heads[h.GetId()] = h })
}

func (c *pricingCache) putCandidates(gen uint64, k candidateKey, cs []candidate) {
	c.store(gen, func() { c.candidates[k] = cs })
}
