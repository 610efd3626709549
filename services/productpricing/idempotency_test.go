package productpricing

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/reqctx"
)

// TestCreatePriceListKeyedRetryAfterLostAnswer covers a crash between the
// commit of a keyed CreatePriceList and the platform storing its answer:
// the list is attached to the key's claim in its own commit, so the retry
// answers with it rather than being refused as overlapping itself.
func TestCreatePriceListKeyedRetryAfterLostAnswer(t *testing.T) {
	s, db, _ := newTestStore(t)
	st := idempotency.NewStore(db, idempotency.Options{})
	const scope = "key_erp|CreatePriceList"
	hash := []byte("sha256 of the request")
	list := &productpricingv1.PriceList{Name: "EU 2027", CurrencyCode: "EUR", ValidFrom: timestamppb.New(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC))}
	create := func() *productpricingv1.PriceList {
		t.Helper()
		out, err := st.Begin(scope, "pl-1", hash)
		if err != nil {
			t.Fatal(err)
		}
		started, ok := out.(idempotency.Started)
		if !ok {
			t.Fatalf("begin: %#v", out)
		}
		ctx := reqctx.WithIdempotency(context.Background(), reqctx.Idempotency{Scope: scope, Key: "pl-1", Created: started.Resource})
		pl, err := s.createPriceList(ctx, list)
		if err != nil {
			t.Fatal(err)
		}
		return pl // and the process dies before Complete
	}
	first := create()
	if _, err := st.ReleaseAbandoned(); err != nil {
		t.Fatal(err)
	}
	again := create()
	if again.GetId() != first.GetId() {
		t.Errorf("the retry answered %s; the first attempt created %s", again.GetId(), first.GetId())
	}
	if n := bucketKeys(t, db, bucketPriceLists); n != 1 {
		t.Errorf("%d lists stored, want 1", n)
	}
}
