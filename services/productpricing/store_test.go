package productpricing

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

func newTestStore(t testing.TB) (*store, *storage.DB, *atomic.Int64) {
	t.Helper()
	db := openDB(t)
	var notified atomic.Int64
	return newStore(db, clock, func() { notified.Add(1) }), db, &notified
}

func mustCreateProduct(t testing.TB, s *store, p *productpricingv1.Product) *productpricingv1.Product {
	t.Helper()
	out, err := s.createProduct(context.Background(), p)
	if err != nil {
		t.Fatalf("create product %s: %v", p.GetSku(), err)
	}
	return out
}

func mustCreateList(t testing.TB, s *store, pl *productpricingv1.PriceList) *productpricingv1.PriceList {
	t.Helper()
	out, err := s.createPriceList(context.Background(), pl)
	if err != nil {
		t.Fatalf("create price list %s: %v", pl.GetName(), err)
	}
	return out
}

func wantConflict(t *testing.T, err error, reason, metaKey, metaValue string) {
	t.Helper()
	var c *ConflictError
	if !errors.As(err, &c) {
		t.Fatalf("error %v (%T), want *ConflictError", err, err)
	}
	if c.Reason != reason || c.Meta[metaKey] != metaValue {
		t.Errorf("conflict %q %v, want reason %q with %s=%s", c.Reason, c.Meta, reason, metaKey, metaValue)
	}
}

func lastEvent[T proto.Message](t *testing.T, db *storage.DB, into T) *eventsv1.Envelope {
	t.Helper()
	evs := outbox(t, db)
	if len(evs) == 0 {
		t.Fatal("no events")
	}
	env := evs[len(evs)-1]
	if err := env.GetData().UnmarshalTo(into); err != nil {
		t.Fatalf("event %s: %v", env.GetType(), err)
	}
	return env
}

func TestStoreProducts(t *testing.T) {
	s, db, notified := newTestStore(t)
	ctx := reqctx.WithCorrelationID(context.Background(), "corr-1")
	sapRef := &typev1.ExternalRef{System: "sap", Id: "M-100"}

	in := with(valve(), func(p *productpricingv1.Product) {
		p.ExternalRefs = []*typev1.ExternalRef{sapRef}
		p.Status = 0 // defaults to active
		p.Etag = "ignored"
	})
	created, err := s.createProduct(ctx, in)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("create stores, stamps and emits", func(t *testing.T) {
		if created.GetEtag() == "" || created.GetEtag() == "ignored" || !created.GetCreateTime().AsTime().Equal(now) ||
			created.GetStatus() != productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE {
			t.Errorf("created %v", created)
		}
		got, err := s.getProduct("VALVE-100")
		if err != nil || !proto.Equal(got, created) {
			t.Errorf("get = %v, %v; want %v", got, err, created)
		}
		ev := &eventsv1.ProductChanged{}
		env := lastEvent(t, db, ev)
		if !ev.GetCreated() || !proto.Equal(ev.GetProduct(), created) {
			t.Errorf("event %v", ev)
		}
		if env.GetSubject() != "products/VALVE-100" || env.GetSource() != "/millrace/productpricing" ||
			env.GetType() != "millrace.events.v1.ProductChanged" || env.GetCorrelationId() != "corr-1" || env.GetSequence() != 1 {
			t.Errorf("envelope %v", env)
		}
		if notified.Load() != 1 {
			t.Errorf("notified %d times, want 1", notified.Load())
		}
	})

	t.Run("failed writes store nothing", func(t *testing.T) {
		before, notes := len(outbox(t, db)), notified.Load()
		_, err := s.createProduct(ctx, valve())
		wantConflict(t, err, "", "sku", "VALVE-100")

		_, err = s.createProduct(ctx, with(valve(), func(p *productpricingv1.Product) {
			p.Sku = "VALVE-200"
			p.ExternalRefs = []*typev1.ExternalRef{{System: "crm", Id: "c-1"}, sapRef}
		}))
		wantConflict(t, err, ReasonExternalRefTaken, "holder", "VALVE-100")
		if _, err := s.getProduct("VALVE-200"); !errors.As(err, new(*NotFoundError)) {
			t.Errorf("VALVE-200 after a refused create: %v", err)
		}
		if sku, _, _ := s.listProducts(productFilter{refSystem: "crm", refID: "c-1"}, 10, ""); len(sku) != 0 {
			t.Error("the refused product's other reference was indexed")
		}

		_, err = s.createProduct(ctx, with(valve(), func(p *productpricingv1.Product) {
			p.Sku = "VALVE-300"
			p.Conversions[1].PerUnit = "BOX"
		}))
		wantInvalid(t, err, "", "product.conversions[1].per_unit", "BOX")

		if len(outbox(t, db)) != before || notified.Load() != notes {
			t.Error("a failed write appended an event or notified")
		}
		if n := bucketKeys(t, db, bucketProducts); n != 1 {
			t.Errorf("%d products stored, want 1", n)
		}
	})

	t.Run("update with a stale etag", func(t *testing.T) {
		_, err := s.updateProduct(ctx, "VALVE-100", "stale", func(p *productpricingv1.Product) error { p.Name = "x"; return nil })
		if !errors.As(err, new(*StaleEtagError)) {
			t.Fatalf("error %v, want stale etag", err)
		}
	})

	var updated *productpricingv1.Product
	t.Run("update with the current etag", func(t *testing.T) {
		var err error
		updated, err = s.updateProduct(ctx, "VALVE-100", created.GetEtag(), func(p *productpricingv1.Product) error {
			p.Status = productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED
			p.ExternalRefs = []*typev1.ExternalRef{{System: "sap", Id: "M-101"}}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if updated.GetEtag() == created.GetEtag() || !updated.GetCreateTime().AsTime().Equal(now) {
			t.Errorf("updated %v", updated)
		}
		ev := &eventsv1.ProductChanged{}
		env := lastEvent(t, db, ev)
		if ev.GetCreated() || ev.GetProduct().GetStatus() != productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED || env.GetSequence() != 2 {
			t.Errorf("event %v seq %d", ev, env.GetSequence())
		}
	})

	t.Run("indexes follow the update", func(t *testing.T) {
		active, _, _ := s.listProducts(productFilter{status: productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE}, 10, "")
		disc, _, _ := s.listProducts(productFilter{status: productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED}, 10, "")
		if len(active) != 0 || len(disc) != 1 {
			t.Errorf("active %d discontinued %d", len(active), len(disc))
		}
		old, _, _ := s.listProducts(productFilter{refSystem: "sap", refID: "M-100"}, 10, "")
		cur, _, _ := s.listProducts(productFilter{refSystem: "sap", refID: "M-101"}, 10, "")
		if len(old) != 0 || len(cur) != 1 {
			t.Errorf("old ref finds %d, new ref finds %d", len(old), len(cur))
		}
		// The released reference can be taken by another product.
		mustCreateProduct(t, s, with(valve(), func(p *productpricingv1.Product) {
			p.Sku = "VALVE-200"
			p.ExternalRefs = []*typev1.ExternalRef{sapRef}
		}))
	})

	t.Run("an update that changes nothing writes nothing", func(t *testing.T) {
		before := len(outbox(t, db))
		same, err := s.updateProduct(ctx, "VALVE-100", "", func(p *productpricingv1.Product) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if same.GetEtag() != updated.GetEtag() || len(outbox(t, db)) != before {
			t.Error("a no-op update changed the etag or emitted an event")
		}
	})

	t.Run("update of a missing product", func(t *testing.T) {
		_, err := s.updateProduct(ctx, "NOPE", "", func(*productpricingv1.Product) error { return nil })
		if !errors.As(err, new(*NotFoundError)) {
			t.Errorf("error %v", err)
		}
	})
}

func TestStoreUpsertProductByRef(t *testing.T) {
	s, db, _ := newTestStore(t)
	ctx := context.Background()
	ref := &typev1.ExternalRef{System: "sap", Id: "M-1"}

	p, created, err := s.upsertProductByRef(ctx, ref, valve())
	if err != nil || !created {
		t.Fatalf("first upsert: created %v, %v", created, err)
	}
	if len(p.GetExternalRefs()) != 1 || !proto.Equal(p.GetExternalRefs()[0], ref) {
		t.Errorf("refs %v", p.GetExternalRefs())
	}
	tests := []struct {
		name        string
		in          *productpricingv1.Product
		wantCreated bool
		wantEvent   bool
		check       func(t *testing.T, p *productpricingv1.Product, err error)
	}{
		{"same values again: nothing changes", valve(), false, false, func(t *testing.T, got *productpricingv1.Product, err error) {
			if err != nil || got.GetEtag() != p.GetEtag() {
				t.Errorf("etag %s → %s, %v", p.GetEtag(), got.GetEtag(), err)
			}
		}},
		{"new values update", with(valve(), func(p *productpricingv1.Product) { p.Name = "Renamed"; p.Sku = "" }), false, true,
			func(t *testing.T, got *productpricingv1.Product, err error) {
				if err != nil || got.GetName() != "Renamed" || got.GetSku() != "VALVE-100" {
					t.Errorf("got %v, %v", got, err)
				}
			}},
		{"stale etag", with(valve(), func(p *productpricingv1.Product) { p.Etag = "old" }), false, false,
			func(t *testing.T, _ *productpricingv1.Product, err error) {
				if !errors.As(err, new(*StaleEtagError)) {
					t.Errorf("error %v", err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(outbox(t, db))
			got, created, err := s.upsertProductByRef(ctx, ref, tt.in)
			tt.check(t, got, err)
			if created != tt.wantCreated {
				t.Errorf("created %v", created)
			}
			if emitted := len(outbox(t, db)) > before; emitted != tt.wantEvent {
				t.Errorf("event emitted %v, want %v", emitted, tt.wantEvent)
			}
		})
	}
	t.Run("a new reference for an existing SKU is a conflict", func(t *testing.T) {
		_, _, err := s.upsertProductByRef(ctx, &typev1.ExternalRef{System: "crm", Id: "x"}, valve())
		wantConflict(t, err, "", "sku", "VALVE-100")
	})
}

func TestStoreListProducts(t *testing.T) {
	s, _, _ := newTestStore(t)
	// Created out of order; listed in SKU order.
	skus := []string{"P-05", "P-01", "P-07", "P-03", "P-02", "P-06", "P-04"}
	for i, sku := range skus {
		mustCreateProduct(t, s, with(valve(), func(p *productpricingv1.Product) {
			p.Sku = sku
			p.ExternalRefs = []*typev1.ExternalRef{{System: "sap", Id: "M" + sku}}
			if i%2 == 1 {
				p.Status = productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED
			}
		}))
	}
	pages := func(t *testing.T, f productFilter, size int) [][]string {
		t.Helper()
		var out [][]string
		token := ""
		for range 10 {
			ps, next, err := s.listProducts(f, size, token)
			if err != nil {
				t.Fatal(err)
			}
			var page []string
			for _, p := range ps {
				page = append(page, p.GetSku())
			}
			out = append(out, page)
			if next == "" {
				return out
			}
			token = next
		}
		t.Fatal("paging did not end")
		return nil
	}
	tests := []struct {
		name   string
		filter productFilter
		size   int
		want   string
	}{
		{"all, in SKU order", productFilter{}, 3, "[[P-01 P-02 P-03] [P-04 P-05 P-06] [P-07]]"},
		{"exact last page has no token", productFilter{}, 7, "[[P-01 P-02 P-03 P-04 P-05 P-06 P-07]]"},
		{"active through the status index", productFilter{status: productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE}, 2, "[[P-02 P-04] [P-05 P-07]]"},
		{"discontinued", productFilter{status: productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED}, 2, "[[P-01 P-03] [P-06]]"},
		{"by external reference", productFilter{refSystem: "sap", refID: "MP-04"}, 2, "[[P-04]]"},
		{"by reference and a status it does not have", productFilter{refSystem: "sap", refID: "MP-04", status: productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED}, 2, "[[]]"},
		{"unknown reference", productFilter{refSystem: "sap", refID: "nope"}, 2, "[[]]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(pages(t, tt.filter, tt.size)); got != tt.want {
				t.Errorf("pages %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("tokens", func(t *testing.T) {
		_, next, _ := s.listProducts(productFilter{}, 2, "")
		for name, tc := range map[string]struct {
			f     productFilter
			token string
		}{
			"garbage":                   {productFilter{}, "!!"},
			"truncated":                 {productFilter{}, next[:5]},
			"from another query":        {productFilter{status: productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE}, next},
			"valid base64, wrong shape": {productFilter{}, "AAAA"},
		} {
			t.Run(name, func(t *testing.T) {
				_, _, err := s.listProducts(tc.f, 2, tc.token)
				wantInvalid(t, err, "", "page_token", "previous page")
			})
		}
	})
}

func TestStorePriceLists(t *testing.T) {
	s, db, _ := newTestStore(t)
	ctx := context.Background()
	mustCreateProduct(t, s, valve())
	mustCreateProduct(t, s, resin())

	eu := with(list("", "EUR", entry("VALVE-100", "CASE", "120"), entry("RESIN-PP", "KG", "2.5")), func(p *productpricingv1.PriceList) {
		p.Region, p.Priority = "eu", 1
		p.ValidTo = ts(mar1)
	})
	created := mustCreateList(t, s, eu)

	t.Run("create assigns an id and emits", func(t *testing.T) {
		if !idsValid(created.GetId()) || created.GetEtag() == "" {
			t.Errorf("id %q etag %q", created.GetId(), created.GetEtag())
		}
		ev := &eventsv1.PriceListChanged{}
		env := lastEvent(t, db, ev)
		if ev.GetDeleted() || len(ev.GetPriceList().GetEntries()) != 2 || env.GetRegion() != "eu" || env.GetSubject() != "priceLists/"+created.GetId() {
			t.Errorf("event %v %v", ev, env)
		}
		got, err := s.getPriceList(created.GetId(), func(*productpricingv1.PriceList) bool { return true })
		if err != nil || !proto.Equal(got, created) {
			t.Errorf("get = %v, %v", got, err)
		}
		// Entries come back in SKU order.
		if got.GetEntries()[0].GetSku() != "RESIN-PP" {
			t.Errorf("entries %v", got.GetEntries())
		}
	})

	t.Run("overlap is refused naming the other list", func(t *testing.T) {
		before := len(outbox(t, db))
		_, err := s.createPriceList(ctx, with(eu, func(p *productpricingv1.PriceList) { p.ValidFrom, p.ValidTo = ts(feb1), nil }))
		wantConflict(t, err, ReasonPriceListOverlap, "price_list_id", created.GetId())
		if len(outbox(t, db)) != before || bucketKeys(t, db, bucketPriceLists) != 1 {
			t.Error("a refused list was stored")
		}
	})

	t.Run("adjacent window, other priority and other scope are fine", func(t *testing.T) {
		mustCreateList(t, s, with(eu, func(p *productpricingv1.PriceList) { p.ValidFrom, p.ValidTo = ts(mar1), nil }))
		mustCreateList(t, s, with(eu, func(p *productpricingv1.PriceList) { p.Priority = 2 }))
		mustCreateList(t, s, with(eu, func(p *productpricingv1.PriceList) { p.CustomerTier = "gold" }))
	})

	t.Run("invalid entries name their field and store nothing", func(t *testing.T) {
		lists, entries, bySKU := bucketKeys(t, db, bucketPriceLists), bucketKeys(t, db, bucketPriceEntries), bucketKeys(t, db, bucketPriceListsBySKU)
		_, err := s.createPriceList(ctx, with(eu, func(p *productpricingv1.PriceList) {
			p.Region = "na"
			p.Entries = append(p.Entries, entry("VALVE-100", "KG", "1"), entry("GHOST", "EA", "1"))
		}))
		inv := wantInvalid(t, err, "", "price_list.entries[3].sku", "GHOST")
		wantInvalid(t, inv, "", "price_list.entries[2].sku", "already priced")
		if bucketKeys(t, db, bucketPriceLists) != lists || bucketKeys(t, db, bucketPriceEntries) != entries || bucketKeys(t, db, bucketPriceListsBySKU) != bySKU {
			t.Error("a refused list left records behind")
		}
	})

	t.Run("update moves entries and indexes", func(t *testing.T) {
		updated, err := s.updatePriceList(ctx, created.GetId(), created.GetEtag(), func(p *productpricingv1.PriceList) error {
			p.CurrencyCode = "CHF"
			p.Entries = []*productpricingv1.PriceEntry{entry("VALVE-100", "EA", "11")}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if updated.GetEtag() == created.GetEtag() {
			t.Error("etag unchanged")
		}
		candidates := func(sku, cur string) []string {
			var ids []string
			_ = db.View(func(tx *bbolt.Tx) error {
				c := &txCatalog{tx: tx, cache: newPricingCache()}
				cs, err := c.Candidates(sku, cur)
				if err != nil {
					t.Fatal(err)
				}
				for _, cand := range cs {
					ids = append(ids, cand.list.GetId())
				}
				return nil
			})
			return ids
		}
		if ids := candidates("VALVE-100", "CHF"); !slices.Equal(ids, []string{created.GetId()}) {
			t.Errorf("CHF candidates %v", ids)
		}
		if ids := candidates("VALVE-100", "EUR"); slices.Contains(ids, created.GetId()) {
			t.Errorf("still an EUR candidate: %v", ids)
		}
		if ids := candidates("RESIN-PP", "CHF"); len(ids) != 0 {
			t.Errorf("removed entry still indexed: %v", ids)
		}
		_, err = s.updatePriceList(ctx, created.GetId(), created.GetEtag(), func(*productpricingv1.PriceList) error { return nil })
		if !errors.As(err, new(*StaleEtagError)) {
			t.Errorf("stale etag accepted: %v", err)
		}
	})

	t.Run("delete removes everything and emits the list as it was", func(t *testing.T) {
		all, _, err := s.listPriceLists(priceListFilter{}, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, pl := range all {
			if err := s.deletePriceList(ctx, pl.GetId(), "", func(*productpricingv1.PriceList) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		ev := &eventsv1.PriceListChanged{}
		lastEvent(t, db, ev)
		if !ev.GetDeleted() || ev.GetPriceList().GetId() != all[len(all)-1].GetId() || len(ev.GetPriceList().GetEntries()) == 0 {
			t.Errorf("delete event %v", ev)
		}
		for _, b := range [][]byte{bucketPriceLists, bucketPriceEntries, bucketPriceListsBySKU, bucketPriceListsByScope, bucketPriceListsByCurrency, bucketPriceListsByRegion} {
			if n := bucketKeys(t, db, b); n != 0 {
				t.Errorf("bucket %s keeps %d keys", b, n)
			}
		}
		err = s.deletePriceList(ctx, created.GetId(), "", func(*productpricingv1.PriceList) error { return nil })
		if !errors.As(err, new(*NotFoundError)) {
			t.Errorf("second delete: %v", err)
		}
	})
}

func idsValid(id string) bool { return len(id) == len("pl_")+26 && id[:3] == "pl_" }

func TestStoreRefusesToDropAUnitInUse(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	p := mustCreateProduct(t, s, valve())
	pl := mustCreateList(t, s, list("", "EUR", entry("VALVE-100", "PALLET", "4000")))

	_, err := s.updateProduct(ctx, "VALVE-100", p.GetEtag(), func(p *productpricingv1.Product) error {
		p.Conversions = p.Conversions[:1] // drop PALLET
		return nil
	})
	var pre *PreconditionError
	if !errors.As(err, &pre) || pre.Reason != ReasonUnitInUse || pre.Meta["price_list_id"] != pl.GetId() || pre.Meta["unit"] != "PALLET" {
		t.Fatalf("error %v, want UNIT_IN_USE naming %s", err, pl.GetId())
	}
	// Once the list prices per CASE, PALLET may go; CASE may not.
	if _, err := s.updatePriceList(ctx, pl.GetId(), "", func(p *productpricingv1.PriceList) error {
		p.Entries[0].Unit = "CASE"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.updateProduct(ctx, "VALVE-100", "", func(p *productpricingv1.Product) error {
		p.Conversions = p.Conversions[:1]
		return nil
	}); err != nil {
		t.Errorf("dropping an unused unit: %v", err)
	}
	if _, err := s.updateProduct(ctx, "VALVE-100", "", func(p *productpricingv1.Product) error {
		p.Conversions = nil
		return nil
	}); !errors.As(err, &pre) {
		t.Errorf("dropping CASE: %v", err)
	}
}

func TestStoreListPriceLists(t *testing.T) {
	s, _, _ := newTestStore(t)
	mustCreateProduct(t, s, valve())
	type spec struct{ name, currency, region string }
	specs := []spec{
		{"g-eur", "EUR", ""}, {"eu-1", "EUR", "eu"}, {"na-1", "USD", "na"}, {"g-usd", "USD", ""},
		{"eu-2", "EUR", "eu"}, {"na-eur", "EUR", "na"}, {"eu-chf", "CHF", "eu"},
	}
	for i, sp := range specs {
		mustCreateList(t, s, with(list("", sp.currency, entry("VALVE-100", "EA", "1")), func(p *productpricingv1.PriceList) {
			p.Name, p.Region, p.Priority = sp.name, sp.region, int32(i)
		}))
	}
	collect := func(t *testing.T, f priceListFilter, size int) string {
		t.Helper()
		var pages [][]string
		token := ""
		for range 20 {
			pls, next, err := s.listPriceLists(f, size, token)
			if err != nil {
				t.Fatal(err)
			}
			var page []string
			for _, pl := range pls {
				if len(pl.GetEntries()) != 0 {
					t.Error("a listed price list carries its entries")
				}
				page = append(page, pl.GetName())
			}
			pages = append(pages, page)
			if next == "" {
				return fmt.Sprint(pages)
			}
			token = next
		}
		t.Fatal("paging did not end")
		return ""
	}
	tests := []struct {
		name   string
		filter priceListFilter
		size   int
		want   string
	}{
		{"all in creation order", priceListFilter{}, 3, "[[g-eur eu-1 na-1] [g-usd eu-2 na-eur] [eu-chf]]"},
		{"currency: grouped by region", priceListFilter{currency: "EUR"}, 2, "[[g-eur eu-1] [eu-2 na-eur]]"},
		{"currency and region", priceListFilter{currency: "EUR", region: "eu"}, 1, "[[eu-1] [eu-2]]"},
		{"region: grouped by currency", priceListFilter{region: "eu"}, 2, "[[eu-chf eu-1] [eu-2]]"},
		{"scoped key sees its region and global lists", priceListFilter{scope: "eu"}, 2, "[[g-eur g-usd] [eu-chf eu-1] [eu-2]]"},
		{"scoped key by currency", priceListFilter{scope: "eu", currency: "EUR"}, 2, "[[g-eur eu-1] [eu-2]]"},
		{"scoped key asking for another region", priceListFilter{scope: "eu", region: "na"}, 2, "[[]]"},
		{"scoped key asking for its own", priceListFilter{scope: "na", region: "na"}, 5, "[[na-eur na-1]]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := collect(t, tt.filter, tt.size); got != tt.want {
				t.Errorf("pages %s, want %s", got, tt.want)
			}
		})
	}
}

// TestCatalogContract runs the same pricing expectations against both
// implementations of the catalog port: the in-memory one the domain tests
// use and the store's, over real bbolt indexes.
func TestCatalogContract(t *testing.T) {
	impls := map[string]func(t *testing.T, products []*productpricingv1.Product, lists []*productpricingv1.PriceList) func(CustomerFacts, string, time.Time, []*productpricingv1.SimulationLine) (*productpricingv1.SimulatePricesResponse, error){
		"memory": func(t *testing.T, products []*productpricingv1.Product, lists []*productpricingv1.PriceList) func(CustomerFacts, string, time.Time, []*productpricingv1.SimulationLine) (*productpricingv1.SimulatePricesResponse, error) {
			for _, pl := range lists {
				pl.Id = "pl_" + pl.GetName()
			}
			cat := newCatalog(products, lists...)
			return func(c CustomerFacts, cur string, at time.Time, lines []*productpricingv1.SimulationLine) (*productpricingv1.SimulatePricesResponse, error) {
				return Simulate(cat, c, cur, at, lines)
			}
		},
		"bbolt": func(t *testing.T, products []*productpricingv1.Product, lists []*productpricingv1.PriceList) func(CustomerFacts, string, time.Time, []*productpricingv1.SimulationLine) (*productpricingv1.SimulatePricesResponse, error) {
			s, _, _ := newTestStore(t)
			for _, p := range products {
				mustCreateProduct(t, s, p)
			}
			for _, pl := range lists {
				got := mustCreateList(t, s, pl)
				pl.Id = got.GetId() // so expectations can name it
			}
			return s.simulate
		},
	}
	for name, build := range impls {
		t.Run(name, func(t *testing.T) {
			lists := []*productpricingv1.PriceList{
				with(list("", "EUR", entry("VALVE-100", "EA", "10"), entry("RESIN-PP", "KG", "3")), func(p *productpricingv1.PriceList) { p.Name = "global" }),
				with(list("", "EUR", entry("VALVE-100", "CASE", "96")), func(p *productpricingv1.PriceList) { p.Name = "eu"; p.Region = "eu" }),
				with(list("", "EUR", entry("VALVE-100", "EA", "7", "100", "6.5")), func(p *productpricingv1.PriceList) {
					p.Name, p.Region, p.CustomerTier = "eu-gold", "eu", "gold"
				}),
				with(list("", "EUR", entry("VALVE-100", "EA", "5")), func(p *productpricingv1.PriceList) {
					p.Name, p.CustomerId, p.ValidFrom, p.ValidTo = "acme-march", acmeEU.ID, ts(mar1), ts(mar1.AddDate(0, 1, 0))
				}),
				with(list("", "USD", entry("VALVE-100", "EA", "11")), func(p *productpricingv1.PriceList) { p.Name = "usd" }),
				with(list("", "EUR", entry("VALVE-OLD", "EA", "1")), func(p *productpricingv1.PriceList) { p.Name, p.Priority = "old", 1 }),
			}
			products := []*productpricingv1.Product{valve(), resin(),
				with(valve(), func(p *productpricingv1.Product) {
					p.Sku, p.Status = "VALVE-OLD", productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED
				})}
			simulate := build(t, products, lists)
			nameOf := map[string]string{}
			for _, pl := range lists {
				nameOf[pl.GetId()] = pl.GetName()
			}
			basket := []*productpricingv1.SimulationLine{
				line("VALVE-100", "120", "EA"), line("RESIN-PP", "10", "KG"), line("VALVE-OLD", "1", "EA"), line("GHOST", "1", "EA"),
			}
			tests := []struct {
				name     string
				customer CustomerFacts
				currency string
				at       time.Time
				want     string // per line: list name and total, then the basket total
			}{
				{"gold customer in the EU gets the tier break", acmeEU, "EUR", now, "[eu-gold:780.00 global:30.00 DISCONTINUED UNKNOWN_PRODUCT] 810.00"},
				{"customer list valid in March", acmeEU, "EUR", mar1, "[acme-march:600.00 global:30.00 DISCONTINUED UNKNOWN_PRODUCT] 630.00"},
				{"plain EU customer, per case", plainEU, "EUR", now, "[eu:960.00 global:30.00 DISCONTINUED UNKNOWN_PRODUCT] 990.00"},
				{"NA customer gets the global list", boltNA, "EUR", now, "[global:1200.00 global:30.00 DISCONTINUED UNKNOWN_PRODUCT] 1230.00"},
				{"in dollars only the valve has a price", boltNA, "USD", now, "[usd:1320.00 NO_PRICE DISCONTINUED UNKNOWN_PRODUCT] 1320.00"},
				{"before any list is valid", boltNA, "EUR", jan1.Add(-time.Second), "[NO_PRICE NO_PRICE DISCONTINUED UNKNOWN_PRODUCT] 0.00"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					resp, err := simulate(tt.customer, tt.currency, tt.at, basket)
					if err != nil {
						t.Fatal(err)
					}
					var got []string
					for _, l := range resp.GetLines() {
						if l.GetStatus() == productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED {
							got = append(got, nameOf[l.GetPriceListId()]+":"+l.GetLineTotal().GetAmount())
						} else {
							got = append(got, l.GetReason())
						}
					}
					if s := fmt.Sprint(got) + " " + resp.GetTotal().GetAmount(); s != tt.want {
						t.Errorf("got %s, want %s", s, tt.want)
					}
				})
			}
		})
	}
}

func TestStoreCacheFollowsWrites(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	mustCreateProduct(t, s, valve())
	pl := mustCreateList(t, s, list("", "EUR", entry("VALVE-100", "EA", "10")))
	basket := []*productpricingv1.SimulationLine{line("VALVE-100", "2", "EA")}
	price := func() string {
		t.Helper()
		resp, err := s.simulate(acmeEU, "EUR", now, basket)
		if err != nil {
			t.Fatal(err)
		}
		if l := resp.GetLines()[0]; l.GetStatus() != productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED {
			return l.GetReason()
		}
		return resp.GetTotal().GetAmount()
	}
	steps := []struct {
		name  string
		write func() error
		want  string
	}{
		{"first read fills the cache", func() error { return nil }, "20.00"},
		{"a price change is seen at once", func() error {
			_, err := s.updatePriceList(ctx, pl.GetId(), "", func(p *productpricingv1.PriceList) error {
				p.Entries[0].UnitPrice = "11"
				return nil
			})
			return err
		}, "22.00"},
		{"a better list is seen at once", func() error {
			_, err := s.createPriceList(ctx, with(list("", "EUR", entry("VALVE-100", "EA", "9")), func(p *productpricingv1.PriceList) { p.Region = "eu" }))
			return err
		}, "18.00"},
		{"a discontinued product is seen at once", func() error {
			_, err := s.updateProduct(ctx, "VALVE-100", "", func(p *productpricingv1.Product) error {
				p.Status = productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED
				return nil
			})
			return err
		}, ReasonDiscontinued},
		{"a failed write changes nothing", func() error {
			_, err := s.createProduct(ctx, valve())
			if err == nil {
				return errors.New("duplicate accepted")
			}
			return nil
		}, ReasonDiscontinued},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.write(); err != nil {
				t.Fatal(err)
			}
			for range 2 { // from the store, then from the cache
				if got := price(); got != st.want {
					t.Fatalf("basket %s, want %s", got, st.want)
				}
			}
		})
	}
}

// TestStoreCacheUnderConcurrentWrites prices baskets while a writer moves
// two prices together. Every basket must see both prices of one version:
// the cache never mixes states. Run with -race.
func TestStoreCacheUnderConcurrentWrites(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	mustCreateProduct(t, s, valve())
	mustCreateProduct(t, s, resin())
	pl := mustCreateList(t, s, list("", "EUR", entry("VALVE-100", "EA", "1"), entry("RESIN-PP", "KG", "1")))
	basket := []*productpricingv1.SimulationLine{line("VALVE-100", "1", "EA"), line("RESIN-PP", "1", "KG")}

	done := make(chan struct{})
	readers := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { readers <- struct{}{} }()
			for {
				select {
				case <-done:
					return
				default:
				}
				resp, err := s.simulate(acmeEU, "EUR", now, basket)
				if err != nil {
					t.Error(err)
					return
				}
				a, b := resp.GetLines()[0].GetUnitPrice().GetAmount(), resp.GetLines()[1].GetUnitPrice().GetAmount()
				if a != b {
					t.Errorf("basket mixes versions: %s and %s", a, b)
					return
				}
			}
		}()
	}
	for v := 2; v <= 60; v++ {
		price := fmt.Sprint(v)
		if _, err := s.updatePriceList(ctx, pl.GetId(), "", func(p *productpricingv1.PriceList) error {
			for _, e := range p.Entries {
				e.UnitPrice = price
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for range 4 {
		<-readers
	}
	resp, err := s.simulate(acmeEU, "EUR", now, basket)
	if err != nil || resp.GetTotal().GetAmount() != "120.00" {
		t.Errorf("after the writes: %v, %v", resp.GetTotal(), err)
	}
}
