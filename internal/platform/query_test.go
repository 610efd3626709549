package platform

import (
	"net/url"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
)

// TestStrictQuery checks that a query parameter naming no field of the
// request is refused with its name and the parameters the call takes,
// while proto names, JSON names and dotted paths are read as before.
func TestStrictQuery(t *testing.T) {
	p := &strictQuery{}
	tests := []struct {
		name    string
		query   string
		wantErr string
		check   func(*orderv1.ListOrdersRequest) bool
	}{
		{"JSON name", "customerId=cus_1&pageSize=5", "", func(r *orderv1.ListOrdersRequest) bool {
			return r.GetCustomerId() == "cus_1" && r.GetPageSize() == 5
		}},
		{"proto name", "external_ref_system=crm&external_ref_id=A-1", "", func(r *orderv1.ListOrdersRequest) bool {
			return r.GetExternalRefSystem() == "crm" && r.GetExternalRefId() == "A-1"
		}},
		{"timestamp", "createdAfter=2026-11-01T00:00:00Z", "", func(r *orderv1.ListOrdersRequest) bool {
			return r.GetCreatedAfter().AsTime().Month() == 11
		}},
		{"misspelt", "createdAftr=2026-11-01T00:00:00Z", `parsing field "createdAftr": unknown query parameter; this call takes createdAfter, createdBefore, customerId,`, nil},
		{"a field of a scalar", "pageSize.value=3", `parsing field "pageSize.value": unknown query parameter`, nil},
		{"cache buster", "_=1764400000", `parsing field "_": unknown query parameter`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			values, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			req := &orderv1.ListOrdersRequest{}
			err = p.Parse(req, values, utilities.NewDoubleArray(nil))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(req) {
				t.Errorf("request read as %v", req)
			}
		})
	}
}

// TestGatewayField checks how the gateway's decoding errors are turned
// into a field and a description.
func TestGatewayField(t *testing.T) {
	tests := []struct{ msg, field, desc string }{
		{`parsing field "created_after": parsing time "x": bad`, "created_after", `parsing time "x": bad`},
		{"type mismatch, parameter: id, error: bad value", "id", "bad value"},
		{"missing parameter id", "id", "is required in the path"},
		{"customerId: unexpected end of JSON input", "body", "customerId: unexpected end of JSON input"},
		{`parsing field "": odd`, "body", `parsing field "": odd`},
	}
	for _, tt := range tests {
		field, desc := gatewayField(tt.msg)
		if field != tt.field || desc != tt.desc {
			t.Errorf("gatewayField(%q) = %q, %q; want %q, %q", tt.msg, field, desc, tt.field, tt.desc)
		}
	}
}
