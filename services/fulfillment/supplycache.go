package fulfillment

import (
	"sync"
	"time"

	"github.com/millrace/millrace/internal/money"
)

// itemSupply is what the store holds of one SKU at one site, decoded: the
// inputs of availability before anything depends on the time of the
// question. Soft demand keeps its expiry, so "live at now" is decided by
// whoever asks (see live); past-due receipts are placed by curve.
//
// An itemSupply may be shared between transactions through the supply
// cache: nothing that receives one may change it, its slices or the
// decimals and maps they point to.
type itemSupply struct {
	site   siteInfo
	unit   string         // the balance's unit; "" when the item has no balance
	onHand *money.Decimal // nil when the item has no balance
	plans  []dated        // open planned receipts, by due date
	hard   []dated        // hard demand, by need date
	soft   []softDemand   // soft demand, by expiry then need date
}

// softDemand is soft-held quantity with the expiry of its holds.
type softDemand struct {
	expire time.Time
	dated
}

// live reports whether the holds are still holding stock at now: a hold
// is ignored from its expire time on, whether Run got to it or not.
func (d softDemand) live(now time.Time) bool { return now.Before(d.expire) }

// supplyWeight is what the supply of a SKU costs the cache, in entries.
func supplyWeight(items []itemSupply) int {
	w := 1
	for _, it := range items {
		w += 1 + len(it.site.Transit) + len(it.plans) + len(it.hard) + len(it.soft)
	}
	return w
}

// defaultSupplyCacheWeight bounds the supply cache: about as many decoded
// sites, transit entries, receipts and demand dates (a few hundred bytes
// each), a few megabytes at most.
const defaultSupplyCacheWeight = 1 << 14

// supplyCache keeps the decoded supply of SKUs for read-only transactions,
// keyed by the bbolt transaction id. A read transaction's id is the id of
// the last write transaction committed before it began, and every write
// commit increments it, so two read transactions with the same id see the
// same data, and a supply decoded in one is exactly what the other would
// decode. Nothing is ever invalidated: a commit makes the next readers ask
// for a new id. Write transactions never use the cache: the functions of a
// group commit share one transaction and see each other's changes before
// any id says so.
//
// Only the newest id seen is kept; a reader still on an older one decodes
// for itself. Entries are weighed (supplyWeight) and the total is held at
// or under maxWeight by evicting arbitrary entries.
type supplyCache struct {
	maxWeight int

	mu     sync.Mutex
	txid   int
	items  map[string]cachedSupply // by SKU, for txid
	weight int
}

type cachedSupply struct {
	items  []itemSupply
	weight int
}

func newSupplyCache(maxWeight int) *supplyCache {
	return &supplyCache{maxWeight: maxWeight, items: map[string]cachedSupply{}}
}

// get returns the supply of sku decoded by a read transaction with id txid.
func (c *supplyCache) get(txid int, sku string) ([]itemSupply, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if txid != c.txid {
		return nil, false
	}
	e, ok := c.items[sku]
	return e.items, ok
}

// put keeps the supply of sku that a read transaction with id txid
// decoded. A supply of an older id is dropped; one of a newer id starts
// the cache afresh.
func (c *supplyCache) put(txid int, sku string, items []itemSupply) {
	w := supplyWeight(items)
	if w > c.maxWeight {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case txid < c.txid:
		return
	case txid > c.txid:
		c.txid, c.items, c.weight = txid, map[string]cachedSupply{}, 0
	}
	if old, ok := c.items[sku]; ok {
		c.weight -= old.weight
		delete(c.items, sku)
	}
	for k, e := range c.items {
		if c.weight+w <= c.maxWeight {
			break
		}
		c.weight -= e.weight
		delete(c.items, k)
	}
	c.items[sku] = cachedSupply{items: items, weight: w}
	c.weight += w
}

// size returns the id the cache holds, its number of SKUs and its weight.
func (c *supplyCache) size() (txid, skus, weight int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.txid, len(c.items), c.weight
}
