package customer

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/money"
)

func TestHierarchyProblem(t *testing.T) {
	chain := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "cus_" + string(rune('a'+i))
		}
		return out
	}
	tests := []struct {
		name   string
		id     string
		chain  []string
		height int
		want   string // substring of the problem; "" for none
	}{
		{"a root", "cus_x", nil, 1, ""},
		{"under a root", "cus_x", chain(1), 1, ""},
		{"leaf at level 10", "cus_x", chain(9), 1, ""},
		{"leaf at level 11", "cus_x", chain(10), 1, "11 levels deep"},
		{"subtree reaching level 10", "cus_x", chain(7), 3, ""},
		{"subtree reaching level 11", "cus_x", chain(8), 3, "11 levels deep"},
		{"own parent", "cus_a", []string{"cus_a"}, 1, "cycle"},
		{"under its own descendant", "cus_c", chain(4), 2, "cycle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := hierarchyProblem(tt.id, tt.chain, tt.height)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("hierarchyProblem = %q, want %q", got, tt.want)
			}
		})
	}
}

func cust(id string, opts ...func(*customerv1.Customer)) *customerv1.Customer {
	c := &customerv1.Customer{Id: id, DisplayName: id, Region: "eu", Status: customerv1.CustomerStatus_CUSTOMER_STATUS_ACTIVE}
	for _, o := range opts {
		o(c)
	}
	return c
}

func withLimit(cur, amount string) func(*customerv1.Customer) {
	return func(c *customerv1.Customer) { c.CreditLimit = &typev1.Money{CurrencyCode: cur, Amount: amount} }
}

func creditBlocked(c *customerv1.Customer) { c.CreditBlocked = true }

func TestResolveCredit(t *testing.T) {
	tests := []struct {
		name        string
		chain       []*customerv1.Customer
		wantAccount string
		wantBlocked bool
	}{
		{"own limit first", []*customerv1.Customer{cust("c", withLimit("EUR", "5")), cust("p", withLimit("EUR", "9"))}, "c", false},
		{"nearest ancestor's limit", []*customerv1.Customer{cust("c"), cust("p"), cust("g", withLimit("EUR", "9")), cust("r", withLimit("EUR", "1"))}, "g", false},
		{"no limit anywhere", []*customerv1.Customer{cust("c"), cust("p")}, "", false},
		{"blocked on the account", []*customerv1.Customer{cust("c", creditBlocked), cust("p", withLimit("EUR", "9"))}, "p", true},
		{"blocked on the way up", []*customerv1.Customer{cust("c"), cust("m", creditBlocked), cust("p", withLimit("EUR", "9"))}, "p", true},
		{"blocked on the credit account", []*customerv1.Customer{cust("c"), cust("p", withLimit("EUR", "9"), creditBlocked)}, "p", true},
		{"a block above the credit account does not apply", []*customerv1.Customer{cust("c", withLimit("EUR", "5")), cust("p", creditBlocked)}, "c", false},
		{"zero limit is a limit", []*customerv1.Customer{cust("c", withLimit("EUR", "0")), cust("p", withLimit("EUR", "9"))}, "c", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acct, blocked := resolveCredit(tt.chain)
			if accountID(acct) != tt.wantAccount || blocked != tt.wantBlocked {
				t.Errorf("resolveCredit = %q %v, want %q %v", accountID(acct), blocked, tt.wantAccount, tt.wantBlocked)
			}
		})
	}
}

func TestCreditDecision(t *testing.T) {
	group := cust("p", withLimit("EUR", "1000.00"))
	state := func(c *customerv1.Customer, account *customerv1.Customer, blocked bool, exposure string) *creditState {
		return &creditState{customer: c, account: account, blocked: blocked, exposure: money.MustParse(exposure)}
	}
	blockedCustomer := cust("c", func(c *customerv1.Customer) { c.Status = customerv1.CustomerStatus_CUSTOMER_STATUS_BLOCKED })
	approved, declined := customerv1.CreditDecision_CREDIT_DECISION_APPROVED, customerv1.CreditDecision_CREDIT_DECISION_DECLINED
	tests := []struct {
		name         string
		s            *creditState
		amount       string
		currency     string
		want         customerv1.CreditDecision
		reason       string
		wantErrField string
		available    string
	}{
		{"fits", state(cust("c"), group, false, "600"), "400", "EUR", approved, "", "", "400.00"},
		{"one cent over", state(cust("c"), group, false, "600"), "400.01", "EUR", declined, DeclineCreditLimitExceeded, "", "400.00"},
		{"over-exposed group", state(cust("c"), group, false, "1200"), "1", "EUR", declined, DeclineCreditLimitExceeded, "", "-200.00"},
		{"no limit up the tree", state(cust("c"), nil, false, "0"), "1", "EUR", declined, DeclineNoCreditLimit, "", ""},
		{"credit blocked", state(cust("c"), group, true, "0"), "1", "EUR", declined, DeclineCreditBlocked, "", "1000.00"},
		{"blocked customer before credit block", state(blockedCustomer, group, true, "0"), "1", "EUR", declined, DeclineCustomerBlocked, "", "1000.00"},
		{"credit block before a missing limit", state(cust("c"), nil, true, "0"), "1", "EUR", declined, DeclineCreditBlocked, "", ""},
		{"currency of another limit", state(cust("c"), group, false, "0"), "1", "USD", 0, "", "amount.currency_code", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason, err := tt.s.decide(money.MustParse(tt.amount), tt.currency)
			if tt.wantErrField != "" {
				var inv *invalidError
				if !errors.As(err, &inv) || inv.Violations[0].Field != tt.wantErrField {
					t.Fatalf("err %v, want invalid %s", err, tt.wantErrField)
				}
				return
			}
			if err != nil || got != tt.want || reason != tt.reason {
				t.Fatalf("decide = %v %q %v, want %v %q", got, reason, err, tt.want, tt.reason)
			}
			if got := tt.s.position().GetAvailable().GetAmount(); got != tt.available {
				t.Errorf("available %q, want %q", got, tt.available)
			}
		})
	}
}

func TestCheckOwnership(t *testing.T) {
	stored := cust("c", withLimit("EUR", "1000.00"), func(c *customerv1.Customer) { c.PaymentTerms = "NET30" })
	change := func(f func(*customerv1.Customer)) *customerv1.Customer {
		c := proto.Clone(stored).(*customerv1.Customer)
		f(c)
		return c
	}
	crm, erp := auth.Principal{Role: auth.RoleCRM}, auth.Principal{Role: auth.RoleERP}
	tests := []struct {
		name      string
		p         auth.Principal
		old, next *customerv1.Customer
		wantField string
	}{
		{"crm renames", crm, stored, change(func(c *customerv1.Customer) { c.DisplayName = "new" }), ""},
		{"crm sends the stored limit back", crm, stored, change(func(*customerv1.Customer) {}), ""},
		{"crm raises the limit", crm, stored, change(func(c *customerv1.Customer) { c.CreditLimit.Amount = "2000.00" }), "customer.credit_limit"},
		{"crm removes the limit", crm, stored, change(func(c *customerv1.Customer) { c.CreditLimit = nil }), "customer.credit_limit"},
		{"crm changes terms", crm, stored, change(func(c *customerv1.Customer) { c.PaymentTerms = "NET60" }), "customer.payment_terms"},
		{"crm blocks credit", crm, stored, change(func(c *customerv1.Customer) { c.CreditBlocked = true }), "customer.credit_blocked"},
		{"crm creates with a limit", crm, nil, cust("n", withLimit("EUR", "1")), "customer.credit_limit"},
		{"crm creates without", crm, nil, cust("n"), ""},
		{"ops is not an owner", auth.Principal{Role: auth.RoleOps}, stored, change(func(c *customerv1.Customer) { c.PaymentTerms = "NET60" }), "customer.payment_terms"},
		{"erp raises the limit", erp, stored, change(func(c *customerv1.Customer) { c.CreditLimit.Amount = "2000.00" }), ""},
		{"admin sets everything", auth.Principal{Role: auth.RoleAdmin}, nil, cust("n", withLimit("EUR", "1"), creditBlocked), ""},
		{"the system sets everything", auth.System, stored, change(func(c *customerv1.Customer) { c.CreditBlocked = true }), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkOwnership(tt.p, "customer", tt.old, tt.next)
			var owned *fieldOwnedError
			switch {
			case tt.wantField == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.wantField != "" && (!errors.As(err, &owned) || owned.Field != tt.wantField || owned.Owner != "erp"):
				t.Errorf("err %v, want %s owned by erp", err, tt.wantField)
			}
		})
	}
}

func TestValidateCustomer(t *testing.T) {
	valid := func(f func(*customerv1.Customer)) *customerv1.Customer {
		c := &customerv1.Customer{DisplayName: "Acme", Region: "eu", Tier: "gold", Email: "a@b.example", CurrencyCode: "EUR",
			CreditLimit: &typev1.Money{CurrencyCode: "EUR", Amount: "10.50"}, PaymentTerms: "NET30",
			ExternalRefs:   []*typev1.ExternalRef{{System: "salesforce", Id: "001"}, {System: "sap", Id: "42"}},
			BillingAddress: &typev1.Address{Lines: []string{"Main St 1"}, City: "Berlin", CountryCode: "DE"}}
		f(c)
		return c
	}
	tests := []struct {
		name  string
		c     *customerv1.Customer
		field string // "" for valid
	}{
		{"valid", valid(func(*customerv1.Customer) {}), ""},
		{"multibyte name at the bound", valid(func(c *customerv1.Customer) { c.DisplayName = strings.Repeat("ü", 200) }), ""},
		{"name too long", valid(func(c *customerv1.Customer) { c.DisplayName = strings.Repeat("a", 201) }), "customer.display_name"},
		{"no name", valid(func(c *customerv1.Customer) { c.DisplayName = "" }), "customer.display_name"},
		{"upper-case region", valid(func(c *customerv1.Customer) { c.Region = "EU" }), "customer.region"},
		{"bad tier", valid(func(c *customerv1.Customer) { c.Tier = "Gold Plus" }), "customer.tier"},
		{"bad email", valid(func(c *customerv1.Customer) { c.Email = "nobody" }), "customer.email"},
		{"long phone", valid(func(c *customerv1.Customer) { c.Phone = strings.Repeat("1", 41) }), "customer.phone"},
		{"unknown currency", valid(func(c *customerv1.Customer) { c.CurrencyCode = "XYZ" }), "customer.currency_code"},
		{"limit currency missing", valid(func(c *customerv1.Customer) { c.CreditLimit.CurrencyCode = "" }), "customer.credit_limit.currency_code"},
		{"limit with exponent", valid(func(c *customerv1.Customer) { c.CreditLimit.Amount = "1e6" }), "customer.credit_limit.amount"},
		{"limit of 16 integer digits", valid(func(c *customerv1.Customer) { c.CreditLimit.Amount = "1234567890123456" }), "customer.credit_limit.amount"},
		{"limit with trailing zeros beyond cents", valid(func(c *customerv1.Customer) { c.CreditLimit.Amount = "10.500" }), ""},
		{"limit in mills", valid(func(c *customerv1.Customer) { c.CreditLimit.Amount = "10.505" }), "customer.credit_limit.amount"},
		{"dinar in mills", valid(func(c *customerv1.Customer) { c.CreditLimit = &typev1.Money{CurrencyCode: "KWD", Amount: "10.505"} }), ""},
		{"negative limit", valid(func(c *customerv1.Customer) { c.CreditLimit.Amount = "-10" }), "customer.credit_limit.amount"},
		{"bad terms", valid(func(c *customerv1.Customer) { c.PaymentTerms = "net 30" }), "customer.payment_terms"},
		{"two refs of one system", valid(func(c *customerv1.Customer) { c.ExternalRefs[1].System = "salesforce" }), "customer.external_refs[1].system"},
		{"empty ref id", valid(func(c *customerv1.Customer) { c.ExternalRefs[0].Id = "" }), "customer.external_refs[0].id"},
		{"eleven refs", valid(func(c *customerv1.Customer) {
			c.ExternalRefs = nil
			for i := range 11 {
				c.ExternalRefs = append(c.ExternalRefs, &typev1.ExternalRef{System: "sys" + string(rune('a'+i)), Id: "1"})
			}
		}), "customer.external_refs"},
		{"five address lines", valid(func(c *customerv1.Customer) { c.BillingAddress.Lines = []string{"1", "2", "3", "4", "5"} }), "customer.billing_address.lines"},
		{"empty address line", valid(func(c *customerv1.Customer) { c.BillingAddress.Lines = []string{""} }), "customer.billing_address.lines[0]"},
		{"country name", valid(func(c *customerv1.Customer) { c.BillingAddress.CountryCode = "DEU" }), "customer.billing_address.country_code"},
		{"invalid UTF-8", valid(func(c *customerv1.Customer) { c.LegalName = "\xff" }), "customer.legal_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateCustomer("customer", tt.c)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var inv *invalidError
			if !errors.As(err, &inv) {
				t.Fatalf("err %v, want invalid %s", err, tt.field)
			}
			var fields []string
			for _, v := range inv.Violations {
				fields = append(fields, v.Field)
			}
			if !slices.Contains(fields, tt.field) {
				t.Errorf("violations %v, want %s", fields, tt.field)
			}
		})
	}
}

func TestMaskPaths(t *testing.T) {
	tests := []struct {
		name    string
		mask    []string
		want    []string
		wantErr string
	}{
		{"one field", []string{"display_name"}, []string{"display_name"}, ""},
		{"camel case from JSON", []string{"creditLimit", "billingAddress"}, []string{"billing_address", "credit_limit"}, ""},
		{"duplicates", []string{"phone", "phone"}, []string{"phone"}, ""},
		{"everything", []string{"*"}, slices.Sorted(slices.Values(writableFields)), ""},
		{"empty", nil, nil, "at least one"},
		{"unknown", []string{"colour"}, nil, "unknown field"},
		{"output only", []string{"create_time"}, nil, "output only"},
		{"etag is the precondition, not a field", []string{"etag", "phone"}, []string{"phone"}, ""},
		{"only the etag", []string{"etag"}, nil, "at least one"},
		{"status", []string{"status"}, nil, "BlockCustomer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := maskPaths(tt.mask)
			if tt.wantErr != "" {
				var inv *invalidError
				if !errors.As(err, &inv) || inv.Violations[0].Field != "update_mask" || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want update_mask: %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("maskPaths = %v %v, want %v", got, err, tt.want)
			}
		})
	}
}

func TestPrepareUpsert(t *testing.T) {
	sf := &typev1.ExternalRef{System: "salesforce", Id: "001"}
	tests := []struct {
		name      string
		req       *customerv1.UpsertCustomerByExternalRefRequest
		wantRefs  []string
		wantField string
	}{
		{"ref added to the account", &customerv1.UpsertCustomerByExternalRefRequest{ExternalRef: sf,
			Customer: &customerv1.Customer{DisplayName: "A", Region: "eu", ExternalRefs: []*typev1.ExternalRef{{System: "sap", Id: "9"}}}},
			[]string{"sap/9", "salesforce/001"}, ""},
		{"ref already on the account", &customerv1.UpsertCustomerByExternalRefRequest{ExternalRef: sf,
			Customer: &customerv1.Customer{DisplayName: "A", Region: "eu", ExternalRefs: []*typev1.ExternalRef{{System: "salesforce", Id: "001"}}}},
			[]string{"salesforce/001"}, ""},
		{"account names another id", &customerv1.UpsertCustomerByExternalRefRequest{ExternalRef: sf,
			Customer: &customerv1.Customer{DisplayName: "A", Region: "eu", ExternalRefs: []*typev1.ExternalRef{{System: "salesforce", Id: "002"}}}},
			nil, "items[4].customer.external_refs[0].id"},
		{"no customer", &customerv1.UpsertCustomerByExternalRefRequest{ExternalRef: sf}, nil, "items[4].customer"},
		{"bad ref", &customerv1.UpsertCustomerByExternalRefRequest{ExternalRef: &typev1.ExternalRef{System: "x"},
			Customer: &customerv1.Customer{DisplayName: "A", Region: "eu"}}, nil, "items[4].external_ref.id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := prepareUpsert("items[4].", tt.req)
			if tt.wantField != "" {
				var inv *invalidError
				if !errors.As(err, &inv) || !slices.ContainsFunc(inv.Violations, func(v fieldViolation) bool { return v.Field == tt.wantField }) {
					t.Fatalf("err %v, want a violation of %s", err, tt.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var refs []string
			for _, r := range in.c.GetExternalRefs() {
				refs = append(refs, r.GetSystem()+"/"+r.GetId())
			}
			if !slices.Equal(refs, tt.wantRefs) {
				t.Errorf("refs %v, want %v", refs, tt.wantRefs)
			}
			if len(tt.req.GetCustomer().GetExternalRefs()) != 1 {
				t.Error("prepareUpsert changed the request")
			}
		})
	}
}

func TestMergeRefs(t *testing.T) {
	r := func(s, id string) *typev1.ExternalRef { return &typev1.ExternalRef{System: s, Id: id} }
	got := mergeRefs([]*typev1.ExternalRef{r("sap", "1"), r("salesforce", "A")}, []*typev1.ExternalRef{r("salesforce", "B"), r("hubspot", "H")})
	var s []string
	for _, x := range got {
		s = append(s, x.GetSystem()+"/"+x.GetId())
	}
	if want := []string{"sap/1", "salesforce/B", "hubspot/H"}; !slices.Equal(s, want) {
		t.Errorf("mergeRefs = %v, want %v", s, want)
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name string
		in   *typev1.Money
		want string
	}{
		{"euro to cents", &typev1.Money{CurrencyCode: "EUR", Amount: "1000"}, "1000.00"},
		{"trailing zeros dropped to cents", &typev1.Money{CurrencyCode: "EUR", Amount: "1000.5000"}, "1000.50"},
		{"yen has no minor unit", &typev1.Money{CurrencyCode: "JPY", Amount: "1000"}, "1000"},
		{"dinar has three", &typev1.Money{CurrencyCode: "BHD", Amount: "1.5"}, "1.500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &customerv1.Customer{CreditLimit: tt.in, BillingAddress: &typev1.Address{}}
			normalize(c)
			if c.GetCreditLimit().GetAmount() != tt.want || c.BillingAddress != nil {
				t.Errorf("normalized %v", c)
			}
		})
	}
}

func TestChangedFields(t *testing.T) {
	old := cust("c", withLimit("EUR", "1.00"))
	next := proto.Clone(old).(*customerv1.Customer)
	if got := changedFields(old, next); len(got) != 0 {
		t.Errorf("a copy changed %v", got)
	}
	next.Phone, next.CreditLimit.Amount, next.Status = "+1", "2.00", customerv1.CustomerStatus_CUSTOMER_STATUS_BLOCKED
	if got, want := changedFields(old, next), []string{"phone", "credit_limit", "status"}; !slices.Equal(got, want) {
		t.Errorf("changedFields = %v, want %v", got, want)
	}
}

func TestPageToken(t *testing.T) {
	req := &customerv1.ListCustomersRequest{Region: "eu"}
	tok := encodePageToken(pageToken{After: "cus_1", Filter: listFilterHash(req)})
	if after, err := decodePageToken(tok, listFilterHash(req)); err != nil || after != "cus_1" {
		t.Fatalf("round trip: %q %v", after, err)
	}
	for _, tt := range []struct{ name, token, filter string }{
		{"other filters", tok, listFilterHash(&customerv1.ListCustomersRequest{Region: "na"})},
		{"not base64", "%%%", listFilterHash(req)},
		{"not JSON", "bm90IGpzb24", listFilterHash(req)},
		{"no position", encodePageToken(pageToken{Filter: listFilterHash(req)}), listFilterHash(req)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var inv *invalidError
			if _, err := decodePageToken(tt.token, tt.filter); !errors.As(err, &inv) || inv.Violations[0].Field != "page_token" {
				t.Errorf("err %v, want invalid page_token", err)
			}
		})
	}
}
