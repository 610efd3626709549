// Package auth authenticates callers by API key and authorizes every RPC
// against one permission table. Keys are stored hashed; a key has a role
// (crm, erp, ops, admin) and an optional region scope.
package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/millrace/millrace/internal/apierr"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
)

// Role is what a key may do.
type Role = integrationv1.Role

// The roles.
const (
	RoleCRM     = integrationv1.Role_ROLE_CRM
	RoleERP     = integrationv1.Role_ROLE_ERP
	RoleOps     = integrationv1.Role_ROLE_OPS
	RoleAdmin   = integrationv1.Role_ROLE_ADMIN
	RoleService = integrationv1.Role_ROLE_SERVICE
)

// RoleName returns the short lowercase name of a role ("crm", "erp"…), as
// error messages and logs name it.
func RoleName(r Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// ParseRole parses a short role name ("crm") or its enum name ("ROLE_CRM").
func ParseRole(s string) (Role, bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(s, "ROLE_") {
		s = "ROLE_" + s
	}
	v, ok := integrationv1.Role_value[s]
	if !ok || v == 0 {
		return 0, false
	}
	return Role(v), true
}

// Principal is the authenticated caller of a request.
type Principal struct {
	KeyID  string
	Name   string
	Role   Role
	Region string // empty: every region
	// RatePerSecond overrides the server's default rate limit when > 0.
	RatePerSecond int
}

// SeesRegion reports whether the principal may see data of region. Keys
// without a region scope see every region.
func (p Principal) SeesRegion(region string) bool {
	return p.Region == "" || p.Region == region
}

// IsAny reports whether the principal has one of roles.
func (p Principal) IsAny(roles ...Role) bool {
	for _, r := range roles {
		if p.Role == r {
			return true
		}
	}
	return false
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of ctx. Handlers behind the auth
// interceptor always have one, except for public methods.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// System is the principal of work Millrace does by itself: the saga,
// event consumers, re-validators.
var System = Principal{KeyID: "system", Name: "system", Role: RoleService}

// Require returns the caller the auth interceptor put into ctx, or
// UNAUTHENTICATED when there is none (a handler reached without the
// interceptor chain).
func Require(ctx context.Context) (Principal, error) {
	p, ok := FromContext(ctx)
	if !ok {
		return Principal{}, apierr.New(codes.Unauthenticated, apierr.ReasonUnauthenticated, "no authenticated caller", nil)
	}
	return p, nil
}
