package platform

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/reqctx"
)

// Verifier resolves a presented secret to its principal: the local key
// store in the all-in-one server, the edge's VerifyApiKey RPC in a mesh.
type Verifier interface {
	Verify(ctx context.Context, secret string) (auth.Principal, error)
}

// Authenticator authenticates a call by its bearer key and authorizes it
// against the permission table.
type Authenticator struct {
	Keys Verifier
	// MeshToken is the shared secret Millrace services present to each
	// other; it authenticates as auth.System. Empty disables it.
	MeshToken string
}

// Authorize authenticates and authorizes a call to fullMethod and returns
// ctx carrying the principal. A method missing from the permission table is
// refused: permissions fail closed.
func (a *Authenticator) Authorize(ctx context.Context, fullMethod string) (context.Context, auth.Principal, error) {
	perm, ok := auth.Lookup(fullMethod)
	if !ok {
		return ctx, auth.Principal{}, apierr.PermissionDenied(apierr.ReasonPermissionDenied,
			fmt.Sprintf("method %s has no declared permission", fullMethod), map[string]string{"method": fullMethod})
	}
	if perm.Public {
		return ctx, auth.Principal{}, nil
	}
	secret, err := bearer(incomingMD(ctx, MDAuthorization))
	if err != nil {
		return ctx, auth.Principal{}, err
	}
	var p auth.Principal
	if a.MeshToken != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(a.MeshToken)) == 1 {
		p = auth.System
	} else {
		p, err = a.Keys.Verify(ctx, secret)
		if err != nil {
			if errors.Is(err, auth.ErrInvalidKey) {
				return ctx, auth.Principal{}, apierr.New(codes.Unauthenticated, apierr.ReasonUnauthenticated, "the API key is invalid or revoked", nil)
			}
			if apierr.IsStatus(err) {
				return ctx, auth.Principal{}, err
			}
			return ctx, auth.Principal{}, apierr.Unavailable("key verification", err)
		}
	}
	if !perm.Allows(p.Role) {
		return ctx, p, apierr.PermissionDenied(apierr.ReasonPermissionDenied,
			fmt.Sprintf("the %s role may not call %s (it needs the %s permission)", auth.RoleName(p.Role), methodName(fullMethod), perm.Name),
			map[string]string{"permission": perm.Name, "role": auth.RoleName(p.Role)})
	}
	ctx = auth.WithPrincipal(ctx, p)
	ctx = reqctx.WithActor(ctx, p.KeyID)
	return ctx, p, nil
}

func bearer(h string) (string, error) {
	if h == "" {
		return "", apierr.New(codes.Unauthenticated, apierr.ReasonUnauthenticated,
			"missing credentials: send an API key as \"Authorization: Bearer <key>\"", nil)
	}
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" || len(secret) > 256 {
		return "", apierr.New(codes.Unauthenticated, apierr.ReasonUnauthenticated,
			"malformed Authorization header: expected \"Bearer <key>\"", nil)
	}
	return strings.TrimSpace(secret), nil
}

func methodName(fullMethod string) string {
	if i := strings.LastIndexByte(fullMethod, '/'); i >= 0 {
		return fullMethod[i+1:]
	}
	return fullMethod
}

// retryAfterSeconds rounds a wait up to whole seconds, as Retry-After needs.
func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}
