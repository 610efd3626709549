package edge

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/reqctx"
)

// APIKeyServer implements the ApiKeyService over a key store.
type APIKeyServer struct {
	integrationv1.UnimplementedApiKeyServiceServer
	Keys *auth.KeyStore
}

// CreateApiKey implements integrationv1.ApiKeyServiceServer.
//
// Under an Idempotency-Key whose first attempt created a key but lost its
// answer in a crash, the retry answers with that key and a new secret: the
// first secret was never delivered, and a second key would be a credential
// nobody knows about.
func (s *APIKeyServer) CreateApiKey(ctx context.Context, req *integrationv1.CreateApiKeyRequest) (*integrationv1.CreateApiKeyResponse, error) {
	if id := reqctx.CreatedBefore(ctx); id != "" {
		k, secret, err := s.Keys.Reissue(id)
		if err != nil {
			return nil, fmt.Errorf("create api key: answer the retry with key %s: %w", id, err)
		}
		return &integrationv1.CreateApiKeyResponse{ApiKey: k, Secret: secret}, nil
	}
	k, secret, err := s.Keys.Create(ctx, req.GetApiKey())
	if err != nil {
		return nil, fmt.Errorf("create api key: %w", err)
	}
	return &integrationv1.CreateApiKeyResponse{ApiKey: k, Secret: secret}, nil
}

// ListApiKeys implements integrationv1.ApiKeyServiceServer.
func (s *APIKeyServer) ListApiKeys(_ context.Context, req *integrationv1.ListApiKeysRequest) (*integrationv1.ListApiKeysResponse, error) {
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	keys, next, err := s.Keys.List(req.GetPageToken(), size, req.GetIncludeRevoked())
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return &integrationv1.ListApiKeysResponse{ApiKeys: keys, NextPageToken: next}, nil
}

// GetApiKey implements integrationv1.ApiKeyServiceServer.
func (s *APIKeyServer) GetApiKey(_ context.Context, req *integrationv1.GetApiKeyRequest) (*integrationv1.GetApiKeyResponse, error) {
	k, err := s.Keys.Get(req.GetId())
	if err != nil {
		return nil, fmt.Errorf("get api key: %w", err)
	}
	if k == nil {
		return nil, apierr.NotFound("api key", req.GetId())
	}
	return &integrationv1.GetApiKeyResponse{ApiKey: k}, nil
}

// RevokeApiKey implements integrationv1.ApiKeyServiceServer.
func (s *APIKeyServer) RevokeApiKey(ctx context.Context, req *integrationv1.RevokeApiKeyRequest) (*integrationv1.RevokeApiKeyResponse, error) {
	if p, _ := auth.FromContext(ctx); p.KeyID == req.GetId() {
		return nil, apierr.FailedPrecondition("CANNOT_REVOKE_OWN_KEY", "a key cannot revoke itself; revoke it with another admin key", map[string]string{"id": req.GetId()})
	}
	k, err := s.Keys.Revoke(req.GetId())
	if err != nil {
		return nil, fmt.Errorf("revoke api key: %w", err)
	}
	if k == nil {
		return nil, apierr.NotFound("api key", req.GetId())
	}
	return &integrationv1.RevokeApiKeyResponse{ApiKey: k}, nil
}

// GetCallerIdentity implements integrationv1.ApiKeyServiceServer.
func (s *APIKeyServer) GetCallerIdentity(ctx context.Context, _ *integrationv1.GetCallerIdentityRequest) (*integrationv1.GetCallerIdentityResponse, error) {
	p, _ := auth.FromContext(ctx)
	return &integrationv1.GetCallerIdentityResponse{KeyId: p.KeyID, Role: p.Role, Region: p.Region, CorrelationId: reqctx.CorrelationID(ctx)}, nil
}

// VerifyApiKey implements integrationv1.ApiKeyServiceServer: services in a
// mesh call it to authenticate their callers.
func (s *APIKeyServer) VerifyApiKey(ctx context.Context, req *integrationv1.VerifyApiKeyRequest) (*integrationv1.VerifyApiKeyResponse, error) {
	p, err := s.Keys.Verify(ctx, req.GetSecret())
	if err != nil {
		return nil, apierr.New(codes.Unauthenticated, apierr.ReasonUnauthenticated, "the API key is invalid or revoked", nil)
	}
	return &integrationv1.VerifyApiKeyResponse{ApiKey: &integrationv1.ApiKey{
		Id: p.KeyID, DisplayName: p.Name, Role: p.Role, Region: p.Region, RateLimitPerSecond: int32(p.RatePerSecond),
	}}, nil
}
