package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
)

// These tests drive a whole node the way a CRM does: JSON in lowerCamelCase
// over HTTP to the REST gateway, which dials the gRPC server, so every
// interceptor (auth, validation, idempotency) runs as in production. Bodies
// are written out as a CRM would send them rather than marshalled from the
// generated types, so the JSON contract itself is under test.

// restClient calls the REST edge of a node.
type restClient struct {
	base string
	http *http.Client
}

func newRESTClient(inst *Instance) *restClient {
	return &restClient{base: "http://" + inst.HTTPAddr, http: &http.Client{Timeout: 30 * time.Second}}
}

// restResp is one HTTP response, body read.
type restResp struct {
	method, path string
	code         int
	header       http.Header
	body         []byte
}

// do sends body (empty for none) with key as the bearer token (empty for
// none) and extra headers given as name, value pairs.
func (c *restClient) do(t *testing.T, method, path, key, body string, headers ...string) restResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return restResp{method: method, path: path, code: resp.StatusCode, header: resp.Header, body: b}
}

// ok fails the test unless the call succeeded, and decodes the body into
// out (when not nil) with protojson, rejecting unknown fields.
func (r restResp) ok(t *testing.T, out proto.Message) {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d, want 200: %s", r.method, r.path, r.code, r.body)
	}
	if out != nil {
		if err := protojson.Unmarshal(r.body, out); err != nil {
			t.Fatalf("%s %s: decode %T: %v\n%s", r.method, r.path, out, err, r.body)
		}
	}
}

// fails fails the test unless the call failed with the HTTP status and
// ErrorInfo reason given, and returns the decoded google.rpc.Status.
func (r restResp) fails(t *testing.T, code int, reason string) restError {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s %s: HTTP %d, want %d: %s", r.method, r.path, r.code, code, r.body)
	}
	var e restError
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("%s %s: error body is not a google.rpc.Status: %v\n%s", r.method, r.path, err, r.body)
	}
	if got := e.reason(); got != reason {
		t.Fatalf("%s %s: reason %q, want %q: %s", r.method, r.path, got, reason, r.body)
	}
	return e
}

// restError is google.rpc.Status as JSON, with the details Millrace sends:
// ErrorInfo and BadRequest.
type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string            `json:"@type"`
		Reason          string            `json:"reason"`
		Domain          string            `json:"domain"`
		Metadata        map[string]string `json:"metadata"`
		FieldViolations []struct {
			Field       string `json:"field"`
			Description string `json:"description"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

func (e restError) reason() string {
	for _, d := range e.Details {
		if strings.HasSuffix(d.Type, "/google.rpc.ErrorInfo") {
			return d.Reason
		}
	}
	return ""
}

func (e restError) meta() map[string]string {
	for _, d := range e.Details {
		if strings.HasSuffix(d.Type, "/google.rpc.ErrorInfo") {
			return d.Metadata
		}
	}
	return nil
}

// fields lists the paths of the BadRequest field violations.
func (e restError) fields() []string {
	var out []string
	for _, d := range e.Details {
		for _, v := range d.FieldViolations {
			out = append(out, v.Field)
		}
	}
	return out
}

// wantField fails unless the error names field among its violations.
func (e restError) wantField(t *testing.T, field string) {
	t.Helper()
	if !slices.Contains(e.fields(), field) {
		t.Fatalf("field violations %q do not name %q (message %q)", e.fields(), field, e.Message)
	}
}

// apiKeys are the secrets of one key per role, made by the admin.
type apiKeys struct {
	admin, crm, erp, ops, crmEU string
}

// createAPIKeys makes a crm, an erp, an ops and an eu-scoped crm key through
// POST /v1/apiKeys with the bootstrap admin key, checking each as it goes.
func createAPIKeys(t *testing.T, c *restClient) apiKeys {
	t.Helper()
	k := apiKeys{admin: testAdminKey}
	tests := []struct {
		name     string
		body     string
		wantRole integrationv1.Role
		wantReg  string
		secret   *string
	}{
		{"crm", `{"displayName":"salesforce-prod","role":"ROLE_CRM"}`, integrationv1.Role_ROLE_CRM, "", &k.crm},
		{"erp", `{"displayName":"sap-prod","role":"ROLE_ERP"}`, integrationv1.Role_ROLE_ERP, "", &k.erp},
		{"ops", `{"displayName":"ops-console","role":"ROLE_OPS"}`, integrationv1.Role_ROLE_OPS, "", &k.ops},
		{"crm scoped to eu", `{"displayName":"dynamics-eu","role":"ROLE_CRM","region":"eu"}`, integrationv1.Role_ROLE_CRM, "eu", &k.crmEU},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got integrationv1.CreateApiKeyResponse
			c.do(t, "POST", "/v1/apiKeys", k.admin, tt.body).ok(t, &got)
			if got.GetSecret() == "" || got.GetApiKey().GetRole() != tt.wantRole || got.GetApiKey().GetRegion() != tt.wantReg {
				t.Fatalf("created %v", &got)
			}
			var who integrationv1.GetCallerIdentityResponse
			c.do(t, "GET", "/v1/callerIdentity", got.GetSecret(), "").ok(t, &who)
			*tt.secret = got.GetSecret()
		})
	}
	if k.crm == "" || k.erp == "" || k.ops == "" || k.crmEU == "" {
		t.FailNow()
	}
	t.Run("only admins create keys", func(t *testing.T) {
		c.do(t, "POST", "/v1/apiKeys", k.crm, `{"displayName":"sneaky","role":"ROLE_ADMIN"}`).fails(t, 403, "PERMISSION_DENIED")
	})
	return k
}

// customerREST wraps the customer calls the tests repeat.
type customerREST struct {
	*restClient
	keys apiKeys
}

func (c customerREST) get(t *testing.T, id string) *customerv1.Customer {
	t.Helper()
	out := &customerv1.Customer{}
	c.do(t, "GET", "/v1/customers/"+id, c.keys.admin, "").ok(t, out)
	return out
}

func (c customerREST) create(t *testing.T, key, body string) *customerv1.Customer {
	t.Helper()
	out := &customerv1.Customer{}
	c.do(t, "POST", "/v1/customers", key, body).ok(t, out)
	return out
}

// list pages through every customer matching query with key and returns
// them in order, checking that no page repeats an account.
func (c customerREST) list(t *testing.T, key string, query url.Values, pageSize int) []*customerv1.Customer {
	t.Helper()
	var all []*customerv1.Customer
	seen := map[string]bool{}
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("pageSize", fmt.Sprint(pageSize))
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("list does not end")
		}
		var page customerv1.ListCustomersResponse
		c.do(t, "GET", "/v1/customers?"+q.Encode(), key, "").ok(t, &page)
		if len(page.GetCustomers()) > pageSize {
			t.Fatalf("page of %d, page size %d", len(page.GetCustomers()), pageSize)
		}
		for _, cu := range page.GetCustomers() {
			if seen[cu.GetId()] {
				t.Fatalf("%s listed twice", cu.GetId())
			}
			seen[cu.GetId()] = true
			all = append(all, cu)
		}
		if page.GetNextPageToken() == "" {
			return all
		}
		q.Set("pageToken", page.GetNextPageToken())
	}
}

// count is the number of customers stored, as the admin sees them.
func (c customerREST) count(t *testing.T) int {
	t.Helper()
	return len(c.list(t, c.keys.admin, nil, 500))
}

// byRef lists the customers holding an external reference.
func (c customerREST) byRef(t *testing.T, system, id string) []*customerv1.Customer {
	t.Helper()
	return c.list(t, c.keys.admin, url.Values{"externalRefSystem": {system}, "externalRefId": {id}}, 10)
}

func customerIDs(cs []*customerv1.Customer) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.GetId()
	}
	return out
}

func TestRESTCustomers(t *testing.T) {
	inst := startTestNode(t, "--rate-limit", "0")
	rc := newRESTClient(inst)
	var keys apiKeys
	if !t.Run("api keys", func(t *testing.T) { keys = createAPIKeys(t, rc) }) {
		t.FailNow()
	}
	c := customerREST{restClient: rc, keys: keys}

	// Accounts later steps build on.
	var acme, zenith *customerv1.Customer

	t.Run("create", func(t *testing.T) {
		tests := []struct {
			name       string
			key        string
			body       string
			wantCode   int
			wantReason string
			check      func(t *testing.T, got *customerv1.Customer)
		}{
			{
				name: "crm creates an eu account",
				key:  keys.crm,
				body: `{"displayName":"Acme GmbH","legalName":"Acme Industrietechnik GmbH","region":"eu","currencyCode":"EUR",
					"email":"buyer@acme.example","billingAddress":{"lines":["Hauptstr. 1"],"city":"Berlin","postalCode":"10115","countryCode":"DE"},
					"externalRefs":[{"system":"salesforce","id":"001A000001"}],"status":"CUSTOMER_STATUS_BLOCKED","etag":"99"}`,
				wantCode: 200,
				check: func(t *testing.T, got *customerv1.Customer) {
					if !strings.HasPrefix(got.GetId(), "cus_") || got.GetEtag() != "1" || got.GetCreateTime() == nil {
						t.Fatalf("id %q etag %q create time %v", got.GetId(), got.GetEtag(), got.GetCreateTime())
					}
					// Output-only fields the caller sent are ignored.
					if got.GetStatus() != customerv1.CustomerStatus_CUSTOMER_STATUS_ACTIVE {
						t.Fatalf("status %v, want active", got.GetStatus())
					}
					if got.GetBillingAddress().GetCity() != "Berlin" || got.GetExternalRefs()[0].GetId() != "001A000001" {
						t.Fatalf("stored %v", got)
					}
					acme = got
				},
			},
			{
				name:     "erp creates an na account",
				key:      keys.erp,
				body:     `{"displayName":"Zenith Corp","region":"na","currencyCode":"USD","externalRefs":[{"system":"sap","id":"C-9000"}]}`,
				wantCode: 200,
				check:    func(t *testing.T, got *customerv1.Customer) { zenith = got },
			},
			{name: "ops may not create", key: keys.ops, body: `{"displayName":"Ops Inc","region":"eu"}`, wantCode: 403, wantReason: "PERMISSION_DENIED"},
			{name: "no key", key: "", body: `{"displayName":"Anon Inc","region":"eu"}`, wantCode: 401, wantReason: "UNAUTHENTICATED"},
			{name: "eu key may not create in na", key: keys.crmEU, body: `{"displayName":"Far Away Inc","region":"na"}`, wantCode: 403, wantReason: "REGION_OUT_OF_SCOPE"},
			{
				name: "crm may not set a credit limit", key: keys.crm,
				body:     `{"displayName":"Greedy GmbH","region":"eu","creditLimit":{"currencyCode":"EUR","amount":"1000000"}}`,
				wantCode: 403, wantReason: "FIELD_OWNED_BY_ROLE",
			},
			{
				name: "external ref taken names the holder", key: keys.crm,
				body:     `{"displayName":"Acme Copy","region":"eu","externalRefs":[{"system":"salesforce","id":"001A000001"}]}`,
				wantCode: 409, wantReason: "EXTERNAL_REF_TAKEN",
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := c.count(t)
				r := c.do(t, "POST", "/v1/customers", tt.key, tt.body)
				if tt.wantCode == 200 {
					got := &customerv1.Customer{}
					r.ok(t, got)
					if stored := c.get(t, got.GetId()); !proto.Equal(stored, got) {
						t.Fatalf("read back %v, created %v", stored, got)
					}
					if n := c.count(t); n != before+1 {
						t.Fatalf("%d customers after create, want %d", n, before+1)
					}
					tt.check(t, got)
					return
				}
				e := r.fails(t, tt.wantCode, tt.wantReason)
				switch tt.wantReason {
				case "FIELD_OWNED_BY_ROLE":
					if m := e.meta(); m["owning_role"] != "erp" || m["field"] != "customer.credit_limit" {
						t.Fatalf("metadata %v, want owning_role erp on customer.credit_limit", m)
					}
				case "EXTERNAL_REF_TAKEN":
					if m := e.meta(); m["holder_id"] != acme.GetId() || m["system"] != "salesforce" || m["ref_id"] != "001A000001" {
						t.Fatalf("metadata %v, want holder %s", m, acme.GetId())
					}
				}
				if n := c.count(t); n != before {
					t.Fatalf("%d customers after a refused create, want %d", n, before)
				}
			})
		}
	})
	if acme == nil || zenith == nil {
		t.Fatal("the accounts later steps need were not created")
	}

	t.Run("bad input names the field", func(t *testing.T) {
		tests := []struct {
			name      string
			body      string
			wantField string
		}{
			{"e-mail", `{"displayName":"X","region":"eu","email":"not-an-email"}`, "customer.email"},
			{"display name missing", `{"region":"eu"}`, "customer.display_name"},
			{"region not lowercase", `{"displayName":"X","region":"EU"}`, "customer.region"},
			{"region missing", `{"displayName":"X"}`, "customer.region"},
			{"unknown currency", `{"displayName":"X","region":"eu","currencyCode":"XYZ"}`, "customer.currency_code"},
			{"nested country code", `{"displayName":"X","region":"eu","billingAddress":{"countryCode":"Germany"}}`, "customer.billing_address.country_code"},
			{"two refs of one system", `{"displayName":"X","region":"eu","externalRefs":[{"system":"sap","id":"1"},{"system":"sap","id":"2"}]}`, "customer.external_refs[1].system"},
			{"credit limit amount", `{"displayName":"X","region":"eu","creditLimit":{"currencyCode":"EUR","amount":"12,50"}}`, "customer.credit_limit.amount"},
			{"unknown JSON field", `{"displayName":"X","region":"eu","colour":"red"}`, "body"},
			{"not JSON", `{"displayName":`, "body"},
		}
		before := c.count(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := c.do(t, "POST", "/v1/customers", keys.erp, tt.body).fails(t, 400, "INVALID_ARGUMENT")
				e.wantField(t, tt.wantField)
			})
		}
		if n := c.count(t); n != before {
			t.Fatalf("%d customers after refused creates, want %d", n, before)
		}
	})

	t.Run("bad query and path parameters name the parameter", func(t *testing.T) {
		tests := []struct {
			name, path, wantField string
		}{
			{"unknown parameter", "/v1/customers?updatedAfter=2026-11-01T00:00:00Z", "updatedAfter"},
			{"misspelt parameter", "/v1/orders?createdAftr=2026-11-01T00:00:00Z", "createdAftr"},
			{"number", "/v1/customers?pageSize=many", "page_size"},
			{"enum", "/v1/orders?status=ORDER_STATUS_BOGUS", "status"},
			{"order time range", "/v1/orders?createdAfter=yesterday", "created_after"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := c.do(t, "GET", tt.path, keys.erp, "").fails(t, 400, "INVALID_ARGUMENT")
				e.wantField(t, tt.wantField)
			})
		}
	})

	t.Run("get", func(t *testing.T) {
		tests := []struct {
			name       string
			key        string
			id         string
			wantCode   int
			wantReason string
		}{
			{"crm", keys.crm, acme.GetId(), 200, ""},
			{"erp", keys.erp, zenith.GetId(), 200, ""},
			{"ops reads", keys.ops, acme.GetId(), 200, ""},
			{"eu key reads eu", keys.crmEU, acme.GetId(), 200, ""},
			{"eu key does not see na", keys.crmEU, zenith.GetId(), 404, "NOT_FOUND"},
			{"unknown id", keys.crm, "cus_01JF3Z6Q4C8W8N3T9A0E2K5R7B", 404, "NOT_FOUND"},
			{"bad key", "mr_not_a_real_key_0123456789", acme.GetId(), 401, "UNAUTHENTICATED"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := c.do(t, "GET", "/v1/customers/"+tt.id, tt.key, "")
				if tt.wantCode != 200 {
					e := r.fails(t, tt.wantCode, tt.wantReason)
					if tt.wantCode == 404 && e.meta()["id"] != tt.id {
						t.Fatalf("404 metadata %v does not name %s", e.meta(), tt.id)
					}
					return
				}
				got := &customerv1.Customer{}
				r.ok(t, got)
				if got.GetId() != tt.id {
					t.Fatalf("got %s, want %s", got.GetId(), tt.id)
				}
			})
		}
	})

	// Five more na accounts and two eu ones to page through.
	naIDs := []string{zenith.GetId()}
	for i := range 5 {
		naIDs = append(naIDs, c.create(t, keys.crm, fmt.Sprintf(`{"displayName":"Dealer %d","region":"na"}`, i)).GetId())
	}
	euIDs := []string{acme.GetId()}
	for i := range 2 {
		euIDs = append(euIDs, c.create(t, keys.crmEU, fmt.Sprintf(`{"displayName":"Händler %d","region":"eu"}`, i)).GetId())
	}

	t.Run("list", func(t *testing.T) {
		tests := []struct {
			name     string
			key      string
			query    url.Values
			pageSize int
			want     []string
		}{
			{"region na in pages of 2", keys.crm, url.Values{"region": {"na"}}, 2, naIDs},
			{"region na in one page", keys.ops, url.Values{"region": {"na"}}, 50, naIDs},
			{"region eu in pages of 1", keys.erp, url.Values{"region": {"eu"}}, 1, euIDs},
			{"eu key sees only eu", keys.crmEU, nil, 2, euIDs},
			{"eu key asking for na sees nothing", keys.crmEU, url.Values{"region": {"na"}}, 10, nil},
			{"by external ref", keys.crm, url.Values{"externalRefSystem": {"salesforce"}, "externalRefId": {"001A000001"}}, 10, []string{acme.GetId()}},
			{"by status and region", keys.crm, url.Values{"status": {"CUSTOMER_STATUS_ACTIVE"}, "region": {"eu"}}, 2, euIDs},
			{"nobody blocked", keys.crm, url.Values{"status": {"CUSTOMER_STATUS_BLOCKED"}}, 10, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := customerIDs(c.list(t, tt.key, tt.query, tt.pageSize))
				if !slices.Equal(got, tt.want) {
					t.Fatalf("listed %q, want %q (creation order)", got, tt.want)
				}
			})
		}

		var first customerv1.ListCustomersResponse
		c.do(t, "GET", "/v1/customers?region=na&pageSize=2", keys.crm, "").ok(t, &first)
		bad := []struct {
			name, query, wantField string
		}{
			{"page token of other filters", "region=eu&pageSize=2&pageToken=" + url.QueryEscape(first.GetNextPageToken()), "page_token"},
			{"garbage page token", "pageToken=bm9wZQ", "page_token"},
			{"page size too large", "pageSize=501", "page_size"},
			{"ref system without id", "externalRefSystem=salesforce", "external_ref_id"},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				c.do(t, "GET", "/v1/customers?"+tt.query, keys.crm, "").fails(t, 400, "INVALID_ARGUMENT").wantField(t, tt.wantField)
			})
		}
	})

	t.Run("update", func(t *testing.T) {
		// Rows run in order against acme. Like a CRM that read the record,
		// a body carries the record's required fields (see "partial PATCH"
		// below for why); {{etag}} and {{name}} are replaced with acme's
		// stored etag and display name before each call.
		tests := []struct {
			name       string
			key        string
			id         string
			mask       string // updateMask query parameter; empty sends none
			body       string
			wantCode   int
			wantReason string
			wantField  string
			check      func(t *testing.T, before, after *customerv1.Customer)
		}{
			{
				name: "crm renames with the current etag", key: keys.crm, mask: "displayName,email",
				body: `{"displayName":"Acme AG","region":"eu","email":"orders@acme.example","phone":"+49 30 1234","etag":"{{etag}}"}`, wantCode: 200,
				check: func(t *testing.T, before, after *customerv1.Customer) {
					if after.GetDisplayName() != "Acme AG" || after.GetEmail() != "orders@acme.example" {
						t.Fatalf("not changed: %v", after)
					}
					if after.GetPhone() != "" {
						t.Fatalf("phone %q changed though not in the mask", after.GetPhone())
					}
					if after.GetLegalName() != before.GetLegalName() || after.GetEtag() != "2" {
						t.Fatalf("legal name %q etag %q", after.GetLegalName(), after.GetEtag())
					}
				},
			},
			{
				name: "stale etag", key: keys.crm, mask: "displayName",
				body: `{"displayName":"Acme Stale","region":"eu","etag":"1"}`, wantCode: 409, wantReason: "STALE_ETAG",
			},
			{
				name: "crm may not set the credit limit", key: keys.crm, mask: "creditLimit",
				body: `{"displayName":"{{name}}","region":"eu","creditLimit":{"currencyCode":"EUR","amount":"50000"},"etag":"{{etag}}"}`, wantCode: 403, wantReason: "FIELD_OWNED_BY_ROLE",
			},
			{
				name: "crm may not set payment terms either", key: keys.crm, mask: "displayName,paymentTerms",
				body: `{"displayName":"Acme Terms","region":"eu","paymentTerms":"NET90","etag":"{{etag}}"}`, wantCode: 403, wantReason: "FIELD_OWNED_BY_ROLE",
			},
			{
				name: "erp sets the credit limit and terms", key: keys.erp, mask: "creditLimit,paymentTerms",
				body: `{"displayName":"{{name}}","region":"eu","creditLimit":{"currencyCode":"EUR","amount":"50000"},"paymentTerms":"NET30","etag":"{{etag}}"}`, wantCode: 200,
				check: func(t *testing.T, _, after *customerv1.Customer) {
					if after.GetCreditLimit().GetAmount() != "50000.00" || after.GetPaymentTerms() != "NET30" {
						t.Fatalf("credit limit %v terms %q", after.GetCreditLimit(), after.GetPaymentTerms())
					}
				},
			},
			{
				name: "crm sending the stored credit limit back is no change", key: keys.crm, mask: "displayName,creditLimit",
				body: `{"displayName":"Acme Group AG","region":"eu","creditLimit":{"currencyCode":"EUR","amount":"50000.00"},"etag":"{{etag}}"}`, wantCode: 200,
				check: func(t *testing.T, _, after *customerv1.Customer) {
					if after.GetDisplayName() != "Acme Group AG" || after.GetCreditLimit().GetAmount() != "50000.00" {
						t.Fatalf("after %v", after)
					}
				},
			},
			{
				name: "ops may read but not write", key: keys.ops, mask: "displayName",
				body: `{"displayName":"Ops Was Here","region":"eu"}`, wantCode: 403, wantReason: "PERMISSION_DENIED",
			},
			{
				name: "eu key does not see an na account", key: keys.crmEU, id: zenith.GetId(), mask: "displayName",
				body: `{"displayName":"Zenith EU","region":"na"}`, wantCode: 404, wantReason: "NOT_FOUND",
			},
			{
				name: "unknown field in the mask", key: keys.crm, mask: "colour",
				body: `{"displayName":"Acme","region":"eu"}`, wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "update_mask",
			},
			{
				name: "output-only field in the mask", key: keys.crm, mask: "status",
				body: `{"displayName":"Acme","region":"eu","status":"CUSTOMER_STATUS_BLOCKED"}`, wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "update_mask",
			},
			{
				name: "invalid value", key: keys.crm, mask: "email",
				body: `{"displayName":"{{name}}","region":"eu","email":"nope","etag":"{{etag}}"}`, wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "customer.email",
			},
			{
				name: "region move by the eu key", key: keys.crmEU, mask: "region",
				body: `{"displayName":"{{name}}","region":"na","etag":"{{etag}}"}`, wantCode: 403, wantReason: "REGION_OUT_OF_SCOPE",
			},
			{
				name: "a field named in the mask but absent is cleared", key: keys.crm, mask: "legalName",
				body: `{"displayName":"{{name}}","region":"eu","etag":"{{etag}}"}`, wantCode: 200,
				check: func(t *testing.T, _, after *customerv1.Customer) {
					if after.GetLegalName() != "" {
						t.Fatalf("legal name %q not cleared", after.GetLegalName())
					}
				},
			},
			{
				name: "no mask: the gateway takes it from the body", key: keys.crm,
				body: `{"displayName":"{{name}}","region":"eu","phone":"+49 30 999"}`, wantCode: 200,
				check: func(t *testing.T, before, after *customerv1.Customer) {
					if after.GetPhone() != "+49 30 999" || after.GetDisplayName() != before.GetDisplayName() || after.GetEmail() != before.GetEmail() {
						t.Fatalf("after %v", after)
					}
				},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				id := tt.id
				if id == "" {
					id = acme.GetId()
				}
				before := c.get(t, id)
				path := "/v1/customers/" + id
				if tt.mask != "" {
					path += "?updateMask=" + url.QueryEscape(tt.mask)
				}
				body := strings.NewReplacer("{{etag}}", before.GetEtag(), "{{name}}", before.GetDisplayName()).Replace(tt.body)
				r := c.do(t, "PATCH", path, tt.key, body)
				after := c.get(t, id)
				if tt.wantCode == 200 {
					got := &customerv1.Customer{}
					r.ok(t, got)
					if !proto.Equal(got, after) {
						t.Fatalf("response %v, stored %v", got, after)
					}
					tt.check(t, before, after)
					return
				}
				e := r.fails(t, tt.wantCode, tt.wantReason)
				if tt.wantField != "" {
					e.wantField(t, tt.wantField)
				}
				if tt.wantReason == "FIELD_OWNED_BY_ROLE" && e.meta()["owning_role"] != "erp" {
					t.Fatalf("metadata %v does not name the erp role", e.meta())
				}
				if !proto.Equal(before, after) {
					t.Fatalf("a refused update changed the account:\nbefore %v\nafter  %v", before, after)
				}
			})
		}

		// AIP-134 partial updates: a body holding only the fields the mask
		// names is validated on those fields; an etag in a body without an
		// explicit mask is the precondition, not a field to change.
		partial := []struct{ name, mask, body string }{
			{"only the masked field", "email", `{"email":"ap@acme.example","etag":"{{etag}}"}`},
			{"etag in the body without a mask", "", `{"displayName":"{{name}}","region":"eu","phone":"+49 30 1000","etag":"{{etag}}"}`},
		}
		for _, tt := range partial {
			t.Run("partial PATCH "+tt.name, func(t *testing.T) {
				before := c.get(t, acme.GetId())
				path := "/v1/customers/" + acme.GetId()
				if tt.mask != "" {
					path += "?updateMask=" + tt.mask
				}
				body := strings.NewReplacer("{{etag}}", before.GetEtag(), "{{name}}", before.GetDisplayName()).Replace(tt.body)
				c.do(t, "PATCH", path, keys.crm, body).ok(t, nil)
				after := c.get(t, acme.GetId())
				if after.GetEtag() == before.GetEtag() {
					t.Fatalf("the update did not change the account")
				}
				if after.GetDisplayName() != before.GetDisplayName() || after.GetRegion() != before.GetRegion() {
					t.Fatalf("fields outside the mask changed: %v", after)
				}
			})
		}
	})

	t.Run("upsert by external ref", func(t *testing.T) {
		var borealis string
		tests := []struct {
			name       string
			key        string
			body       string
			wantCode   int
			wantReason string
			wantResult customerv1.UpsertResult
			check      func(t *testing.T, got *customerv1.UpsertCustomerByExternalRefResponse, e restError)
		}{
			{
				name: "created", key: keys.crm,
				body:       `{"externalRef":{"system":"hubspot","id":"hs-42"},"customer":{"displayName":"Borealis Oy","region":"eu","currencyCode":"EUR"}}`,
				wantCode:   200,
				wantResult: customerv1.UpsertResult_UPSERT_RESULT_CREATED,
				check: func(t *testing.T, got *customerv1.UpsertCustomerByExternalRefResponse, _ restError) {
					borealis = got.GetCustomer().GetId()
					if refs := got.GetCustomer().GetExternalRefs(); len(refs) != 1 || refs[0].GetSystem() != "hubspot" || refs[0].GetId() != "hs-42" {
						t.Fatalf("refs %v", refs)
					}
				},
			},
			{
				name: "same values again are unchanged", key: keys.crm,
				body:       `{"externalRef":{"system":"hubspot","id":"hs-42"},"customer":{"displayName":"Borealis Oy","region":"eu","currencyCode":"EUR"}}`,
				wantCode:   200,
				wantResult: customerv1.UpsertResult_UPSERT_RESULT_UNCHANGED,
				check: func(t *testing.T, got *customerv1.UpsertCustomerByExternalRefResponse, _ restError) {
					if got.GetCustomer().GetId() != borealis || got.GetCustomer().GetEtag() != "1" {
						t.Fatalf("%s etag %s", got.GetCustomer().GetId(), got.GetCustomer().GetEtag())
					}
				},
			},
			{
				name: "changed values update the same account", key: keys.crm,
				body:       `{"externalRef":{"system":"hubspot","id":"hs-42"},"customer":{"displayName":"Borealis Oyj","region":"eu","currencyCode":"EUR"}}`,
				wantCode:   200,
				wantResult: customerv1.UpsertResult_UPSERT_RESULT_UPDATED,
				check: func(t *testing.T, got *customerv1.UpsertCustomerByExternalRefResponse, _ restError) {
					if got.GetCustomer().GetId() != borealis || got.GetCustomer().GetEtag() != "2" || got.GetCustomer().GetDisplayName() != "Borealis Oyj" {
						t.Fatalf("%v", got.GetCustomer())
					}
				},
			},
			{
				name: "erp adds its reference and a credit limit", key: keys.erp,
				body: `{"externalRef":{"system":"hubspot","id":"hs-42"},"customer":{"displayName":"Borealis Oyj","region":"eu","currencyCode":"EUR",
					"externalRefs":[{"system":"sap","id":"C-1042"}],"creditLimit":{"currencyCode":"EUR","amount":"7500"}}}`,
				wantCode:   200,
				wantResult: customerv1.UpsertResult_UPSERT_RESULT_UPDATED,
				check: func(t *testing.T, got *customerv1.UpsertCustomerByExternalRefResponse, _ restError) {
					if got.GetCustomer().GetId() != borealis || len(got.GetCustomer().GetExternalRefs()) != 2 {
						t.Fatalf("%v", got.GetCustomer())
					}
				},
			},
			{
				name: "crm upsert without the ERP fields keeps them", key: keys.crm,
				body:       `{"externalRef":{"system":"hubspot","id":"hs-42"},"customer":{"displayName":"Borealis Oyj","region":"eu","currencyCode":"EUR"}}`,
				wantCode:   200,
				wantResult: customerv1.UpsertResult_UPSERT_RESULT_UNCHANGED,
				check: func(t *testing.T, got *customerv1.UpsertCustomerByExternalRefResponse, _ restError) {
					cu := got.GetCustomer()
					if cu.GetCreditLimit().GetAmount() != "7500.00" || len(cu.GetExternalRefs()) != 2 {
						t.Fatalf("ERP data lost: %v", cu)
					}
				},
			},
			{
				name: "crm upsert changing the credit limit is refused", key: keys.crm,
				body:     `{"externalRef":{"system":"hubspot","id":"hs-42"},"customer":{"displayName":"Borealis Oyj","region":"eu","creditLimit":{"currencyCode":"EUR","amount":"9999"}}}`,
				wantCode: 403, wantReason: "FIELD_OWNED_BY_ROLE",
			},
			{
				name: "a reference held by another account names the holder", key: keys.crm,
				body:     `{"externalRef":{"system":"hubspot","id":"hs-43"},"customer":{"displayName":"Acme Twin","region":"eu","externalRefs":[{"system":"salesforce","id":"001A000001"}]}}`,
				wantCode: 409, wantReason: "EXTERNAL_REF_TAKEN",
				check: func(t *testing.T, _ *customerv1.UpsertCustomerByExternalRefResponse, e restError) {
					if m := e.meta(); m["holder_id"] != acme.GetId() || m["field"] != "customer.external_refs[0]" {
						t.Fatalf("metadata %v, want holder %s at customer.external_refs[0]", m, acme.GetId())
					}
					if got := c.byRef(t, "hubspot", "hs-43"); len(got) != 0 {
						t.Fatalf("refused upsert stored %v", customerIDs(got))
					}
				},
			},
			{
				name: "a holder the key may not see is not named", key: keys.crmEU,
				body:     `{"externalRef":{"system":"hubspot","id":"hs-44"},"customer":{"displayName":"Zenith Twin","region":"eu","externalRefs":[{"system":"sap","id":"C-9000"}]}}`,
				wantCode: 409, wantReason: "EXTERNAL_REF_TAKEN",
				check: func(t *testing.T, _ *customerv1.UpsertCustomerByExternalRefResponse, e restError) {
					if _, named := e.meta()["holder_id"]; named || strings.Contains(e.Message, zenith.GetId()) {
						t.Fatalf("an na holder leaked to an eu key: %v %q", e.meta(), e.Message)
					}
				},
			},
			{
				name: "the upsert key itself held out of scope", key: keys.crmEU,
				body:     `{"externalRef":{"system":"sap","id":"C-9000"},"customer":{"displayName":"Zenith EU","region":"eu"}}`,
				wantCode: 409, wantReason: "EXTERNAL_REF_TAKEN",
				check: func(t *testing.T, _ *customerv1.UpsertCustomerByExternalRefResponse, _ restError) {
					if got := c.get(t, zenith.GetId()); got.GetDisplayName() != "Zenith Corp" || got.GetRegion() != "na" {
						t.Fatalf("zenith changed: %v", got)
					}
				},
			},
			{
				name: "reference and account disagree", key: keys.crm,
				body:     `{"externalRef":{"system":"salesforce","id":"001X"},"customer":{"displayName":"Confused","region":"eu","externalRefs":[{"system":"salesforce","id":"001Y"}]}}`,
				wantCode: 400, wantReason: "INVALID_ARGUMENT",
				check: func(t *testing.T, _ *customerv1.UpsertCustomerByExternalRefResponse, e restError) {
					e.wantField(t, "customer.external_refs[0].id")
				},
			},
			{
				name: "invalid reference system", key: keys.crm,
				body:     `{"externalRef":{"system":"Sales Force","id":"1"},"customer":{"displayName":"X","region":"eu"}}`,
				wantCode: 400, wantReason: "INVALID_ARGUMENT",
				check: func(t *testing.T, _ *customerv1.UpsertCustomerByExternalRefResponse, e restError) {
					e.wantField(t, "external_ref.system")
				},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := c.count(t)
				r := c.do(t, "POST", "/v1/customers:upsertByExternalRef", tt.key, tt.body)
				if tt.wantCode == 200 {
					var got customerv1.UpsertCustomerByExternalRefResponse
					r.ok(t, &got)
					if got.GetResult() != tt.wantResult {
						t.Fatalf("result %v, want %v", got.GetResult(), tt.wantResult)
					}
					if stored := c.get(t, got.GetCustomer().GetId()); !proto.Equal(stored, got.GetCustomer()) {
						t.Fatalf("stored %v, answered %v", stored, got.GetCustomer())
					}
					want := before
					if tt.wantResult == customerv1.UpsertResult_UPSERT_RESULT_CREATED {
						want++
					}
					if n := c.count(t); n != want {
						t.Fatalf("%d customers, want %d", n, want)
					}
					if tt.check != nil {
						tt.check(t, &got, restError{})
					}
					return
				}
				e := r.fails(t, tt.wantCode, tt.wantReason)
				if n := c.count(t); n != before {
					t.Fatalf("%d customers after a refused upsert, want %d", n, before)
				}
				if tt.check != nil {
					tt.check(t, nil, e)
				}
			})
		}
	})

	t.Run("batch upsert", func(t *testing.T) {
		before := c.count(t)
		body := `{"items":[
			{"externalRef":{"system":"salesforce","id":"B-0"},"customer":{"displayName":"Batch Zero","region":"eu"}},
			{"externalRef":{"system":"salesforce","id":"B-1"},"customer":{"displayName":"Batch One","region":"eu","email":"at-nowhere"}},
			{"externalRef":{"system":"salesforce","id":"B-2"},"customer":{"displayName":"Batch Two","region":"na","currencyCode":"USD"}},
			{"externalRef":{"system":"salesforce","id":"B-3"},"customer":{"displayName":"Batch Three","region":"eu","creditLimit":{"currencyCode":"EUR","amount":"1"}}},
			{"externalRef":{"system":"salesforce","id":"B-4"},"customer":{"displayName":"Batch Four","region":"eu","externalRefs":[{"system":"hubspot","id":"hs-42"}]}},
			{"externalRef":{"system":"salesforce","id":"B-5"},"customer":{"displayName":"Batch Five"}},
			{"externalRef":{"system":"salesforce","id":"B-0"},"customer":{"displayName":"Batch Zero Renamed","region":"eu"}}
		]}`
		var resp struct {
			Results []struct {
				Index      int        `json:"index"`
				CustomerID string     `json:"customerId"`
				Result     string     `json:"result"`
				Error      *restError `json:"error"`
			} `json:"results"`
		}
		r := c.do(t, "POST", "/v1/customers:batchUpsert", keys.crm, body)
		r.ok(t, nil)
		if err := json.Unmarshal(r.body, &resp); err != nil {
			t.Fatal(err)
		}
		if len(resp.Results) != 7 {
			t.Fatalf("%d results, want 7: %s", len(resp.Results), r.body)
		}
		results := resp.Results
		items := []struct {
			name       string
			result     string
			code       int // google.rpc.Code of the item's error
			reason     string
			field      string
			metaHolder string
		}{
			{name: "new account", result: "UPSERT_RESULT_CREATED"},
			{name: "bad e-mail", code: 3, reason: "INVALID_ARGUMENT", field: "items[1].customer.email"},
			{name: "new account in another region", result: "UPSERT_RESULT_CREATED"},
			{name: "crm sets an ERP field", code: 7, reason: "FIELD_OWNED_BY_ROLE"},
			{name: "reference taken", code: 6, reason: "EXTERNAL_REF_TAKEN", metaHolder: "hubspot"},
			{name: "no region", code: 3, reason: "INVALID_ARGUMENT", field: "items[5].customer.region"},
			{name: "same reference later in the batch updates", result: "UPSERT_RESULT_UPDATED"},
		}
		for i, want := range items {
			t.Run(fmt.Sprintf("items[%d] %s", i, want.name), func(t *testing.T) {
				got := results[i]
				if got.Index != i {
					t.Fatalf("index %d", got.Index)
				}
				if want.result != "" {
					if got.Error != nil || got.Result != want.result || !strings.HasPrefix(got.CustomerID, "cus_") {
						t.Fatalf("got %+v, want %s", got, want.result)
					}
					return
				}
				if got.Error == nil || got.CustomerID != "" {
					t.Fatalf("got %+v, want an error", got)
				}
				if got.Error.Code != want.code || got.Error.reason() != want.reason {
					t.Fatalf("error code %d reason %q, want %d %q (%s)", got.Error.Code, got.Error.reason(), want.code, want.reason, got.Error.Message)
				}
				if want.field != "" {
					got.Error.wantField(t, want.field)
				}
				if want.reason == "FIELD_OWNED_BY_ROLE" && got.Error.meta()["field"] != "items[3].customer.credit_limit" {
					t.Fatalf("metadata %v, want field items[3].customer.credit_limit", got.Error.meta())
				}
				if want.metaHolder != "" {
					holder := c.byRef(t, want.metaHolder, "hs-42")
					if len(holder) != 1 || got.Error.meta()["holder_id"] != holder[0].GetId() {
						t.Fatalf("metadata %v, want the holder of hubspot/hs-42", got.Error.meta())
					}
				}
			})
		}
		t.Run("read back", func(t *testing.T) {
			if results[0].CustomerID != results[6].CustomerID {
				t.Fatalf("items 0 and 6 share a reference but made %s and %s", results[0].CustomerID, results[6].CustomerID)
			}
			if got := c.get(t, results[0].CustomerID); got.GetDisplayName() != "Batch Zero Renamed" || got.GetEtag() != "2" {
				t.Fatalf("B-0 stored as %v", got)
			}
			if got := c.get(t, results[2].CustomerID); got.GetRegion() != "na" {
				t.Fatalf("B-2 stored as %v", got)
			}
			for _, ref := range []string{"B-1", "B-3", "B-4", "B-5"} {
				if got := c.byRef(t, "salesforce", ref); len(got) != 0 {
					t.Errorf("refused item %s stored as %v", ref, customerIDs(got))
				}
			}
			if n := c.count(t); n != before+2 {
				t.Fatalf("%d customers, want %d", n, before+2)
			}
		})
		t.Run("whole-request errors", func(t *testing.T) {
			c.do(t, "POST", "/v1/customers:batchUpsert", keys.crm, `{"items":[]}`).fails(t, 400, "INVALID_ARGUMENT").wantField(t, "items")
			c.do(t, "POST", "/v1/customers:batchUpsert", keys.ops, `{"items":[{"externalRef":{"system":"salesforce","id":"B-9"},"customer":{"displayName":"Ops","region":"eu"}}]}`).
				fails(t, 403, "PERMISSION_DENIED")
			if n := c.count(t); n != before+2 {
				t.Fatalf("%d customers, want %d", n, before+2)
			}
		})
	})

	t.Run("a CRM hierarchy by its own ids, paged children, block reason", func(t *testing.T) {
		body := `{"items":[
			{"externalRef":{"system":"salesforce","id":"H-ROOT"},"customer":{"displayName":"Hansa Group","region":"eu"}},
			{"externalRef":{"system":"salesforce","id":"H-A"},"customer":{"displayName":"Hansa A","region":"eu"},"parentExternalRef":{"system":"salesforce","id":"H-ROOT"}},
			{"externalRef":{"system":"salesforce","id":"H-B"},"customer":{"displayName":"Hansa B","region":"eu"},"parentExternalRef":{"system":"salesforce","id":"H-ROOT"}},
			{"externalRef":{"system":"salesforce","id":"H-C"},"customer":{"displayName":"Hansa C","region":"eu"},"parentExternalRef":{"system":"salesforce","id":"H-NONE"}}]}`
		var resp struct {
			Results []struct {
				CustomerID string     `json:"customerId"`
				Error      *restError `json:"error"`
			} `json:"results"`
		}
		r := c.do(t, "POST", "/v1/customers:batchUpsert", keys.crm, body)
		r.ok(t, nil)
		if err := json.Unmarshal(r.body, &resp); err != nil || len(resp.Results) != 4 {
			t.Fatalf("results %s: %v", r.body, err)
		}
		for i := range 3 {
			if resp.Results[i].Error != nil {
				t.Fatalf("item %d: %s", i, r.body)
			}
		}
		if e := resp.Results[3].Error; e == nil || !slices.Contains(e.fields(), "items[3].parent_external_ref") {
			t.Errorf("unknown parent: %s, want a violation of items[3].parent_external_ref", r.body)
		}
		root := resp.Results[0].CustomerID

		var page struct {
			Root struct {
				ID string `json:"id"`
			} `json:"root"`
			Children []struct {
				ID string `json:"id"`
			} `json:"children"`
			Next string `json:"nextChildrenPageToken"`
		}
		r = c.do(t, "GET", "/v1/customers/"+root+"/hierarchy?childrenPageSize=1", keys.crm, "")
		r.ok(t, nil)
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if page.Root.ID != root || len(page.Children) != 1 || page.Children[0].ID != resp.Results[1].CustomerID || page.Next == "" {
			t.Fatalf("first page %s", r.body)
		}
		r = c.do(t, "GET", "/v1/customers/"+root+"/hierarchy?childrenPageSize=1&childrenPageToken="+url.QueryEscape(page.Next), keys.crm, "")
		r.ok(t, nil)
		page.Next = ""
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Children) != 1 || page.Children[0].ID != resp.Results[2].CustomerID || page.Next != "" {
			t.Fatalf("second page %s", r.body)
		}
		c.do(t, "GET", "/v1/customers/"+root+"/hierarchy?childrenPageSize=1001", keys.crm, "").
			fails(t, 400, "INVALID_ARGUMENT").wantField(t, "children_page_size")

		var blocked struct { // the answer is the account itself
			Status       string `json:"status"`
			StatusReason string `json:"statusReason"`
		}
		r = c.do(t, "POST", "/v1/customers/"+root+":block", keys.erp, `{"reason":"credit review"}`)
		r.ok(t, nil)
		if err := json.Unmarshal(r.body, &blocked); err != nil {
			t.Fatal(err)
		}
		if blocked.Status != "CUSTOMER_STATUS_BLOCKED" || blocked.StatusReason != "credit review" {
			t.Errorf("after block: %s", r.body)
		}
	})

	// A three-level eu group with a limit at the top.
	holding := c.create(t, keys.erp, `{"displayName":"Nordwerk Holding","region":"eu","currencyCode":"EUR","creditLimit":{"currencyCode":"EUR","amount":"10000"}}`)
	plant := c.create(t, keys.crm, fmt.Sprintf(`{"displayName":"Nordwerk Plant North","region":"eu","parentId":%q}`, holding.GetId()))
	line := c.create(t, keys.crm, fmt.Sprintf(`{"displayName":"Nordwerk Line 1","region":"eu","parentId":%q}`, plant.GetId()))

	t.Run("hierarchy", func(t *testing.T) {
		tests := []struct {
			name         string
			key          string
			id           string
			wantPath     []string
			wantChildren []string
		}{
			{"from the leaf", keys.crm, line.GetId(), []string{holding.GetId(), plant.GetId(), line.GetId()}, nil},
			{"from the middle", keys.ops, plant.GetId(), []string{holding.GetId(), plant.GetId()}, []string{line.GetId()}},
			{"from the root", keys.crmEU, holding.GetId(), []string{holding.GetId()}, []string{plant.GetId()}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var got customerv1.GetCustomerHierarchyResponse
				c.do(t, "GET", "/v1/customers/"+tt.id+"/hierarchy", tt.key, "").ok(t, &got)
				var path, children []string
				for _, s := range got.GetPath() {
					path = append(path, s.GetId())
				}
				for _, s := range got.GetChildren() {
					children = append(children, s.GetId())
				}
				if got.GetRoot().GetId() != holding.GetId() || !got.GetRoot().GetHasCreditLimit() {
					t.Fatalf("root %v", got.GetRoot())
				}
				if !slices.Equal(path, tt.wantPath) || !slices.Equal(children, tt.wantChildren) {
					t.Fatalf("path %q children %q, want %q %q", path, children, tt.wantPath, tt.wantChildren)
				}
			})
		}
		t.Run("eu key cannot see an na hierarchy", func(t *testing.T) {
			c.do(t, "GET", "/v1/customers/"+zenith.GetId()+"/hierarchy", keys.crmEU, "").fails(t, 404, "NOT_FOUND")
		})
		t.Run("children by list", func(t *testing.T) {
			got := customerIDs(c.list(t, keys.crm, url.Values{"parentId": {holding.GetId()}}, 10))
			if !slices.Equal(got, []string{plant.GetId()}) {
				t.Fatalf("children %q", got)
			}
		})

		bad := []struct {
			name   string
			method string
			path   string
			body   string
			field  string
		}{
			{"parent in another region", "POST", "/v1/customers", fmt.Sprintf(`{"displayName":"Nordwerk US","region":"na","parentId":%q}`, holding.GetId()), "customer.parent_id"},
			{"unknown parent", "POST", "/v1/customers", `{"displayName":"Orphan","region":"eu","parentId":"cus_01JF3Z6Q4C8W8N3T9A0E2K5R7B"}`, "customer.parent_id"},
			{"a cycle", "PATCH", "/v1/customers/" + holding.GetId() + "?updateMask=parentId", fmt.Sprintf(`{"displayName":"Nordwerk Holding","region":"eu","parentId":%q}`, line.GetId()), "customer.parent_id"},
			{"its own parent", "PATCH", "/v1/customers/" + plant.GetId() + "?updateMask=parentId", fmt.Sprintf(`{"displayName":"Nordwerk Plant North","region":"eu","parentId":%q}`, plant.GetId()), "customer.parent_id"},
		}
		for _, tt := range bad {
			t.Run(tt.name, func(t *testing.T) {
				before := c.count(t)
				h, p := c.get(t, holding.GetId()), c.get(t, plant.GetId())
				c.do(t, tt.method, tt.path, keys.erp, tt.body).fails(t, 400, "INVALID_ARGUMENT").wantField(t, tt.field)
				if n := c.count(t); n != before {
					t.Fatalf("%d customers, want %d", n, before)
				}
				if !proto.Equal(h, c.get(t, holding.GetId())) || !proto.Equal(p, c.get(t, plant.GetId())) {
					t.Fatal("a refused change altered the hierarchy")
				}
			})
		}
	})

	t.Run("check credit", func(t *testing.T) {
		tests := []struct {
			name          string
			key           string
			id            string
			amount        string
			wantCode      int
			wantReason    string // decline reason, or error reason
			wantDecision  customerv1.CreditDecision
			wantField     string
			wantAvailable string
		}{
			{name: "fits the group limit", key: keys.crm, id: line.GetId(), amount: `{"currencyCode":"EUR","amount":"2500.00"}`,
				wantCode: 200, wantDecision: customerv1.CreditDecision_CREDIT_DECISION_APPROVED, wantAvailable: "10000.00"},
			{name: "exactly the limit", key: keys.ops, id: plant.GetId(), amount: `{"currencyCode":"EUR","amount":"10000"}`,
				wantCode: 200, wantDecision: customerv1.CreditDecision_CREDIT_DECISION_APPROVED, wantAvailable: "10000.00"},
			{name: "over the limit", key: keys.crm, id: line.GetId(), amount: `{"currencyCode":"EUR","amount":"10000.01"}`,
				wantCode: 200, wantDecision: customerv1.CreditDecision_CREDIT_DECISION_DECLINED, wantReason: "CREDIT_LIMIT_EXCEEDED", wantAvailable: "10000.00"},
			{name: "no limit anywhere up", key: keys.crm, id: zenith.GetId(), amount: `{"currencyCode":"USD","amount":"1"}`,
				wantCode: 200, wantDecision: customerv1.CreditDecision_CREDIT_DECISION_DECLINED, wantReason: "NO_CREDIT_LIMIT"},
			{name: "other currency than the limit", key: keys.crm, id: line.GetId(), amount: `{"currencyCode":"USD","amount":"1"}`,
				wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "amount.currency_code"},
			{name: "not positive", key: keys.crm, id: line.GetId(), amount: `{"currencyCode":"EUR","amount":"-5"}`,
				wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "amount.amount"},
			{name: "too many decimals for EUR", key: keys.crm, id: line.GetId(), amount: `{"currencyCode":"EUR","amount":"1.001"}`,
				wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "amount.amount"},
			{name: "eu key on an na account", key: keys.crmEU, id: zenith.GetId(), amount: `{"currencyCode":"USD","amount":"1"}`,
				wantCode: 404, wantReason: "NOT_FOUND"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := c.do(t, "POST", "/v1/customers/"+tt.id+":checkCredit", tt.key, `{"amount":`+tt.amount+`}`)
				if tt.wantCode != 200 {
					e := r.fails(t, tt.wantCode, tt.wantReason)
					if tt.wantField != "" {
						e.wantField(t, tt.wantField)
					}
					return
				}
				var got customerv1.CheckCreditResponse
				r.ok(t, &got)
				if got.GetDecision() != tt.wantDecision || got.GetReason() != tt.wantReason {
					t.Fatalf("decision %v %q, want %v %q", got.GetDecision(), got.GetReason(), tt.wantDecision, tt.wantReason)
				}
				if tt.wantAvailable != "" {
					pos := got.GetPosition()
					if pos.GetCreditAccountId() != holding.GetId() || pos.GetAvailable().GetAmount() != tt.wantAvailable || pos.GetLimit().GetAmount() != "10000.00" {
						t.Fatalf("position %v, want the holding's with %s available", pos, tt.wantAvailable)
					}
				}
			})
		}
		// A check reserves nothing.
		var again customerv1.CheckCreditResponse
		c.do(t, "POST", "/v1/customers/"+holding.GetId()+":checkCredit", keys.crm, `{"amount":{"currencyCode":"EUR","amount":"1"}}`).ok(t, &again)
		if got := again.GetPosition().GetExposure().GetAmount(); got != "0.00" {
			t.Fatalf("exposure %s after checks, want 0.00", got)
		}
	})

	t.Run("idempotency key", func(t *testing.T) {
		body := `{"displayName":"Idempotent Ltd","region":"eu","currencyCode":"GBP"}`
		before := c.count(t)
		first := c.do(t, "POST", "/v1/customers", keys.crm, body, "Idempotency-Key", "sf-create-7781")
		created := &customerv1.Customer{}
		first.ok(t, created)
		if h := first.header.Get("Idempotent-Replayed"); h != "" {
			t.Fatalf("first call marked replayed: %q", h)
		}
		tests := []struct {
			name         string
			key          string
			body         string
			idemKey      string
			wantCode     int
			wantReplayed bool
			wantNew      bool // a new account, not the first one
		}{
			{"same request replays", keys.crm, body, "sf-create-7781", 200, true, false},
			{"replays again", keys.crm, body, "sf-create-7781", 200, true, false},
			{"different body under the same key", keys.crm, `{"displayName":"Idempotent Ltd","region":"eu","currencyCode":"EUR"}`, "sf-create-7781", 422, false, false},
			{"same key from another API key is its own", keys.erp, body, "sf-create-7781", 200, false, true},
		}
		want := before + 1
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := c.do(t, "POST", "/v1/customers", tt.key, tt.body, "Idempotency-Key", tt.idemKey)
				if tt.wantCode == 422 {
					e := r.fails(t, 422, "IDEMPOTENCY_KEY_REUSED")
					if e.meta()["idempotency_key"] != tt.idemKey {
						t.Fatalf("metadata %v", e.meta())
					}
				} else {
					got := &customerv1.Customer{}
					r.ok(t, got)
					if replayed := r.header.Get("Idempotent-Replayed") == "true"; replayed != tt.wantReplayed {
						t.Fatalf("Idempotent-Replayed %q, want %v", r.header.Get("Idempotent-Replayed"), tt.wantReplayed)
					}
					if tt.wantNew {
						if got.GetId() == created.GetId() {
							t.Fatal("another API key got the first key's answer")
						}
						want++
					} else if !proto.Equal(got, created) {
						t.Fatalf("replayed %v, first answer %v", got, created)
					}
				}
				if n := c.count(t); n != want {
					t.Fatalf("%d customers, want %d", n, want)
				}
			})
		}
	})
}
