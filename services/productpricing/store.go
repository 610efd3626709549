package productpricing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

// serviceName is the event source and the store's schema name.
const serviceName = "productpricing"

// store keeps products and price lists in the service's bbolt file. Every
// operation is one transaction: the record, its index entries and its event
// commit together or not at all, so a failed call writes nothing.
type store struct {
	db     *storage.DB
	now    func() time.Time
	notify func()
	cache  *pricingCache
}

func newStore(db *storage.DB, now func() time.Time, notify func()) *store {
	return &store{db: db, now: now, notify: notify, cache: newPricingCache()}
}

// write runs fn in a group-committed write transaction, keeps the pricing
// cache out of the way while it commits and clears it after, and calls notify after a commit that appended
// events. bbolt may run fn more than once when a batch is retried, so fn
// must set, never accumulate, what it reports.
func (s *store) write(fn func(tx *bbolt.Tx) (appended bool, err error)) error {
	s.cache.beginWrite()
	err := s.db.BatchEmit(s.notify, fn)
	s.cache.endWrite(err == nil)
	return err
}

// nowUTC is the store's clock, truncated to microseconds so that a time
// survives every encoding the contract's clients use unchanged.
func (s *store) nowUTC() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// nextEtag numbers a new version of a record from its bucket's sequence, so
// an etag is never reused, not even for a record deleted and created again.
func nextEtag(b *bbolt.Bucket) (string, error) {
	n, err := b.NextSequence()
	if err != nil {
		return "", err
	}
	return strconv.FormatUint(n, 36), nil
}

func getProto(b *bbolt.Bucket, key []byte, m proto.Message) (bool, error) {
	v := b.Get(key)
	if v == nil {
		return false, nil
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return false, fmt.Errorf("decode %s %q: %w", m.ProtoReflect().Descriptor().Name(), key, err)
	}
	return true, nil
}

func putProto(b *bbolt.Bucket, key []byte, m proto.Message) error {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return b.Put(key, v)
}

// ---- Products ----

func loadProduct(tx *bbolt.Tx, sku string) (*productpricingv1.Product, error) {
	p := &productpricingv1.Product{}
	ok, err := getProto(tx.Bucket(bucketProducts), []byte(sku), p)
	if err != nil || !ok {
		return nil, err
	}
	return p, nil
}

// getProduct returns one product.
func (s *store) getProduct(sku string) (*productpricingv1.Product, error) {
	var p *productpricingv1.Product
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		p, err = loadProduct(tx, sku)
		return err
	})
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, &NotFoundError{Kind: "product", ID: sku}
	}
	return p, nil
}

// createProduct stores a new product. A SKU that exists is a conflict, as
// is an external reference another product holds.
func (s *store) createProduct(ctx context.Context, in *productpricingv1.Product) (*productpricingv1.Product, error) {
	if _, err := validateProduct(newProduct(in, s.nowUTC()), "product"); err != nil {
		return nil, err // no state needed: refused before taking the write lock
	}
	var out *productpricingv1.Product
	err := s.write(func(tx *bbolt.Tx) (bool, error) {
		p := newProduct(in, s.nowUTC())
		existing, err := loadProduct(tx, p.GetSku())
		if err != nil {
			return false, err
		}
		if existing != nil {
			return false, skuTaken(p.GetSku())
		}
		if err := putProduct(ctx, tx, nil, p); err != nil {
			return false, err
		}
		out = p
		return true, nil
	})
	return out, err
}

func skuTaken(sku string) error {
	return &ConflictError{
		Message: fmt.Sprintf("a product with SKU %s already exists", sku),
		Meta:    map[string]string{"sku": sku},
	}
}

// updateProduct loads a product, lets change modify it and stores the
// result. A non-empty etag must match the stored one. A change that alters
// nothing leaves the record, its etag and the event stream untouched.
func (s *store) updateProduct(ctx context.Context, sku, etag string, change func(*productpricingv1.Product) error) (*productpricingv1.Product, error) {
	var out *productpricingv1.Product
	err := s.write(func(tx *bbolt.Tx) (bool, error) {
		old, err := loadProduct(tx, sku)
		if err != nil {
			return false, err
		}
		if old == nil {
			return false, &NotFoundError{Kind: "product", ID: sku}
		}
		if etag != "" && etag != old.GetEtag() {
			return false, &StaleEtagError{Kind: "product", ID: sku}
		}
		p := proto.Clone(old).(*productpricingv1.Product)
		if err := change(p); err != nil {
			return false, err
		}
		p.Sku, p.Etag, p.CreateTime = old.GetSku(), old.GetEtag(), old.GetCreateTime()
		if sameContent(old, p) {
			out = old
			return false, nil
		}
		p.UpdateTime = timestamppb.New(s.nowUTC())
		if _, err := validateProduct(p, "product"); err != nil {
			return false, err
		}
		if err := putProduct(ctx, tx, old, p); err != nil {
			return false, err
		}
		out = p
		return true, nil
	})
	return out, err
}

// upsertProductByRef creates or replaces the product holding ref.
func (s *store) upsertProductByRef(ctx context.Context, ref *typev1.ExternalRef, in *productpricingv1.Product) (*productpricingv1.Product, bool, error) {
	var (
		out     *productpricingv1.Product
		created bool
	)
	err := s.write(func(tx *bbolt.Tx) (bool, error) {
		out, created = nil, false
		var existing *productpricingv1.Product
		if sku, ok := ixProductsByRef.Lookup(tx, refKey(ref.GetSystem(), ref.GetId())); ok {
			var err error
			if existing, err = loadProduct(tx, string(sku)); err != nil {
				return false, err
			}
			if existing == nil {
				return false, fmt.Errorf("external ref %s/%s points at missing product %s", ref.GetSystem(), ref.GetId(), sku)
			}
			if in.GetEtag() != "" && in.GetEtag() != existing.GetEtag() {
				return false, &StaleEtagError{Kind: "product", ID: existing.GetSku()}
			}
		}
		p, err := mergeUpsert(existing, in, ref, s.nowUTC())
		if err != nil {
			return false, err
		}
		if existing != nil {
			p.Etag = existing.GetEtag()
			if sameContent(existing, p) {
				out = existing
				return false, nil
			}
		}
		if _, err := validateProduct(p, "product"); err != nil {
			return false, err
		}
		if existing == nil {
			// The reference is new but the SKU may not be: linking a
			// reference to an existing product is an explicit update, not
			// a side effect of an upsert keyed by another system's id.
			other, err := loadProduct(tx, p.GetSku())
			if err != nil {
				return false, err
			}
			if other != nil {
				return false, skuTaken(p.GetSku())
			}
		}
		if err := putProduct(ctx, tx, existing, p); err != nil {
			return false, err
		}
		out, created = p, existing == nil
		return true, nil
	})
	return out, created, err
}

// putProduct writes a new version of a product (old is nil for a new one)
// with its index entries and its ProductChanged event. It refuses
// references held by other products and the removal of units that price
// lists still use.
func putProduct(ctx context.Context, tx *bbolt.Tx, old, p *productpricingv1.Product) error {
	b := tx.Bucket(bucketProducts)
	sku := []byte(p.GetSku())
	for i, r := range p.GetExternalRefs() {
		if holder, ok := ixProductsByRef.Lookup(tx, refKey(r.GetSystem(), r.GetId())); ok && !bytes.Equal(holder, sku) {
			return &ConflictError{
				Reason: ReasonExternalRefTaken,
				Message: fmt.Sprintf("external reference %s/%s already belongs to product %s (field product.external_refs[%d])",
					r.GetSystem(), r.GetId(), holder, i),
				Meta: map[string]string{"holder": string(holder), "system": r.GetSystem(), "id": r.GetId(), "field": fmt.Sprintf("product.external_refs[%d]", i)},
			}
		}
	}
	if old != nil {
		if err := checkUnitsUnused(tx, p.GetSku(), removedUnits(old, p)); err != nil {
			return err
		}
		for _, r := range old.GetExternalRefs() {
			if err := ixProductsByRef.Delete(tx, refKey(r.GetSystem(), r.GetId()), sku); err != nil {
				return err
			}
		}
		if err := ixProductsByStatus.Delete(tx, statusKey(old.GetStatus().String()), sku); err != nil {
			return err
		}
	}
	for _, r := range p.GetExternalRefs() {
		if err := ixProductsByRef.Put(tx, refKey(r.GetSystem(), r.GetId()), sku); err != nil {
			return err
		}
	}
	if err := ixProductsByStatus.Put(tx, statusKey(p.GetStatus().String()), sku); err != nil {
		return err
	}
	etag, err := nextEtag(b)
	if err != nil {
		return err
	}
	p.Etag = etag
	if err := putProto(b, sku, p); err != nil {
		return err
	}
	_, err = events.Append(ctx, tx, events.Draft{
		Service: serviceName,
		Subject: events.Subject("products", p.GetSku()),
		Data:    &eventsv1.ProductChanged{Product: p, Created: old == nil},
	})
	return err
}

// checkUnitsUnused refuses to drop a unit that an entry of some price list
// prices in: the entry would lose its meaning and every basket with that
// product would fail to price.
func checkUnitsUnused(tx *bbolt.Tx, sku string, removed []string) error {
	if len(removed) == 0 {
		return nil
	}
	var inUse error
	err := ixPriceListsBySKU.Scan(tx, storage.KeyStrings(sku), nil, 0, func(_, id []byte) bool {
		e := &productpricingv1.PriceEntry{}
		ok, err := getProto(tx.Bucket(bucketPriceEntries), entryKey(string(id), sku), e)
		if err != nil {
			inUse = err
			return false
		}
		if ok && slices.Contains(removed, e.GetUnit()) {
			inUse = &PreconditionError{
				Reason: ReasonUnitInUse,
				Message: fmt.Sprintf("unit %s of product %s is used by price list %s; change that entry first",
					e.GetUnit(), sku, id),
				Meta: map[string]string{"unit": e.GetUnit(), "price_list_id": string(id), "field": "product.conversions"},
			}
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	return inUse
}

// productFilter selects products in ListProducts.
type productFilter struct {
	status    productpricingv1.ProductStatus
	refSystem string
	refID     string
}

func (f productFilter) fingerprint() string {
	return fmt.Sprintf("products|%d|%s|%s", f.status, f.refSystem, f.refID)
}

// listProducts returns a page of products in SKU order, through an index
// when filtered.
func (s *store) listProducts(f productFilter, size int, token string) ([]*productpricingv1.Product, string, error) {
	_, afterPK, err := decodePageToken(token, f.fingerprint())
	if err != nil {
		return nil, "", err
	}
	var (
		out  []*productpricingv1.Product
		next string
	)
	err = s.db.View(func(tx *bbolt.Tx) error {
		load := func(sku []byte) error {
			p, err := loadProduct(tx, string(sku))
			if err != nil {
				return err
			}
			if p == nil {
				return fmt.Errorf("index points at missing product %s", sku)
			}
			out = append(out, p)
			return nil
		}
		switch {
		case f.refSystem != "":
			// A reference names at most one product: no paging.
			sku, ok := ixProductsByRef.Lookup(tx, refKey(f.refSystem, f.refID))
			if !ok || afterPK != nil {
				return nil
			}
			if err := load(sku); err != nil {
				return err
			}
			if f.status != 0 && out[0].GetStatus() != f.status {
				out = nil
			}
			return nil
		case f.status != 0:
			var skus [][]byte
			err := ixProductsByStatus.Scan(tx, statusKey(f.status.String()), afterPK, size+1, func(_, pk []byte) bool {
				skus = append(skus, pk)
				return true
			})
			if err != nil {
				return err
			}
			for _, sku := range skus {
				if err := load(sku); err != nil {
					return err
				}
			}
		default:
			c := tx.Bucket(bucketProducts).Cursor()
			k, v := c.First()
			if afterPK != nil {
				k, v = c.Seek(afterPK)
				if k != nil && bytes.Equal(k, afterPK) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(out) <= size; k, v = c.Next() {
				p := &productpricingv1.Product{}
				if err := proto.Unmarshal(v, p); err != nil {
					return fmt.Errorf("decode product %s: %w", k, err)
				}
				out = append(out, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(out) > size {
		out = out[:size]
		next = encodePageToken(f.fingerprint(), nil, []byte(out[size-1].GetSku()))
	}
	return out, next, nil
}

// ---- Price lists ----

// loadPriceListHead returns a list without its entries, nil if none.
func loadPriceListHead(tx *bbolt.Tx, id string) (*productpricingv1.PriceList, error) {
	pl := &productpricingv1.PriceList{}
	ok, err := getProto(tx.Bucket(bucketPriceLists), []byte(id), pl)
	if err != nil || !ok {
		return nil, err
	}
	return pl, nil
}

// loadPriceList returns a list with its entries (in SKU order), nil if none.
func loadPriceList(tx *bbolt.Tx, id string) (*productpricingv1.PriceList, error) {
	pl, err := loadPriceListHead(tx, id)
	if err != nil || pl == nil {
		return nil, err
	}
	prefix := storage.KeyStrings(id)
	c := tx.Bucket(bucketPriceEntries).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		e := &productpricingv1.PriceEntry{}
		if err := proto.Unmarshal(v, e); err != nil {
			return nil, fmt.Errorf("decode entry %q: %w", k, err)
		}
		pl.Entries = append(pl.Entries, e)
	}
	return pl, nil
}

// getPriceList returns one list with its entries. visible decides whether
// the caller may see it; an invisible list is not found, so its existence
// does not leak.
func (s *store) getPriceList(id string, visible func(*productpricingv1.PriceList) bool) (*productpricingv1.PriceList, error) {
	var pl *productpricingv1.PriceList
	err := s.db.View(func(tx *bbolt.Tx) error {
		head, err := loadPriceListHead(tx, id)
		if err != nil || head == nil || !visible(head) {
			return err
		}
		pl, err = loadPriceList(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if pl == nil {
		return nil, &NotFoundError{Kind: "price list", ID: id}
	}
	return pl, nil
}

// txProducts looks products up inside a transaction, for validating entries.
func txProducts(tx *bbolt.Tx) productLookup {
	return func(sku string) (*productpricingv1.Product, error) { return loadProduct(tx, sku) }
}

// checkOverlap refuses a list that ties with another: same scope, same
// priority and overlapping validity. It reads only the lists of that scope
// and priority.
func checkOverlap(tx *bbolt.Tx, pl *productpricingv1.PriceList) error {
	var conflict error
	err := ixPriceListsByScope.Scan(tx, scopeKey(pl), nil, 0, func(_, id []byte) bool {
		if string(id) == pl.GetId() {
			return true
		}
		other, err := loadPriceListHead(tx, string(id))
		if err != nil {
			conflict = err
			return false
		}
		if other != nil && conflictsWith(pl, other) {
			conflict = overlapError(other)
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	return conflict
}

// createPriceList stores a new list with a new id.
func (s *store) createPriceList(ctx context.Context, in *productpricingv1.PriceList) (*productpricingv1.PriceList, error) {
	var out *productpricingv1.PriceList
	// A retry of a keyed request whose answer was lost in a crash gets the
	// list the first attempt stored.
	if created := reqctx.CreatedBefore(ctx); created != "" {
		if err := s.db.View(func(tx *bbolt.Tx) error {
			var err error
			out, err = loadPriceList(tx, created)
			return err
		}); err != nil || out != nil {
			return out, err
		}
	}
	id := ids.New("pl") // outside the batch: a retried batch keeps the id
	err := s.write(func(tx *bbolt.Tx) (bool, error) {
		pl := newPriceList(in, id, s.nowUTC())
		if err := validatePriceList(pl, txProducts(tx)); err != nil {
			return false, err
		}
		if err := checkOverlap(tx, pl); err != nil {
			return false, err
		}
		if err := putPriceList(ctx, tx, nil, pl); err != nil {
			return false, err
		}
		if err := idempotency.Attach(ctx, tx, id); err != nil {
			return false, err
		}
		out = pl
		return true, nil
	})
	return out, err
}

// updatePriceList loads a list with its entries, lets change modify it and
// stores the result. A non-empty etag must match.
func (s *store) updatePriceList(ctx context.Context, id, etag string, change func(*productpricingv1.PriceList) error) (*productpricingv1.PriceList, error) {
	var out *productpricingv1.PriceList
	err := s.write(func(tx *bbolt.Tx) (bool, error) {
		old, err := loadPriceList(tx, id)
		if err != nil {
			return false, err
		}
		if old == nil {
			return false, &NotFoundError{Kind: "price list", ID: id}
		}
		pl := proto.Clone(old).(*productpricingv1.PriceList)
		// change sees the stored list first, so it can refuse a list the
		// caller may not see before the etag says anything about it.
		if err := change(pl); err != nil {
			return false, err
		}
		if etag != "" && etag != old.GetEtag() {
			return false, &StaleEtagError{Kind: "price list", ID: id}
		}
		pl.Id, pl.Etag, pl.CreateTime = old.GetId(), old.GetEtag(), old.GetCreateTime()
		sortEntries(pl)
		if sameContent(old, pl) {
			out = old
			return false, nil
		}
		pl.UpdateTime = timestamppb.New(s.nowUTC())
		if err := validatePriceList(pl, txProducts(tx)); err != nil {
			return false, err
		}
		if err := checkOverlap(tx, pl); err != nil {
			return false, err
		}
		if err := putPriceList(ctx, tx, old, pl); err != nil {
			return false, err
		}
		out = pl
		return true, nil
	})
	return out, err
}

// deletePriceList removes a list, its entries and index entries, and emits
// PriceListChanged{deleted} carrying the list as it was. check may refuse
// (a list outside the caller's region is not found).
func (s *store) deletePriceList(ctx context.Context, id, etag string, check func(*productpricingv1.PriceList) error) error {
	return s.write(func(tx *bbolt.Tx) (bool, error) {
		old, err := loadPriceList(tx, id)
		if err != nil {
			return false, err
		}
		if old == nil {
			return false, &NotFoundError{Kind: "price list", ID: id}
		}
		if err := check(old); err != nil {
			return false, err
		}
		if etag != "" && etag != old.GetEtag() {
			return false, &StaleEtagError{Kind: "price list", ID: id}
		}
		if err := writePriceListIndexes(tx, old, nil); err != nil {
			return false, err
		}
		if err := writeEntries(tx, old, nil); err != nil {
			return false, err
		}
		if err := tx.Bucket(bucketPriceLists).Delete([]byte(id)); err != nil {
			return false, err
		}
		_, err = events.Append(ctx, tx, events.Draft{
			Service: serviceName,
			Subject: events.Subject("priceLists", id),
			Region:  old.GetRegion(),
			Data:    &eventsv1.PriceListChanged{PriceList: old, Deleted: true},
		})
		return err == nil, err
	})
}

// sortEntries puts entries in SKU order, the order they are stored and
// returned in, so comparing versions does not depend on input order.
func sortEntries(pl *productpricingv1.PriceList) {
	slices.SortStableFunc(pl.Entries, func(a, b *productpricingv1.PriceEntry) int {
		return bytes.Compare([]byte(a.GetSku()), []byte(b.GetSku()))
	})
}

// putPriceList writes a new version of a list (old nil for a new one): the
// header, the entries that changed, the index entries, and the event.
func putPriceList(ctx context.Context, tx *bbolt.Tx, old, pl *productpricingv1.PriceList) error {
	sortEntries(pl)
	b := tx.Bucket(bucketPriceLists)
	etag, err := nextEtag(b)
	if err != nil {
		return err
	}
	pl.Etag = etag
	head := proto.Clone(pl).(*productpricingv1.PriceList)
	head.Entries = nil
	if err := putProto(b, []byte(pl.GetId()), head); err != nil {
		return err
	}
	if err := writePriceListIndexes(tx, old, pl); err != nil {
		return err
	}
	if err := writeEntries(tx, old, pl); err != nil {
		return err
	}
	_, err = events.Append(ctx, tx, events.Draft{
		Service: serviceName,
		Subject: events.Subject("priceLists", pl.GetId()),
		Region:  pl.GetRegion(),
		Data:    &eventsv1.PriceListChanged{PriceList: pl},
	})
	return err
}

// writePriceListIndexes moves a list's header index entries from old to
// updated; either may be nil.
func writePriceListIndexes(tx *bbolt.Tx, old, updated *productpricingv1.PriceList) error {
	keys := func(pl *productpricingv1.PriceList) (scope, cur, reg []byte) {
		if pl == nil {
			return nil, nil, nil
		}
		return scopeKey(pl), currencyKey(pl.GetCurrencyCode(), pl.GetRegion()),
			regionKey(pl.GetRegion(), pl.GetCurrencyCode())
	}
	id := old.GetId()
	if updated != nil {
		id = updated.GetId()
	}
	pk := []byte(id)
	oldScope, oldCur, oldReg := keys(old)
	newScope, newCur, newReg := keys(updated)
	if err := storage.UpdateIndex(tx, ixPriceListsByScope, oldScope, newScope, pk); err != nil {
		return err
	}
	if err := storage.UpdateIndex(tx, ixPriceListsByCurrency, oldCur, newCur, pk); err != nil {
		return err
	}
	return storage.UpdateIndex(tx, ixPriceListsByRegion, oldReg, newReg, pk)
}

// writeEntries changes the stored entries of a list from old's to
// updated's, touching only entries that changed: renaming a list of 10,000
// entries rewrites none of them. Either side may be nil.
func writeEntries(tx *bbolt.Tx, old, updated *productpricingv1.PriceList) error {
	b := tx.Bucket(bucketPriceEntries)
	id := old.GetId()
	if updated != nil {
		id = updated.GetId()
	}
	pk := []byte(id)
	oldBySKU := make(map[string]*productpricingv1.PriceEntry, len(old.GetEntries()))
	for _, e := range old.GetEntries() {
		oldBySKU[e.GetSku()] = e
	}
	newBySKU := make(map[string]bool, len(updated.GetEntries()))
	sameCurrency := old != nil && updated != nil && old.GetCurrencyCode() == updated.GetCurrencyCode()
	for _, e := range updated.GetEntries() {
		newBySKU[e.GetSku()] = true
		prev, had := oldBySKU[e.GetSku()]
		if !had || !proto.Equal(prev, e) {
			if err := putProto(b, entryKey(id, e.GetSku()), e); err != nil {
				return err
			}
		}
		if had && sameCurrency {
			continue
		}
		if had {
			if err := ixPriceListsBySKU.Delete(tx, skuKey(e.GetSku(), old.GetCurrencyCode()), pk); err != nil {
				return err
			}
		}
		if err := ixPriceListsBySKU.Put(tx, skuKey(e.GetSku(), updated.GetCurrencyCode()), pk); err != nil {
			return err
		}
	}
	for _, e := range old.GetEntries() {
		if newBySKU[e.GetSku()] {
			continue
		}
		if err := b.Delete(entryKey(id, e.GetSku())); err != nil {
			return err
		}
		if err := ixPriceListsBySKU.Delete(tx, skuKey(e.GetSku(), old.GetCurrencyCode()), pk); err != nil {
			return err
		}
	}
	return nil
}

// priceListFilter selects lists in ListPriceLists. scope is the caller's
// region scope: a scoped key sees lists of its region and lists for every
// region (region empty).
type priceListFilter struct {
	currency string
	region   string
	scope    string
}

func (f priceListFilter) fingerprint() string {
	return fmt.Sprintf("priceLists|%s|%s|%s", f.currency, f.region, f.scope)
}

// listPriceLists returns a page of list headers (entries are left out; a
// list can hold 10,000 of them, GetPriceList returns them). Unfiltered, lists
// come in id (creation) order; filtered, they come from an index, grouped by
// the filter's key and in id order within a group:
//   - currency and region: id order;
//   - currency only: by region, then id;
//   - region only: by currency, then id.
func (s *store) listPriceLists(f priceListFilter, size int, token string) ([]*productpricingv1.PriceList, string, error) {
	afterKey, afterPK, err := decodePageToken(token, f.fingerprint())
	if err != nil {
		return nil, "", err
	}
	if f.scope != "" && f.region != "" && f.region != f.scope {
		return nil, "", nil // nothing of another region is visible
	}
	var (
		ix       storage.Index
		prefixes [][]byte
		byID     bool
	)
	// Regions the caller may see when it filters on none: all, or its own
	// and the lists for every region.
	regions := []string{""}
	if f.scope != "" {
		regions = append(regions, f.scope)
	}
	switch {
	case f.currency != "" && f.region != "":
		ix, prefixes = ixPriceListsByCurrency, [][]byte{currencyKey(f.currency, f.region)}
	case f.currency != "" && f.scope == "":
		ix, prefixes = ixPriceListsByCurrency, [][]byte{storage.KeyStrings(f.currency)}
	case f.currency != "":
		ix = ixPriceListsByCurrency
		for _, r := range regions {
			prefixes = append(prefixes, currencyKey(f.currency, r))
		}
	case f.region != "":
		ix, prefixes = ixPriceListsByRegion, [][]byte{storage.KeyStrings(f.region)}
	case f.scope != "":
		ix = ixPriceListsByRegion
		for _, r := range regions {
			prefixes = append(prefixes, storage.KeyStrings(r))
		}
	default:
		byID = true
	}

	type hit struct{ key, pk []byte }
	var (
		hits []hit
		out  []*productpricingv1.PriceList
		next string
	)
	err = s.db.View(func(tx *bbolt.Tx) error {
		if byID {
			c := tx.Bucket(bucketPriceLists).Cursor()
			k, _ := c.First()
			if afterPK != nil {
				k, _ = c.Seek(afterPK)
				if k != nil && bytes.Equal(k, afterPK) {
					k, _ = c.Next()
				}
			}
			for ; k != nil && len(hits) <= size; k, _ = c.Next() {
				hits = append(hits, hit{pk: bytes.Clone(k)})
			}
		} else {
			err := scanPrefixes(tx, ix, prefixes, afterKey, afterPK, size+1, func(key, pk []byte) {
				hits = append(hits, hit{key, pk})
			})
			if err != nil {
				return err
			}
		}
		for _, h := range hits {
			pl, err := loadPriceListHead(tx, string(h.pk))
			if err != nil {
				return err
			}
			if pl == nil {
				return fmt.Errorf("index points at missing price list %s", h.pk)
			}
			out = append(out, pl)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(out) > size {
		out = out[:size]
		last := hits[size-1]
		next = encodePageToken(f.fingerprint(), last.key, last.pk)
	}
	return out, next, nil
}

// scanPrefixes pages through several disjoint prefixes of a non-unique
// index as if they were one ordered range, resuming after (afterKey,
// afterPK), visiting at most limit entries.
func scanPrefixes(tx *bbolt.Tx, ix storage.Index, prefixes [][]byte, afterKey, afterPK []byte, limit int, fn func(key, pk []byte)) error {
	slices.SortFunc(prefixes, bytes.Compare)
	n := 0
	for _, prefix := range prefixes {
		if n >= limit {
			return nil
		}
		var resumeKey, resumePK []byte
		if afterPK != nil {
			switch {
			case bytes.HasPrefix(afterKey, prefix):
				resumeKey, resumePK = afterKey, afterPK
			case bytes.Compare(prefix, afterKey) < 0:
				continue // this prefix was paged through already
			}
		}
		err := ix.ScanAfter(tx, prefix, resumeKey, resumePK, limit-n, func(key, pk []byte) bool {
			fn(key, pk)
			n++
			return true
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ---- Pricing ----

// txCatalog is the catalog pricing reads: the pricing cache first, then
// the read transaction, whose results it adds to the cache. gen is the
// cache generation taken before tx was opened. With a nil tx it reads the
// cache alone and reports errCacheMiss for anything not there.
type txCatalog struct {
	tx    *bbolt.Tx
	cache *pricingCache
	gen   uint64
}

// errCacheMiss stops a cache-only simulation so it can run again over a
// read transaction.
var errCacheMiss = errors.New("pricing cache miss")

func (c *txCatalog) Product(sku string) (*catalogProduct, error) {
	if p, ok := c.cache.product(c.gen, sku); ok {
		return p, nil
	}
	if c.tx == nil {
		return nil, errCacheMiss
	}
	p, err := loadProduct(c.tx, sku)
	if err != nil {
		return nil, err
	}
	var cp *catalogProduct
	if p != nil {
		if cp, err = compileProduct(p); err != nil {
			return nil, err
		}
	}
	c.cache.putProduct(c.gen, sku, cp)
	return cp, nil
}

func (c *txCatalog) Candidates(sku, currency string) ([]candidate, error) {
	key := candidateKey{sku, currency}
	if cs, ok := c.cache.candidatesFor(c.gen, key); ok {
		return cs, nil
	}
	if c.tx == nil {
		return nil, errCacheMiss
	}
	var ids []string
	err := ixPriceListsBySKU.Scan(c.tx, skuKey(sku, currency), nil, 0, func(_, id []byte) bool {
		ids = append(ids, string(id))
		return true
	})
	if err != nil {
		return nil, err
	}
	out := make([]candidate, 0, len(ids))
	for _, id := range ids {
		head, err := c.head(id)
		if err != nil {
			return nil, err
		}
		e := &productpricingv1.PriceEntry{}
		ok, err := getProto(c.tx.Bucket(bucketPriceEntries), entryKey(id, sku), e)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("price list %s is indexed for %s but has no entry", id, sku)
		}
		cand, err := newCandidate(head, e)
		if err != nil {
			return nil, err
		}
		out = append(out, cand)
	}
	c.cache.putCandidates(c.gen, key, out)
	return out, nil
}

func (c *txCatalog) head(id string) (*productpricingv1.PriceList, error) {
	if h, ok := c.cache.head(c.gen, id); ok {
		return h, nil
	}
	h, err := loadPriceListHead(c.tx, id)
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("index points at missing price list %s", id)
	}
	c.cache.putHead(c.gen, h)
	return h, nil
}

// simulate prices a basket over one consistent snapshot of the catalog:
// from the cache alone when it holds everything the basket needs (one
// generation, so one committed state), else over a read transaction that
// fills the cache.
func (s *store) simulate(c CustomerFacts, currency string, at time.Time, lines []*productpricingv1.SimulationLine) (*productpricingv1.SimulatePricesResponse, error) {
	gen := s.cache.generation()
	resp, err := Simulate(&txCatalog{cache: s.cache, gen: gen}, c, currency, at, lines)
	if err == nil && s.cache.generation() == gen {
		return resp, nil
	}
	if err != nil && !errors.Is(err, errCacheMiss) {
		return nil, err
	}
	gen = s.cache.generation()
	err = s.db.View(func(tx *bbolt.Tx) error {
		var err error
		resp, err = Simulate(&txCatalog{tx: tx, cache: s.cache, gen: gen}, c, currency, at, lines)
		return err
	})
	return resp, err
}

// ---- Page tokens ----

// A page token records where the previous page ended (the index key and
// primary key of its last record) and a hash of the query, so a token is
// refused for a different query instead of paging through the wrong one.
// Tokens are opaque to callers; the encoding may change between releases.
const pageTokenVersion = 1

func encodePageToken(query string, key, pk []byte) string {
	h := fnv.New64a()
	h.Write([]byte(query))
	buf := []byte{pageTokenVersion}
	buf = h.Sum(buf)
	buf = binary.AppendUvarint(buf, uint64(len(key)))
	buf = append(buf, key...)
	buf = append(buf, pk...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

func decodePageToken(token, query string) (key, pk []byte, err error) {
	if token == "" {
		return nil, nil, nil
	}
	bad := invalid("page_token", "is not a token from a previous page of this query")
	buf, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(buf) < 10 || buf[0] != pageTokenVersion {
		return nil, nil, bad
	}
	h := fnv.New64a()
	h.Write([]byte(query))
	if !bytes.Equal(buf[1:9], h.Sum(nil)) {
		return nil, nil, bad
	}
	rest := buf[9:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || uint64(len(rest)-w) < n {
		return nil, nil, bad
	}
	key, pk = rest[w:w+int(n)], rest[w+int(n):]
	if len(pk) == 0 {
		return nil, nil, bad
	}
	if len(key) == 0 {
		key = nil
	}
	return key, pk, nil
}
