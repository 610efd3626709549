package edge_test

import (
	"context"
	"path/filepath"
	"testing"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/edge"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

// TestCreateApiKeyKeyedRetryAfterLostAnswer covers a crash between the
// commit of a keyed CreateApiKey and the platform storing its answer. The
// retry after the restart answers with the key the first attempt created
// and a new secret (the first never reached anyone), instead of making a
// second key; the lost secret no longer verifies.
func TestCreateApiKeyKeyedRetryAfterLostAnswer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "integration.db")
	const scope = "key_admin|" + integrationv1.ApiKeyService_CreateApiKey_FullMethodName
	hash := []byte("sha256 of the request")
	req := &integrationv1.CreateApiKeyRequest{ApiKey: &integrationv1.ApiKey{DisplayName: "erp loader", Role: auth.RoleERP}}

	// One process life: open, claim the key, create, die before Complete.
	life := func(key string) (*integrationv1.CreateApiKeyResponse, *auth.KeyStore, func(), int) {
		t.Helper()
		db, err := storage.Open(path, edge.Schema, storage.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
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
		keys := auth.NewKeyStore(db)
		srv := &edge.APIKeyServer{Keys: keys}
		ctx := reqctx.WithIdempotency(context.Background(), reqctx.Idempotency{Scope: scope, Key: key, Created: started.Resource})
		resp, err := srv.CreateApiKey(ctx, req)
		if err != nil {
			t.Fatalf("create with key %s: %v", key, err)
		}
		return resp, keys, func() { db.Close() }, released
	}

	first, _, closeFirst, _ := life("k-1")
	closeFirst()
	again, keys, closeAgain, released := life("k-1")
	defer closeAgain()
	if released != 1 {
		t.Errorf("released %d claims after the crash, want 1", released)
	}
	if again.GetApiKey().GetId() != first.GetApiKey().GetId() {
		t.Fatalf("the retry answered key %s; the first attempt created %s", again.GetApiKey().GetId(), first.GetApiKey().GetId())
	}
	if again.GetSecret() == "" || again.GetSecret() == first.GetSecret() {
		t.Fatalf("the retry's secret %q: want a new one", again.GetSecret())
	}
	ctx := context.Background()
	if p, err := keys.Verify(ctx, again.GetSecret()); err != nil || p.KeyID != first.GetApiKey().GetId() || p.Role != auth.RoleERP {
		t.Fatalf("the reissued secret verifies as %+v, %v", p, err)
	}
	if _, err := keys.Verify(ctx, first.GetSecret()); err == nil {
		t.Fatal("the lost secret still verifies")
	}
	if n, _ := keys.Count(); n != 1 {
		t.Fatalf("keys = %d, want 1", n)
	}

	// A revoked key is not brought back by a late retry.
	if _, err := keys.Revoke(first.GetApiKey().GetId()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := keys.Reissue(first.GetApiKey().GetId()); err == nil {
		t.Fatal("a revoked key was given a new secret")
	}
	if _, _, err := keys.Reissue("key_unknown"); err == nil {
		t.Fatal("an unknown key was given a secret")
	}
}
