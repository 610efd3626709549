package fulfillment

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/money"
	"github.com/millrace/millrace/internal/storage"
)

// store keeps the fulfillment domain in one bbolt file (see schema.go).
// Each domain operation is one transaction: records, their index entries
// and their events are written together or not at all.
type store struct {
	db     *storage.DB
	notify func()
	// supplies is the read transactions' supply cache (supplycache.go).
	supplies *supplyCache
	// shared is the state of the write transaction running now, or of the
	// last one. Only functions inside a write transaction touch it, and
	// bbolt runs those one at a time.
	shared *txShared
}

// txShared is what the functions of one write transaction share. A group
// commit runs many requests' functions in one bbolt transaction, one after
// another, and each would otherwise decode the same sites, balances and
// supply again. What it holds is exactly what decoding the transaction's
// current state would give: the transaction's own writes (putSite,
// putBalance, putPlan, addHardDemand, addSoftDemand) keep it so, and a
// function that fails spoils it, since the whole transaction is then
// rolled back and its functions run again in a new one.
type txShared struct {
	tx       *bbolt.Tx
	spoiled  bool
	sites    map[string]*siteInfo    // nil values: no such site
	supplies map[string][]itemSupply // by SKU; never changed in place
	balances map[string]*balance     // by itemKey; nil values: no balance
	// inventory is the InventoryChanged each balance got last in this
	// transaction, by event subject (emitInventoryChanged).
	inventory map[string]inventoryEvent
}

// inventoryEvent is an InventoryChanged appended in the running
// transaction.
type inventoryEvent struct {
	p      events.Pending
	reason fulfillmentv1.LedgerReason
}

// sharedFor returns the shared state of tx, starting it on the
// transaction's first function.
func (s *store) sharedFor(tx *bbolt.Tx) *txShared {
	if w := s.shared; w != nil && w.tx == tx && !w.spoiled {
		return w
	}
	s.shared = &txShared{
		tx:        tx,
		sites:     map[string]*siteInfo{},
		supplies:  map[string][]itemSupply{},
		balances:  map[string]*balance{},
		inventory: map[string]inventoryEvent{},
	}
	return s.shared
}

func newStore(db *storage.DB, notify func()) *store {
	return &store{db: db, notify: notify, supplies: newSupplyCache(defaultSupplyCacheWeight)}
}

// storeTx is one transaction; it implements txn.
type storeTx struct {
	ctx     context.Context
	tx      *bbolt.Tx
	emitted int
	// supplies is the supply cache, in a read-only transaction only.
	supplies *supplyCache
	// shared is the write transaction's shared state, in a write
	// transaction only.
	shared *txShared
	// sites memoizes decoded sites for this transaction; putSite forgets
	// the one it writes. nil values are sites that do not exist.
	sites map[string]*siteInfo
}

func (s *store) view(ctx context.Context, fn func(txn) error) error {
	return s.db.View(func(tx *bbolt.Tx) error { return fn(&storeTx{ctx: ctx, tx: tx, supplies: s.supplies}) })
}

// update uses group commit: concurrent writers share one fsync.
func (s *store) update(ctx context.Context, fn func(txn) error) error {
	return s.db.BatchEmit(s.notify, func(tx *bbolt.Tx) (emitted bool, err error) {
		w := s.sharedFor(tx)
		t := &storeTx{ctx: ctx, tx: tx, shared: w, sites: w.sites}
		done := false
		defer func() {
			// An error or a panic rolls the transaction back.
			if !done || err != nil {
				w.spoiled = true
			}
		}()
		err = fn(t)
		done = true
		return t.emitted > 0, err
	})
}

// ---------------------------------------------------------------------------
// Encoding.

func getJSON(b *bbolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("decode record %q: %w", key, err)
	}
	return true, nil
}

func putJSON(b *bbolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	return b.Put(key, raw)
}

// getRecord loads a JSON record into a new T; nil when absent.
func getRecord[T any](tx *bbolt.Tx, bucket, key []byte) (*T, error) {
	var v T
	ok, err := getJSON(tx.Bucket(bucket), key, &v)
	if err != nil || !ok {
		return nil, err
	}
	return &v, nil
}

// scanBucket calls fn with the records of a bucket whose key starts with
// prefix, in key order, strictly after the key after (nil: from the start).
func scanBucket(b *bbolt.Bucket, prefix, after []byte, fn func(k, v []byte) (bool, error)) error {
	c := b.Cursor()
	var k, v []byte
	if after != nil && bytes.Compare(after, prefix) >= 0 {
		k, v = c.Seek(after)
		if k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	} else {
		k, v = c.Seek(prefix)
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// scanIndex calls load with the primary keys of a non-unique index under
// prefix after (afterKey, afterPK), until load returns false.
func scanIndex(tx *bbolt.Tx, ix storage.Index, prefix, afterKey, afterPK []byte, load func(pk []byte) (bool, error)) error {
	var ferr error
	err := ix.ScanAfter(tx, prefix, afterKey, afterPK, 0, func(_, pk []byte) bool {
		more, err := load(pk)
		if err != nil {
			ferr = err
			return false
		}
		return more
	})
	if err != nil {
		return err
	}
	return ferr
}

func optional(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// ---------------------------------------------------------------------------
// Sites.

func (t *storeTx) site(id string) (*fulfillmentv1.Site, error) {
	raw := t.tx.Bucket(bucketSites).Get([]byte(id))
	if raw == nil || id == "" {
		return nil, nil
	}
	s := &fulfillmentv1.Site{}
	if err := proto.Unmarshal(raw, s); err != nil {
		return nil, fmt.Errorf("decode site %s: %w", id, err)
	}
	return s, nil
}

func (t *storeTx) putSite(s *fulfillmentv1.Site) error {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode site: %w", err)
	}
	if err := t.tx.Bucket(bucketSites).Put([]byte(s.GetId()), raw); err != nil {
		return err
	}
	delete(t.sites, s.GetId())
	if t.shared != nil {
		// Supplies carry their sites' transit days.
		clear(t.shared.supplies)
	}
	return ixSitesByRegion.Put(t.tx, storage.KeyStrings(s.GetRegion()), []byte(s.GetId()))
}

func (t *storeTx) scanSites(region, afterID string, fn func(*fulfillmentv1.Site) bool) error {
	load := func(id []byte) (bool, error) {
		s, err := t.site(string(id))
		if err != nil || s == nil {
			return err == nil, err
		}
		return fn(s), nil
	}
	if region == "" {
		return scanBucket(t.tx.Bucket(bucketSites), nil, optional(afterID), func(k, _ []byte) (bool, error) { return load(k) })
	}
	prefix := storage.KeyStrings(region)
	return scanIndex(t.tx, ixSitesByRegion, prefix, prefix, optional(afterID), load)
}

// ---------------------------------------------------------------------------
// Balances and the ledger.

// balance returns the balance of an item, nil when it has none. The
// caller owns the copy it gets.
func (t *storeTx) balance(siteID, sku string) (*balance, error) {
	if t.shared == nil {
		return getRecord[balance](t.tx, bucketBalances, itemKey(siteID, sku))
	}
	key := string(itemKey(siteID, sku))
	b, ok := t.shared.balances[key]
	if !ok {
		var err error
		if b, err = getRecord[balance](t.tx, bucketBalances, []byte(key)); err != nil {
			return nil, err
		}
		t.shared.balances[key] = b
	}
	if b == nil {
		return nil, nil
	}
	c := *b
	return &c, nil
}

func (t *storeTx) putBalance(b *balance) error {
	key := itemKey(b.SiteID, b.SKU)
	if err := putJSON(t.tx.Bucket(bucketBalances), key, b); err != nil {
		return err
	}
	if err := ixBalancesBySKU.Put(t.tx, storage.KeyStrings(b.SKU), []byte(b.SiteID)); err != nil {
		return err
	}
	if t.shared != nil {
		// As a decode of what was just written would give it back.
		c := *b
		c.UpdateTime = c.UpdateTime.Round(0).UTC()
		t.shared.balances[string(key)] = &c
		t.shared.changeSupply(b.SKU, b.SiteID, func(it *itemSupply) error {
			it.unit, it.onHand = b.Unit, num(b.OnHand)
			return nil
		})
	}
	return nil
}

func (t *storeTx) scanBalances(siteID, sku, afterSite, afterSKU string, fn func(*balance) bool) error {
	var after []byte
	if afterSite != "" || afterSKU != "" {
		after = itemKey(afterSite, afterSKU)
	}
	decode := func(k, v []byte) (bool, error) {
		var b balance
		if err := json.Unmarshal(v, &b); err != nil {
			return false, fmt.Errorf("decode balance %q: %w", k, err)
		}
		return fn(&b), nil
	}
	switch {
	case siteID != "" && sku != "":
		b, err := t.balance(siteID, sku)
		if err != nil || b == nil || after != nil {
			return err
		}
		fn(b)
		return nil
	case sku != "":
		prefix := storage.KeyStrings(sku)
		return scanIndex(t.tx, ixBalancesBySKU, prefix, prefix, optional(afterSite), func(site []byte) (bool, error) {
			b, err := t.balance(string(site), sku)
			if err != nil || b == nil {
				return err == nil, err
			}
			return fn(b), nil
		})
	case siteID != "":
		return scanBucket(t.tx.Bucket(bucketBalances), storage.KeyStrings(siteID), after, decode)
	}
	return scanBucket(t.tx.Bucket(bucketBalances), nil, after, decode)
}

// siteInfo returns a site as availability needs it, nil when there is no
// such site, decoding each site once per transaction.
func (t *storeTx) siteInfo(id string) (*siteInfo, error) {
	if info, ok := t.sites[id]; ok {
		return info, nil
	}
	s, err := t.site(id)
	if err != nil {
		return nil, err
	}
	var info *siteInfo
	if s != nil {
		i := newSiteInfo(s)
		info = &i
	}
	if t.sites == nil {
		t.sites = map[string]*siteInfo{}
	}
	t.sites[id] = info
	return info, nil
}

// sitesOfSKU returns the ids of sites with a balance or an open plan for
// sku, in id order.
func (t *storeTx) sitesOfSKU(sku string) ([]string, error) {
	var sites []string
	prefix := storage.KeyStrings(sku)
	err := ixBalancesBySKU.Scan(t.tx, prefix, nil, 0, func(_, pk []byte) bool {
		sites = append(sites, string(pk))
		return true
	})
	if err != nil {
		return nil, err
	}
	var bad error
	err = ixPlansByItem.Scan(t.tx, prefix, nil, 0, func(key, _ []byte) bool {
		parts, err := storage.SplitKey(key)
		if err != nil || len(parts) != 3 {
			bad = fmt.Errorf("corrupt supply plan index key %q", key)
			return false
		}
		sites = append(sites, string(parts[1]))
		return true
	})
	if err != nil {
		return nil, err
	}
	if bad != nil {
		return nil, bad
	}
	slices.Sort(sites)
	return slices.Compact(sites), nil
}

func (t *storeTx) appendLedger(e *ledgerEntry) error {
	if err := putJSON(t.tx.Bucket(bucketLedger), []byte(e.ID), e); err != nil {
		return err
	}
	return ixLedgerByItem.Put(t.tx, itemKey(e.SiteID, e.SKU), []byte(e.ID))
}

// ---------------------------------------------------------------------------
// Planned receipts.

func (t *storeTx) attach(id string) error { return idempotency.Attach(t.ctx, t.tx, id) }

func (t *storeTx) plan(id string) (*supplyPlan, error) {
	return getRecord[supplyPlan](t.tx, bucketPlans, []byte(id))
}

// planKeys are an open plan's entries in the four plan indexes.
func planKeys(p *supplyPlan) [4][]byte {
	due := timeKey(p.DueTime)
	return [4][]byte{
		storage.Key([]byte(p.SKU), []byte(p.SiteID), due),
		storage.Key([]byte(p.SKU), due),
		storage.Key([]byte(p.SiteID), due),
		storage.Key(due),
	}
}

var planIndexes = [4]storage.Index{ixPlansByItem, ixPlansBySKU, ixPlansBySite, ixPlansByDue}

func (t *storeTx) putPlan(old, p *supplyPlan) error {
	if err := putJSON(t.tx.Bucket(bucketPlans), []byte(p.ID), p); err != nil {
		return err
	}
	if t.shared != nil {
		delete(t.shared.supplies, p.SKU)
		if old != nil {
			delete(t.shared.supplies, old.SKU)
		}
	}
	wasOpen := old != nil && num(old.Open).Sign() > 0
	isOpen := num(p.Open).Sign() > 0
	if wasOpen == isOpen {
		return nil
	}
	for i, key := range planKeys(p) {
		var err error
		if isOpen {
			err = planIndexes[i].Put(t.tx, key, []byte(p.ID))
		} else {
			err = planIndexes[i].Delete(t.tx, key, []byte(p.ID))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *storeTx) loadPlans(fn func(*supplyPlan) bool) func(pk []byte) (bool, error) {
	return func(pk []byte) (bool, error) {
		p, err := t.plan(string(pk))
		if err != nil || p == nil {
			return err == nil, err
		}
		return fn(p), nil
	}
}

func (t *storeTx) openPlans(siteID, sku string, fn func(*supplyPlan) bool) error {
	prefix := storage.KeyStrings(sku, siteID)
	return scanIndex(t.tx, ixPlansByItem, prefix, prefix, nil, t.loadPlans(fn))
}

func (t *storeTx) scanOpenPlans(sku, siteID string, afterDue time.Time, afterID string, fn func(*supplyPlan) bool) error {
	var (
		ix     storage.Index
		prefix []byte
	)
	switch {
	case sku != "" && siteID != "":
		ix, prefix = ixPlansByItem, storage.KeyStrings(sku, siteID)
	case sku != "":
		ix, prefix = ixPlansBySKU, storage.KeyStrings(sku)
	case siteID != "":
		ix, prefix = ixPlansBySite, storage.KeyStrings(siteID)
	default:
		ix, prefix = ixPlansByDue, nil
	}
	afterKey := prefix
	var afterPK []byte
	if afterID != "" {
		afterKey = append(bytes.Clone(prefix), storage.Key(timeKey(afterDue))...)
		afterPK = []byte(afterID)
	}
	return scanIndex(t.tx, ix, prefix, afterKey, afterPK, t.loadPlans(fn))
}

// ---------------------------------------------------------------------------
// Supply and demand.

// supply serves a read-only transaction from the supply cache and a write
// transaction from its shared state.
func (t *storeTx) supply(sku string) ([]itemSupply, error) {
	if w := t.shared; w != nil {
		if items, ok := w.supplies[sku]; ok {
			return items, nil
		}
		items, err := t.readSupply(sku)
		if err != nil {
			return nil, err
		}
		w.supplies[sku] = items
		return items, nil
	}
	if t.supplies == nil {
		return t.readSupply(sku)
	}
	id := t.tx.ID()
	if items, ok := t.supplies.get(id, sku); ok {
		return items, nil
	}
	items, err := t.readSupply(sku)
	if err != nil {
		return nil, err
	}
	t.supplies.put(id, sku, items)
	return items, nil
}

// supplyBalance is the part of a balance availability reads; decoding
// only it skips the update time.
type supplyBalance struct {
	Unit   string `json:"unit"`
	OnHand string `json:"on_hand"`
}

// supplyPlanDue is the part of a plan availability reads.
type supplyPlanDue struct {
	Open    string    `json:"open"`
	DueTime time.Time `json:"due_time"`
}

// readSupply decodes the supply of sku at every site that has a balance or
// an open plan for it.
func (t *storeTx) readSupply(sku string) ([]itemSupply, error) {
	siteIDs, err := t.sitesOfSKU(sku)
	if err != nil {
		return nil, err
	}
	balances, plans := t.tx.Bucket(bucketBalances), t.tx.Bucket(bucketPlans)
	out := make([]itemSupply, 0, len(siteIDs))
	for _, id := range siteIDs {
		site, err := t.siteInfo(id)
		if err != nil {
			return nil, err
		}
		if site == nil {
			continue
		}
		it := itemSupply{site: *site}
		key := itemKey(id, sku)
		var b supplyBalance
		found, err := getJSON(balances, key, &b)
		if err != nil {
			return nil, err
		}
		if found {
			it.unit, it.onHand = b.Unit, num(b.OnHand)
		}
		prefix := storage.KeyStrings(sku, id)
		if err := scanIndex(t.tx, ixPlansByItem, prefix, prefix, nil, func(pk []byte) (bool, error) {
			var p supplyPlanDue
			found, err := getJSON(plans, pk, &p)
			if found {
				it.plans = append(it.plans, dated{at: p.DueTime, qty: num(p.Open)})
			}
			return err == nil, err
		}); err != nil {
			return nil, err
		}
		if it.hard, err = t.hardDemand(key); err != nil {
			return nil, err
		}
		if it.soft, err = t.softDemand(key); err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// hardDemand decodes the hard demand of the item under key, by need date.
func (t *storeTx) hardDemand(key []byte) ([]dated, error) {
	var out []dated
	err := scanBucket(t.tx.Bucket(bucketHardDemand), key, nil, func(k, v []byte) (bool, error) {
		parts, err := storage.SplitKey(k)
		if err != nil || len(parts) != 3 {
			return false, fmt.Errorf("corrupt hard demand key %q", k)
		}
		out = append(out, dated{at: timeFromKey(parts[2]), qty: num(string(v))})
		return true, nil
	})
	return out, err
}

// softDemand decodes the soft demand of the item under key, by expiry
// then need date.
func (t *storeTx) softDemand(key []byte) ([]softDemand, error) {
	var out []softDemand
	err := scanBucket(t.tx.Bucket(bucketSoftDemand), key, nil, func(k, v []byte) (bool, error) {
		parts, err := storage.SplitKey(k)
		if err != nil || len(parts) != 4 {
			return false, fmt.Errorf("corrupt soft demand key %q", k)
		}
		out = append(out, softDemand{expire: timeFromKey(parts[2]), dated: dated{at: timeFromKey(parts[3]), qty: num(string(v))}})
		return true, nil
	})
	return out, err
}

// changeSupply applies change to a copy of the shared supply of sku at
// siteID. A supply not decoded yet is left to be; one without the site
// (the write gave the SKU a new site) is dropped, to be decoded afresh.
func (w *txShared) changeSupply(sku, siteID string, change func(*itemSupply) error) error {
	items, ok := w.supplies[sku]
	if !ok {
		return nil
	}
	i := slices.IndexFunc(items, func(it itemSupply) bool { return it.site.ID == siteID })
	if i < 0 {
		delete(w.supplies, sku)
		return nil
	}
	items = slices.Clone(items)
	if err := change(&items[i]); err != nil {
		delete(w.supplies, sku)
		return err
	}
	w.supplies[sku] = items
	return nil
}

func (t *storeTx) softHeld(siteID, sku string, now time.Time) (*money.Decimal, error) {
	held := money.Zero()
	if t.shared != nil {
		items := t.shared.supplies[sku]
		if i := slices.IndexFunc(items, func(it itemSupply) bool { return it.site.ID == siteID }); i >= 0 {
			for _, d := range items[i].soft {
				if d.live(now) {
					held = money.Add(held, d.qty)
				}
			}
			return held, nil
		}
	}
	prefix := itemKey(siteID, sku)
	// Holds expiring at or before now are dead even if Run has not got to
	// them: start just after now.
	live := append(bytes.Clone(prefix), storage.Key(timeKey(now.Add(time.Nanosecond)))...)
	c := t.tx.Bucket(bucketSoftDemand).Cursor()
	for k, v := c.Seek(live); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if parts, err := storage.SplitKey(k); err != nil || len(parts) != 4 {
			return nil, fmt.Errorf("corrupt soft demand key %q", k)
		}
		held = money.Add(held, num(string(v)))
	}
	return held, nil
}

// addDemand changes the quantity stored under key by delta; an entry that
// reaches zero is removed.
func addDemand(b *bbolt.Bucket, key []byte, delta *money.Decimal) error {
	cur := money.Zero()
	if v := b.Get(key); v != nil {
		cur = num(string(v))
	}
	next := money.Add(cur, delta)
	if next.Sign() <= 0 {
		return b.Delete(key)
	}
	return b.Put(key, []byte(money.Format(next)))
}

func (t *storeTx) addHardDemand(siteID, sku string, need time.Time, delta *money.Decimal) error {
	if err := addDemand(t.tx.Bucket(bucketHardDemand), storage.Key([]byte(siteID), []byte(sku), timeKey(need)), delta); err != nil {
		return err
	}
	if t.shared == nil {
		return nil
	}
	return t.shared.changeSupply(sku, siteID, func(it *itemSupply) (err error) {
		it.hard, err = t.hardDemand(itemKey(siteID, sku))
		return err
	})
}

func (t *storeTx) addSoftDemand(siteID, sku string, expire, need time.Time, delta *money.Decimal) error {
	if err := addDemand(t.tx.Bucket(bucketSoftDemand), storage.Key([]byte(siteID), []byte(sku), timeKey(expire), timeKey(need)), delta); err != nil {
		return err
	}
	if t.shared == nil {
		return nil
	}
	return t.shared.changeSupply(sku, siteID, func(it *itemSupply) (err error) {
		it.soft, err = t.softDemand(itemKey(siteID, sku))
		return err
	})
}

// ---------------------------------------------------------------------------
// Reservations.

func (t *storeTx) reservation(id string) (*reservation, error) {
	return getRecord[reservation](t.tx, bucketReservations, []byte(id))
}

func (t *storeTx) reservationByRef(ref string) (*reservation, error) {
	id, ok := ixReservationsByRef.Lookup(t.tx, storage.KeyStrings(ref))
	if !ok {
		return nil, nil
	}
	return t.reservation(string(id))
}

// queued reports whether r belongs in the soft-expiry queue.
func queued(r *reservation) bool {
	return r != nil && r.Kind == fulfillmentv1.ReservationKind_RESERVATION_KIND_SOFT &&
		r.Status == fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE
}

// putReservation writes r. old is its previous version, nil for a new
// reservation, or the reservation of the same reference that r replaces
// (a quote holding again after its hold ended): r then takes over the
// reference.
func (t *storeTx) putReservation(old, r *reservation) error {
	if err := putJSON(t.tx.Bucket(bucketReservations), []byte(r.ID), r); err != nil {
		return err
	}
	refKey := storage.KeyStrings(r.ReferenceID)
	if old == nil || old.ID != r.ID {
		if old != nil {
			if err := ixReservationsByRef.Delete(t.tx, storage.KeyStrings(old.ReferenceID), []byte(old.ID)); err != nil {
				return err
			}
			old = nil
		}
		if err := ixReservationsByRef.Put(t.tx, refKey, []byte(r.ID)); err != nil {
			return err
		}
	}
	was, is := queued(old), queued(r)
	switch {
	case is && !was:
		return ixSoftExpiry.Put(t.tx, storage.Key(timeKey(r.ExpireTime)), []byte(r.ID))
	case was && !is:
		return ixSoftExpiry.Delete(t.tx, storage.Key(timeKey(old.ExpireTime)), []byte(r.ID))
	}
	return nil
}

func (t *storeTx) dueSoftHolds(now time.Time, limit int) ([]string, error) {
	var due []string
	var bad error
	err := ixSoftExpiry.Scan(t.tx, nil, nil, limit, func(key, pk []byte) bool {
		parts, err := storage.SplitKey(key)
		if err != nil || len(parts) != 1 {
			bad = fmt.Errorf("corrupt soft expiry key %q", key)
			return false
		}
		if timeFromKey(parts[0]).After(now) {
			return false
		}
		due = append(due, string(pk))
		return true
	})
	if err != nil {
		return nil, err
	}
	return due, bad
}

// ---------------------------------------------------------------------------
// Shipments, invoices, payments, order lines, returns.

func (t *storeTx) shipment(id string) (*shipment, error) {
	return getRecord[shipment](t.tx, bucketShipments, []byte(id))
}

func (t *storeTx) putShipment(s *shipment) error {
	if err := putJSON(t.tx.Bucket(bucketShipments), []byte(s.ID), s); err != nil {
		return err
	}
	return ixShipmentsByOrder.Put(t.tx, storage.KeyStrings(s.OrderID), []byte(s.ID))
}

func (t *storeTx) scanShipments(orderID, afterID string, fn func(*shipment) bool) error {
	load := func(id []byte) (bool, error) {
		s, err := t.shipment(string(id))
		if err != nil || s == nil {
			return err == nil, err
		}
		return fn(s), nil
	}
	if orderID == "" {
		return scanBucket(t.tx.Bucket(bucketShipments), nil, optional(afterID), func(k, _ []byte) (bool, error) { return load(k) })
	}
	prefix := storage.KeyStrings(orderID)
	return scanIndex(t.tx, ixShipmentsByOrder, prefix, prefix, optional(afterID), load)
}

func (t *storeTx) invoice(id string) (*invoice, error) {
	return getRecord[invoice](t.tx, bucketInvoices, []byte(id))
}

func (t *storeTx) putInvoice(inv *invoice) error {
	if err := putJSON(t.tx.Bucket(bucketInvoices), []byte(inv.ID), inv); err != nil {
		return err
	}
	if err := ixInvoicesByOrder.Put(t.tx, storage.KeyStrings(inv.OrderID), []byte(inv.ID)); err != nil {
		return err
	}
	if inv.CustomerID == "" {
		return nil
	}
	return ixInvoicesByCustomer.Put(t.tx, storage.KeyStrings(inv.CustomerID), []byte(inv.ID))
}

func (t *storeTx) scanInvoices(orderID, customerID, afterID string, fn func(*invoice) bool) error {
	load := func(id []byte) (bool, error) {
		inv, err := t.invoice(string(id))
		if err != nil || inv == nil {
			return err == nil, err
		}
		return fn(inv), nil
	}
	switch {
	case orderID != "":
		prefix := storage.KeyStrings(orderID)
		return scanIndex(t.tx, ixInvoicesByOrder, prefix, prefix, optional(afterID), load)
	case customerID != "":
		prefix := storage.KeyStrings(customerID)
		return scanIndex(t.tx, ixInvoicesByCustomer, prefix, prefix, optional(afterID), load)
	}
	return scanBucket(t.tx.Bucket(bucketInvoices), nil, optional(afterID), func(k, _ []byte) (bool, error) { return load(k) })
}

func (t *storeTx) paymentByRef(invoiceID, reference string) (*payment, error) {
	id, ok := ixPaymentsByRef.Lookup(t.tx, storage.KeyStrings(invoiceID, reference))
	if !ok {
		return nil, nil
	}
	return getRecord[payment](t.tx, bucketPayments, storage.KeyStrings(invoiceID, string(id)))
}

func (t *storeTx) putPayment(p *payment) error {
	if err := putJSON(t.tx.Bucket(bucketPayments), storage.KeyStrings(p.InvoiceID, p.ID), p); err != nil {
		return err
	}
	if p.Reference == "" {
		return nil
	}
	return ixPaymentsByRef.Put(t.tx, storage.KeyStrings(p.InvoiceID, p.Reference), []byte(p.ID))
}

func (t *storeTx) orderLine(orderID string, index int32) (*orderLine, error) {
	return getRecord[orderLine](t.tx, bucketOrderLines, orderLineKey(orderID, index))
}

func (t *storeTx) putOrderLine(l *orderLine) error {
	return putJSON(t.tx.Bucket(bucketOrderLines), orderLineKey(l.OrderID, l.Index), l)
}

func (t *storeTx) returnRec(id string) (*returnRec, error) {
	return getRecord[returnRec](t.tx, bucketReturns, []byte(id))
}

func (t *storeTx) putReturn(r *returnRec) error {
	if err := putJSON(t.tx.Bucket(bucketReturns), []byte(r.ID), r); err != nil {
		return err
	}
	return ixReturnsByOrder.Put(t.tx, storage.KeyStrings(r.OrderID), []byte(r.ID))
}

func (t *storeTx) scanReturns(orderID, afterID string, fn func(*returnRec) bool) error {
	load := func(id []byte) (bool, error) {
		r, err := t.returnRec(string(id))
		if err != nil || r == nil {
			return err == nil, err
		}
		return fn(r), nil
	}
	if orderID == "" {
		return scanBucket(t.tx.Bucket(bucketReturns), nil, optional(afterID), func(k, _ []byte) (bool, error) { return load(k) })
	}
	prefix := storage.KeyStrings(orderID)
	return scanIndex(t.tx, ixReturnsByOrder, prefix, prefix, optional(afterID), load)
}

// ---------------------------------------------------------------------------
// Events.

func (t *storeTx) emitInventoryChanged(region string, ev *eventsv1.InventoryChanged) error {
	b := ev.GetBalance()
	subject := inventorySubject(b.GetSiteId(), b.GetSku())
	d := events.Draft{Service: serviceName, Subject: subject, Region: region, Data: ev}
	w := t.shared
	if w == nil {
		return t.emit(subject, region, ev)
	}
	var (
		p   events.Pending
		err error
	)
	if last, ok := w.inventory[subject]; ok && last.reason == ev.GetReason() && last.p.Latest(t.tx) {
		p, err = events.Supersede(t.ctx, t.tx, last.p, d)
	} else {
		p, err = events.AppendPending(t.ctx, t.tx, d)
	}
	if err != nil {
		return err
	}
	w.inventory[subject] = inventoryEvent{p: p, reason: ev.GetReason()}
	t.emitted++
	return nil
}

func (t *storeTx) emit(subject, region string, event proto.Message) error {
	if _, err := events.Append(t.ctx, t.tx, events.Draft{Service: serviceName, Subject: subject, Region: region, Data: event}); err != nil {
		return err
	}
	t.emitted++
	return nil
}
