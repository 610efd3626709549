package auth

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRequire(t *testing.T) {
	if _, err := Require(context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no principal: %v, want UNAUTHENTICATED", err)
	}
	want := Principal{KeyID: "key_1", Role: RoleCRM, Region: "eu"}
	got, err := Require(WithPrincipal(context.Background(), want))
	if err != nil || got != want {
		t.Fatalf("Require = %v, %v", got, err)
	}
}

func TestPermissionAllows(t *testing.T) {
	tests := []struct {
		name string
		perm Permission
		role Role
		want bool
	}{
		{"listed role", perm("customers.write", RoleCRM, RoleERP), RoleCRM, true},
		{"unlisted role", perm("customers.block", RoleERP), RoleCRM, false},
		{"admin implied", perm("customers.block", RoleERP), RoleAdmin, true},
		{"mesh-only excludes admin", perm("apikeys.verify", RoleService), RoleAdmin, false},
		{"public", Permission{Name: "health", Public: true}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.perm.Allows(tt.role); got != tt.want {
				t.Fatalf("Allows(%v) = %v, want %v", tt.role, got, tt.want)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	for in, want := range map[string]Role{"crm": RoleCRM, "ROLE_ERP": RoleERP, " ops ": RoleOps} {
		if got, ok := ParseRole(in); !ok || got != want {
			t.Errorf("ParseRole(%q) = %v %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", "root", "ROLE_UNSPECIFIED"} {
		if _, ok := ParseRole(bad); ok {
			t.Errorf("ParseRole(%q) accepted", bad)
		}
	}
}
