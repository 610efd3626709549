package webhooks

import (
	"context"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/reqctx"
)

// TestCreateSubscriptionKeyedRetryAfterLostAnswer covers a crash between
// the commit of a keyed CreateSubscription and the platform storing its
// answer. The retry after the restart answers with the subscription the
// first attempt created and a new signing secret (the first never reached
// the caller), instead of a second subscription that would deliver every
// event twice; the lost secret does not keep signing.
func TestCreateSubscriptionKeyedRetryAfterLostAnswer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "integration.db")
	const scope = "key_crm|" + integrationv1.SubscriptionService_CreateSubscription_FullMethodName
	hash := []byte("sha256 of the request")
	in := &integrationv1.Subscription{Url: "http://127.0.0.1:9/hooks", EventTypes: []string{"millrace.events.v1.OrderAccepted"}, Description: "erp"}

	type answer struct {
		sub    *integrationv1.Subscription
		secret string
	}
	// One process life: open, claim the key, create, die before Complete.
	life := func(key string, check func(d *Dispatcher)) (answer, int) {
		t.Helper()
		db := openStore(t, path)
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
		d := newDispatcher(t, db, testOptions())
		ctx := reqctx.WithIdempotency(context.Background(), reqctx.Idempotency{Scope: scope, Key: key, Created: started.Resource})
		sub, secret, err := d.CreateSubscription(ctx, in)
		if err != nil {
			t.Fatalf("create with key %s: %v", key, err)
		}
		if check != nil {
			check(d)
		}
		return answer{sub, secret}, released
	}

	first, _ := life("k-1", nil)
	var signing string
	again, released := life("k-1", func(d *Dispatcher) {
		subs, _, err := d.ListSubscriptions(context.Background(), 10, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(subs) != 1 {
			t.Fatalf("subscriptions = %d, want 1", len(subs))
		}
		if err := d.db.View(func(tx *bbolt.Tx) error {
			s, err := getSub(tx, subs[0].GetId())
			if err != nil {
				return err
			}
			cur, err := open(d.aead, s.pb.GetId(), s.secret)
			if err != nil {
				return err
			}
			signing = cur
			if s.prevSecret != nil {
				t.Error("the lost secret is kept as the previous secret; it must not sign")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
	if released != 1 {
		t.Errorf("released %d claims after the crash, want 1", released)
	}
	if again.sub.GetId() != first.sub.GetId() {
		t.Fatalf("the retry answered %s; the first attempt created %s", again.sub.GetId(), first.sub.GetId())
	}
	if again.secret == "" || again.secret == first.secret {
		t.Fatalf("the retry's secret %q: want a new one", again.secret)
	}
	if signing != again.secret {
		t.Fatal("the subscription does not sign with the secret the retry answered")
	}
}
