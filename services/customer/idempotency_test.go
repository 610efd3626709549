package customer_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/services/customer"
)

// TestCreateCustomerKeyedRetryAfterLostAnswer covers a crash between the
// commit of a keyed CreateCustomer and the platform storing its answer:
// the account is attached to the key's claim in its own commit, so the
// retry after the restart answers with it instead of creating a second
// account (or, with an external reference, refusing the caller's own).
func TestCreateCustomerKeyedRetryAfterLostAnswer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customer.db")
	const scope = "key-crm|/millrace.customer.v1.CustomerService/CreateCustomer"
	hash := []byte("sha256 of the request")
	principal := auth.WithPrincipal(context.Background(), auth.Principal{KeyID: "key-crm", Name: "crm", Role: auth.RoleCRM})
	req := &customerv1.CreateCustomerRequest{Customer: account("Kessler Maschinenbau", "eu")}
	req.Customer.ExternalRefs = []*typev1.ExternalRef{{System: "salesforce", Id: "001KESSLER"}}

	// One process life: open, claim the key, create, die before Complete.
	life := func(key string) (*customerv1.Customer, int) {
		t.Helper()
		db, err := storage.Open(path, customer.Schema, storage.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		st := idempotency.NewStore(db, idempotency.Options{})
		released, err := st.ReleaseAbandoned()
		if err != nil {
			t.Fatal(err)
		}
		out, err := st.Begin(scope, key, hash)
		if err != nil {
			t.Fatal(err)
		}
		started, ok := out.(idempotency.Started)
		if !ok {
			t.Fatalf("begin: %#v", out)
		}
		srv := customer.NewServer(db, customer.Options{Now: func() time.Time { return fixedNow }})
		ctx := reqctx.WithIdempotency(principal, reqctx.Idempotency{Scope: scope, Key: key, Created: started.Resource})
		resp, err := srv.CreateCustomer(ctx, req)
		if err != nil {
			t.Fatalf("create with key %s: %v", key, err)
		}
		return resp.GetCustomer(), released
	}
	first, _ := life("k-1")
	again, released := life("k-1")
	if released != 1 {
		t.Errorf("released %d claims after the crash, want 1", released)
	}
	if again.GetId() != first.GetId() {
		t.Fatalf("the retry answered %s; the first attempt created %s", again.GetId(), first.GetId())
	}

	db, err := storage.Open(path, customer.Schema, storage.Options{NoSync: true, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	if err := db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket([]byte("customers")).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d accounts stored, want 1", n)
	}
}
