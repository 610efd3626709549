package customer

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/storage"
)

// TestStoreContract runs the repository contract against the bbolt store.
// A second implementation of repository must pass the same suite.
func TestStoreContract(t *testing.T) {
	testRepository(t, func(t *testing.T) (repository, func() int) {
		db, err := storage.Open(filepath.Join(t.TempDir(), "customer.db"), Schema, storage.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		notified := 0
		return &store{db: db, notify: func() { notified++ }}, func() int { return notified }
	})
}

// errRollback makes a test transaction fail after it wrote.
var errRollback = errors.New("roll back on purpose")

func testRepository(t *testing.T, open func(t *testing.T) (repository, func() int)) {
	ctx := context.Background()
	mk := func(id, region, parentID string, refs ...string) *customerv1.Customer {
		c := &customerv1.Customer{Id: id, DisplayName: id, Region: region, ParentId: parentID, Status: customerv1.CustomerStatus_CUSTOMER_STATUS_ACTIVE}
		for i := 0; i+1 < len(refs); i += 2 {
			c.ExternalRefs = append(c.ExternalRefs, &typev1.ExternalRef{System: refs[i], Id: refs[i+1]})
		}
		return c
	}
	put := func(t *testing.T, r repository, old, c *customerv1.Customer) {
		t.Helper()
		if err := r.update(ctx, func(tx txn) error { return tx.putCustomer(old, c) }); err != nil {
			t.Fatal(err)
		}
	}
	read := func(t *testing.T, r repository, fn func(tx txn) error) {
		t.Helper()
		if err := r.view(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	scanIDs := func(t *testing.T, r repository, ix listIndex, key []string, after string) []string {
		t.Helper()
		var out []string
		read(t, r, func(tx txn) error {
			return tx.scan(ix, key, after, func(c *customerv1.Customer) bool { out = append(out, c.GetId()); return true })
		})
		return out
	}
	children := func(t *testing.T, r repository, parentID string) []string {
		t.Helper()
		var out []string
		read(t, r, func(tx txn) error {
			return tx.childIDs(parentID, "", func(id string) bool { out = append(out, id); return true })
		})
		return out
	}

	t.Run("an account round-trips with its indexes", func(t *testing.T) {
		r, _ := open(t)
		c := mk("cus_1", "eu", "", "salesforce", "A", "sap", "9")
		c.CreditLimit = &typev1.Money{CurrencyCode: "EUR", Amount: "10.00"}
		put(t, r, nil, c)
		read(t, r, func(tx txn) error {
			got, err := tx.customer("cus_1")
			if err != nil || !proto.Equal(got, c) {
				t.Errorf("customer = %v %v", got, err)
			}
			if missing, err := tx.customer("cus_2"); missing != nil || err != nil {
				t.Errorf("missing customer = %v %v", missing, err)
			}
			for _, ref := range []string{"A", "9"} {
				system := map[string]string{"A": "salesforce", "9": "sap"}[ref]
				if h, err := tx.refHolder(system, ref); h != "cus_1" || err != nil {
					t.Errorf("refHolder(%s) = %q %v", ref, h, err)
				}
			}
			return nil
		})
		if got := scanIDs(t, r, listByRegion, []string{"eu"}, ""); !slices.Equal(got, []string{"cus_1"}) {
			t.Errorf("region index %v", got)
		}
		if got := scanIDs(t, r, listByRegionStatus, []string{"eu", "active"}, ""); !slices.Equal(got, []string{"cus_1"}) {
			t.Errorf("region-status index %v", got)
		}
	})

	t.Run("indexes follow a change", func(t *testing.T) {
		r, _ := open(t)
		put(t, r, nil, mk("cus_p1", "eu", ""))
		put(t, r, nil, mk("cus_p2", "eu", ""))
		old := mk("cus_c", "eu", "cus_p1", "salesforce", "A")
		put(t, r, nil, old)
		next := mk("cus_c", "na", "cus_p2", "salesforce", "B", "sap", "1")
		next.Status = customerv1.CustomerStatus_CUSTOMER_STATUS_BLOCKED
		put(t, r, old, next)

		if got := children(t, r, "cus_p1"); len(got) != 0 {
			t.Errorf("old parent keeps %v", got)
		}
		if got := children(t, r, "cus_p2"); !slices.Equal(got, []string{"cus_c"}) {
			t.Errorf("new parent has %v", got)
		}
		if got := scanIDs(t, r, listByRegion, []string{"na"}, ""); !slices.Equal(got, []string{"cus_c"}) {
			t.Errorf("na %v", got)
		}
		if got := scanIDs(t, r, listByRegion, []string{"eu"}, ""); !slices.Equal(got, []string{"cus_p1", "cus_p2"}) {
			t.Errorf("eu %v", got)
		}
		if got := scanIDs(t, r, listByStatus, []string{"blocked"}, ""); !slices.Equal(got, []string{"cus_c"}) {
			t.Errorf("blocked %v", got)
		}
		if got := scanIDs(t, r, listByRegionStatus, []string{"eu", "blocked"}, ""); len(got) != 0 {
			t.Errorf("eu blocked %v", got)
		}
		read(t, r, func(tx txn) error {
			for ref, want := range map[string]string{"A": "", "B": "cus_c"} {
				if h, _ := tx.refHolder("salesforce", ref); h != want {
					t.Errorf("salesforce/%s held by %q, want %q", ref, h, want)
				}
			}
			return nil
		})
	})

	t.Run("a taken reference fails the transaction and writes nothing", func(t *testing.T) {
		r, notified := open(t)
		put(t, r, nil, mk("cus_1", "eu", "", "salesforce", "A"))
		before := notified()
		err := r.update(ctx, func(tx txn) error {
			c := mk("cus_2", "eu", "", "salesforce", "A")
			if err := tx.emit(c, &eventsv1.CustomerCreated{Customer: c}); err != nil {
				return err
			}
			return tx.putCustomer(nil, c)
		})
		var uv *storage.UniqueViolationError
		if !errors.As(err, &uv) || string(uv.Holder) != "cus_1" {
			t.Fatalf("err %v, want a unique violation held by cus_1", err)
		}
		read(t, r, func(tx txn) error {
			if c, _ := tx.customer("cus_2"); c != nil {
				t.Error("cus_2 stored by a failed transaction")
			}
			return nil
		})
		if notified() != before {
			t.Error("Notify called for a transaction that rolled back")
		}
	})

	t.Run("scans page in creation order", func(t *testing.T) {
		r, _ := open(t)
		ids := []string{"cus_01", "cus_02", "cus_03", "cus_04", "cus_05"}
		for i, id := range ids {
			put(t, r, nil, mk(id, []string{"eu", "na"}[i%2], ""))
		}
		if got := scanIDs(t, r, listAll, nil, ""); !slices.Equal(got, ids) {
			t.Errorf("all %v", got)
		}
		if got := scanIDs(t, r, listAll, nil, "cus_02"); !slices.Equal(got, ids[2:]) {
			t.Errorf("all after cus_02 %v", got)
		}
		if got := scanIDs(t, r, listByRegion, []string{"eu"}, "cus_01"); !slices.Equal(got, []string{"cus_03", "cus_05"}) {
			t.Errorf("eu after cus_01 %v", got)
		}
		if got := scanIDs(t, r, listByRegion, []string{"e"}, ""); len(got) != 0 {
			t.Errorf("a region prefix matched whole regions: %v", got)
		}
	})

	t.Run("exposure and reservations", func(t *testing.T) {
		r, _ := open(t)
		res := []*reservation{
			{OrderID: "ord_1", CustomerID: "cus_a", AccountID: "cus_p", Currency: "EUR", Amount: "10.00", CreateTime: time.Unix(1, 0).UTC()},
			{OrderID: "ord_2", CustomerID: "cus_a", AccountID: "cus_p", Currency: "EUR", Amount: "5.00"},
			{OrderID: "ord_3", CustomerID: "cus_b", Currency: "EUR", Amount: "1.00"},
		}
		err := r.update(ctx, func(tx txn) error {
			for _, x := range res {
				if err := tx.putReservation(x); err != nil {
					return err
				}
			}
			return tx.setExposure("cus_p", &typev1.Money{CurrencyCode: "EUR", Amount: "15.00"})
		})
		if err != nil {
			t.Fatal(err)
		}
		read(t, r, func(tx txn) error {
			got, err := tx.reservation("ord_1")
			if err != nil || got == nil || *got != *res[0] {
				t.Errorf("reservation = %+v %v", got, err)
			}
			var orders []string
			if err := tx.reservationsOf("cus_a", func(x *reservation) bool { orders = append(orders, x.OrderID); return true }); err != nil {
				return err
			}
			if !slices.Equal(orders, []string{"ord_1", "ord_2"}) {
				t.Errorf("reservations of cus_a %v", orders)
			}
			if m, _ := tx.exposure("cus_p"); m.GetAmount() != "15.00" {
				t.Errorf("exposure %v", m)
			}
			return nil
		})
		err = r.update(ctx, func(tx txn) error {
			if err := tx.deleteReservation(res[0]); err != nil {
				return err
			}
			return tx.setExposure("cus_p", nil)
		})
		if err != nil {
			t.Fatal(err)
		}
		read(t, r, func(tx txn) error {
			if got, _ := tx.reservation("ord_1"); got != nil {
				t.Error("deleted reservation still there")
			}
			n := 0
			_ = tx.reservationsOf("cus_a", func(*reservation) bool { n++; return true })
			if n != 1 {
				t.Errorf("%d reservations of cus_a after a delete", n)
			}
			if m, _ := tx.exposure("cus_p"); m != nil {
				t.Errorf("exposure %v after removal", m)
			}
			return nil
		})
	})

	t.Run("events commit with the change and wake the relay once", func(t *testing.T) {
		r, notified := open(t)
		c := mk("cus_1", "eu", "")
		err := r.update(ctx, func(tx txn) error {
			if err := tx.putCustomer(nil, c); err != nil {
				return err
			}
			if err := tx.emit(c, &eventsv1.CustomerCreated{Customer: c}); err != nil {
				return err
			}
			return tx.emit(c, &eventsv1.CustomerUpdated{Customer: c})
		})
		if err != nil {
			t.Fatal(err)
		}
		if notified() != 1 {
			t.Errorf("Notify called %d times", notified())
		}
		if err := r.update(ctx, func(tx txn) error { return tx.putCustomer(c, c) }); err != nil {
			t.Fatal(err)
		}
		if notified() != 1 {
			t.Error("Notify called for a commit without events")
		}
		err = r.updateBulk(ctx, func(tx txn) error {
			c2 := mk("cus_2", "eu", "")
			if err := tx.putCustomer(nil, c2); err != nil {
				return err
			}
			if err := tx.emit(c2, &eventsv1.CustomerCreated{Customer: c2}); err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) || notified() != 1 {
			t.Errorf("failed bulk: %v, notified %d", err, notified())
		}
		read(t, r, func(tx txn) error {
			if c, _ := tx.customer("cus_2"); c != nil {
				t.Error("a rolled-back bulk write is visible")
			}
			return nil
		})
	})
}

func TestStoreOutbox(t *testing.T) {
	db, err := storage.Open(filepath.Join(t.TempDir(), "customer.db"), Schema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := &store{db: db}
	c := &customerv1.Customer{Id: "cus_1", DisplayName: "A", Region: "eu"}
	for range 2 {
		if err := s.update(context.Background(), func(tx txn) error { return tx.emit(c, &eventsv1.CustomerUpdated{Customer: c}) }); err != nil {
			t.Fatal(err)
		}
	}
	err = db.View(func(tx *bbolt.Tx) error {
		recs, err := storage.ReadOutbox(tx, 0)
		if err != nil {
			return err
		}
		for i, r := range recs {
			env := &eventsv1.Envelope{}
			if err := proto.Unmarshal(r.Data, env); err != nil {
				return err
			}
			if env.GetSubject() != "customers/cus_1" || env.GetSequence() != uint64(i+1) || env.GetRegion() != "eu" {
				t.Errorf("envelope %d: subject %q sequence %d region %q", i, env.GetSubject(), env.GetSequence(), env.GetRegion())
			}
		}
		if len(recs) != 2 {
			t.Errorf("%d outbox records", len(recs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSchemaReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customer.db")
	db, err := storage.Open(path, Schema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	c := &customerv1.Customer{Id: "cus_1", DisplayName: "A", Region: "eu"}
	if err := (&store{db: db}).update(context.Background(), func(tx txn) error { return tx.putCustomer(nil, c) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = storage.Open(path, Schema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = (&store{db: db}).view(context.Background(), func(tx txn) error {
		got, err := tx.customer("cus_1")
		if err != nil || !proto.Equal(got, c) {
			t.Errorf("after reopen: %v %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// failingBulk is the real store whose shared batch transaction fails after
// its function ran, as a full disk or a failed fsync would.
type failingBulk struct{ *store }

func (f failingBulk) updateBulk(ctx context.Context, fn func(txn) error) error {
	return f.store.updateBulk(ctx, func(tx txn) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errRollback
	})
}

func TestBatchFallsBackItemByItem(t *testing.T) {
	db, err := storage.Open(filepath.Join(t.TempDir(), "customer.db"), Schema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k := &core{repo: failingBulk{&store{db: db}}, now: time.Now}
	item := func(id, name string) *customerv1.UpsertCustomerByExternalRefRequest {
		return &customerv1.UpsertCustomerByExternalRefRequest{
			ExternalRef: &typev1.ExternalRef{System: "salesforce", Id: id},
			Customer:    &customerv1.Customer{DisplayName: name, Region: "eu"},
		}
	}
	items := []*customerv1.UpsertCustomerByExternalRefRequest{item("A", "Alpha"), item("B", ""), item("A", "Alpha 2"), item("C", "Gamma")}
	results, err := k.batchUpsert(context.Background(), auth.Principal{Role: auth.RoleERP}, items)
	if err != nil {
		t.Fatal(err)
	}
	want := []customerv1.UpsertResult{
		customerv1.UpsertResult_UPSERT_RESULT_CREATED,
		customerv1.UpsertResult_UPSERT_RESULT_UNSPECIFIED,
		customerv1.UpsertResult_UPSERT_RESULT_UPDATED,
		customerv1.UpsertResult_UPSERT_RESULT_CREATED,
	}
	for i, r := range results {
		if r.result != want[i] || (r.err != nil) != (i == 1) {
			t.Errorf("item %d: %v %v, want %v", i, r.result, r.err, want[i])
		}
	}
	var n int
	err = (&store{db: db}).view(context.Background(), func(tx txn) error {
		return tx.scan(listAll, nil, "", func(*customerv1.Customer) bool { n++; return true })
	})
	if err != nil || n != 2 {
		t.Errorf("%d accounts stored (%v), want Alpha and Gamma once each", n, err)
	}
}
