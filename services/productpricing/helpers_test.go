package productpricing

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/storage"
)

// Fixed instants the tests price at.
var (
	jan1  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	feb1  = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	mar1  = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	now   = time.Date(2026, 2, 15, 12, 0, 0, 0, time.UTC)
	clock = func() time.Time { return now }
)

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// valve is sold by the each (indivisible), by the case of 12 and the
// pallet of 40 cases.
func valve() *productpricingv1.Product {
	return &productpricingv1.Product{
		Sku:                 "VALVE-100",
		Name:                "Ball valve DN25",
		BaseUnit:            "EA",
		BaseUnitIndivisible: true,
		Conversions: []*productpricingv1.UnitConversion{
			{Unit: "CASE", Factor: "12", PerUnit: "EA", Indivisible: true},
			{Unit: "PALLET", Factor: "40", PerUnit: "CASE", Indivisible: true},
		},
		Status: productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE,
	}
}

// resin is sold by weight: KG, LB (exactly 0.45359237 KG) and 25 KG bags.
func resin() *productpricingv1.Product {
	return &productpricingv1.Product{
		Sku:      "RESIN-PP",
		Name:     "Polypropylene resin",
		BaseUnit: "KG",
		Conversions: []*productpricingv1.UnitConversion{
			{Unit: "LB", Factor: "0.45359237", PerUnit: "KG"},
			{Unit: "BAG", Factor: "25", PerUnit: "KG", Indivisible: true},
		},
		Status: productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE,
	}
}

func with[T proto.Message](m T, change func(T)) T {
	c := proto.Clone(m).(T)
	change(c)
	return c
}

func qty(v, unit string) *typev1.Quantity { return &typev1.Quantity{Value: v, Unit: unit} }

func entry(sku, unit, price string, breaks ...string) *productpricingv1.PriceEntry {
	e := &productpricingv1.PriceEntry{Sku: sku, Unit: unit, UnitPrice: price}
	for i := 0; i+1 < len(breaks); i += 2 {
		e.Breaks = append(e.Breaks, &productpricingv1.QuantityBreak{MinQuantity: breaks[i], UnitPrice: breaks[i+1]})
	}
	return e
}

// list builds a price list valid from jan1, open-ended.
func list(id, currency string, entries ...*productpricingv1.PriceEntry) *productpricingv1.PriceList {
	return &productpricingv1.PriceList{
		Id: id, Name: "list " + id, CurrencyCode: currency,
		ValidFrom: ts(jan1), Entries: entries,
	}
}

// fakeDirectory is an in-memory CustomerDirectory.
type fakeDirectory struct {
	mu        sync.Mutex
	customers map[string]CustomerFacts
	err       error
	calls     int
}

func newDirectory(cs ...CustomerFacts) *fakeDirectory {
	d := &fakeDirectory{customers: map[string]CustomerFacts{}}
	for _, c := range cs {
		d.customers[c.ID] = c
	}
	return d
}

func (d *fakeDirectory) Lookup(_ context.Context, id string) (CustomerFacts, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	if d.err != nil {
		return CustomerFacts{}, d.err
	}
	c, ok := d.customers[id]
	if !ok {
		return CustomerFacts{}, ErrCustomerNotFound
	}
	return c, nil
}

var (
	acmeEU   = CustomerFacts{ID: "cus_ACME", Region: "eu", Tier: "gold"}
	boltNA   = CustomerFacts{ID: "cus_BOLT", Region: "na", Tier: "silver"}
	plainEU  = CustomerFacts{ID: "cus_PLAIN", Region: "eu"}
	silverEU = CustomerFacts{ID: "cus_SILVER", Region: "eu", Tier: "silver"}
)

// openDB opens a fresh store in the test's temporary directory.
func openDB(t testing.TB) *storage.DB {
	t.Helper()
	db, err := storage.Open(filepath.Join(t.TempDir(), "productpricing.db"), Schema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// outbox returns the events waiting in the store's outbox.
func outbox(t testing.TB, db *storage.DB) []*eventsv1.Envelope {
	t.Helper()
	var out []*eventsv1.Envelope
	err := db.View(func(tx *bbolt.Tx) error {
		recs, err := storage.ReadOutbox(tx, 0)
		if err != nil {
			return err
		}
		for _, r := range recs {
			env := &eventsv1.Envelope{}
			if err := proto.Unmarshal(r.Data, env); err != nil {
				return err
			}
			out = append(out, env)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// bucketKeys counts the keys of a bucket, to check that indexes are cleaned.
func bucketKeys(t testing.TB, db *storage.DB, bucket []byte) int {
	t.Helper()
	n := 0
	_ = db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	})
	return n
}

// wantInvalid checks that err is an InvalidError naming field (first
// violation) with the given reason ("" for the generic one) and a
// description containing desc.
func wantInvalid(t *testing.T, err error, reason, field, desc string) *InvalidError {
	t.Helper()
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("error %v (%T), want *InvalidError", err, err)
	}
	if inv.Reason != reason {
		t.Errorf("reason %q, want %q", inv.Reason, reason)
	}
	for _, v := range inv.Violations {
		if v.Field == field {
			if !strings.Contains(v.Description, desc) {
				t.Errorf("%s: description %q, want it to contain %q", field, v.Description, desc)
			}
			return inv
		}
	}
	t.Errorf("violations %+v do not name %s", inv.Violations, field)
	return inv
}
