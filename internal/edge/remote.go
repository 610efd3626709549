package edge

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/auth"
)

// RemoteVerifier authenticates callers of a service running apart from the
// edge by asking the edge's VerifyApiKey, with the mesh token as its own
// credential. Verified keys are cached briefly so that a call costs one
// extra hop only once per key and half-minute.
type RemoteVerifier struct {
	client    integrationv1.ApiKeyServiceClient
	meshToken string

	mu    sync.Mutex
	cache map[string]remoteEntry
}

type remoteEntry struct {
	p       auth.Principal
	expires time.Time
}

// NewRemoteVerifier returns a verifier calling the edge over conn.
func NewRemoteVerifier(conn grpc.ClientConnInterface, meshToken string) *RemoteVerifier {
	return &RemoteVerifier{client: integrationv1.NewApiKeyServiceClient(conn), meshToken: meshToken, cache: map[string]remoteEntry{}}
}

// Verify implements platform.Verifier.
func (v *RemoteVerifier) Verify(ctx context.Context, secret string) (auth.Principal, error) {
	now := time.Now()
	v.mu.Lock()
	e, ok := v.cache[secret]
	v.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.p, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+v.meshToken)
	resp, err := v.client.VerifyApiKey(ctx, &integrationv1.VerifyApiKeyRequest{Secret: secret})
	if err != nil {
		if status.Code(err) == codes.Unauthenticated {
			return auth.Principal{}, auth.ErrInvalidKey
		}
		return auth.Principal{}, err
	}
	k := resp.GetApiKey()
	p := auth.Principal{KeyID: k.GetId(), Name: k.GetDisplayName(), Role: k.GetRole(), Region: k.GetRegion(), RatePerSecond: int(k.GetRateLimitPerSecond())}
	v.mu.Lock()
	if len(v.cache) > 10000 {
		v.cache = map[string]remoteEntry{}
	}
	v.cache[secret] = remoteEntry{p: p, expires: now.Add(30 * time.Second)}
	v.mu.Unlock()
	return p, nil
}
