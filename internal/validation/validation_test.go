package validation

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

func TestUpdateValidationFollowsTheMask(t *testing.T) {
	tests := []struct {
		name     string
		customer *customerv1.Customer
		paths    []string
		want     []string // violated fields; nil means valid
	}{
		{"one field named, others empty", &customerv1.Customer{Id: "cus_1", Email: "ap@acme.example"}, []string{"email"}, nil},
		{"the named field is checked", &customerv1.Customer{Id: "cus_1", Email: "not-an-address"}, []string{"email"}, []string{"customer.email"}},
		{"camelCase path", &customerv1.Customer{Id: "cus_1", DisplayName: ""}, []string{"displayName"}, []string{"customer.display_name"}},
		{"nested path checks only the leaf", &customerv1.Customer{Id: "cus_1", BillingAddress: &typev1.Address{CountryCode: "germany"}}, []string{"billing_address.city"}, nil},
		{"nested path leaf invalid", &customerv1.Customer{Id: "cus_1", BillingAddress: &typev1.Address{CountryCode: "germany"}}, []string{"billing_address.country_code"}, []string{"customer.billing_address.country_code"}},
		{"whole message named", &customerv1.Customer{Id: "cus_1", BillingAddress: &typev1.Address{CountryCode: "germany"}}, []string{"billing_address"}, []string{"customer.billing_address.country_code"}},
		{"star validates everything", &customerv1.Customer{Id: "cus_1"}, []string{"*"}, []string{"customer.display_name", "customer.region"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(&customerv1.UpdateCustomerRequest{Customer: tt.customer, UpdateMask: &fieldmaskpb.FieldMask{Paths: tt.paths}})
			got := fieldsOf(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("violations %v, want %v (err %v)", got, tt.want, err)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("violations %v, want %v", got, tt.want)
				}
			}
		})
	}
	// Without a mask the request itself is invalid.
	if got := fieldsOf(t, Check(&customerv1.UpdateCustomerRequest{Customer: &customerv1.Customer{Id: "x"}})); len(got) == 0 || got[len(got)-1] != "update_mask" {
		t.Fatalf("missing mask: %v", got)
	}
}

func TestCheckAtPrefixesBatchItems(t *testing.T) {
	err := CheckAt("items[3]", &customerv1.UpsertCustomerByExternalRefRequest{
		ExternalRef: &typev1.ExternalRef{System: "salesforce", Id: "1"},
		Customer:    &customerv1.Customer{DisplayName: "x", Region: "eu", Email: "nope"},
	})
	if got := fieldsOf(t, err); len(got) != 1 || got[0] != "items[3].customer.email" {
		t.Fatalf("violations %v", got)
	}
}
