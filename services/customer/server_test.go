package customer_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/services/customer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixedNow is the clock the service runs on in these tests.
var fixedNow = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

// env is a customer service on a real bbolt file behind a real gRPC
// server, reached over an in-memory connection.
type env struct {
	db       *storage.DB
	c        customerv1.CustomerServiceClient
	notified atomic.Int64
}

// testAuth stands in for the platform's authentication: it turns the
// x-test-role and x-test-region metadata into the principal handlers read.
func testAuth(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	roles := md.Get("x-test-role")
	if len(roles) == 0 {
		return handler(ctx, req)
	}
	role, ok := auth.ParseRole(roles[0])
	if !ok {
		return nil, status.Errorf(codes.Unauthenticated, "test: unknown role %q", roles[0])
	}
	p := auth.Principal{KeyID: "key-" + roles[0], Name: roles[0], Role: role}
	if r := md.Get("x-test-region"); len(r) > 0 {
		p.Region = r[0]
	}
	return handler(auth.WithPrincipal(ctx, p), req)
}

func newEnv(t testing.TB, opts storage.Options) *env {
	t.Helper()
	db, err := storage.Open(filepath.Join(t.TempDir(), "customer.db"), customer.Schema, opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db}
	srv := customer.NewServer(db, customer.Options{
		Notify: func() { e.notified.Add(1) },
		Now:    func() time.Time { return fixedNow },
	})
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.UnaryInterceptor(testAuth), grpc.MaxRecvMsgSize(8<<20))
	customerv1.RegisterCustomerServiceServer(gs, srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
		<-served
		_ = db.Close()
	})
	e.c = customerv1.NewCustomerServiceClient(conn)
	return e
}

// as returns a context calling with the given role and region scope.
func as(t testing.TB, role, region string) context.Context {
	kv := []string{"x-test-role", role}
	if region != "" {
		kv = append(kv, "x-test-region", region)
	}
	return metadata.AppendToOutgoingContext(t.Context(), kv...)
}

func admin(t testing.TB) context.Context { return as(t, "admin", "") }

// account builds a customer for a request.
func account(name, region string, opts ...func(*customerv1.Customer)) *customerv1.Customer {
	c := &customerv1.Customer{DisplayName: name, Region: region, Tier: "silver"}
	for _, o := range opts {
		o(c)
	}
	return c
}

func parent(id string) func(*customerv1.Customer) {
	return func(c *customerv1.Customer) { c.ParentId = id }
}

func limit(currency, amount string) func(*customerv1.Customer) {
	return func(c *customerv1.Customer) { c.CreditLimit = &typev1.Money{CurrencyCode: currency, Amount: amount} }
}

func ref(system, id string) func(*customerv1.Customer) {
	return func(c *customerv1.Customer) {
		c.ExternalRefs = append(c.ExternalRefs, &typev1.ExternalRef{System: system, Id: id})
	}
}

func money(currency, amount string) *typev1.Money {
	return &typev1.Money{CurrencyCode: currency, Amount: amount}
}

func (e *env) create(t testing.TB, ctx context.Context, c *customerv1.Customer) *customerv1.Customer {
	t.Helper()
	resp, err := e.c.CreateCustomer(ctx, &customerv1.CreateCustomerRequest{Customer: c})
	if err != nil {
		t.Fatalf("CreateCustomer(%s): %v", c.GetDisplayName(), err)
	}
	return resp.GetCustomer()
}

func (e *env) get(t testing.TB, id string) *customerv1.Customer {
	t.Helper()
	resp, err := e.c.GetCustomer(admin(t), &customerv1.GetCustomerRequest{Id: id})
	if err != nil {
		t.Fatalf("GetCustomer(%s): %v", id, err)
	}
	return resp.GetCustomer()
}

// all lists every account through the API.
func (e *env) all(t testing.TB) []*customerv1.Customer {
	t.Helper()
	var out []*customerv1.Customer
	req := &customerv1.ListCustomersRequest{PageSize: 500}
	for {
		resp, err := e.c.ListCustomers(admin(t), req)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp.GetCustomers()...)
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// events returns the types of the events waiting in the outbox.
func (e *env) events(t testing.TB) []*eventsv1.Envelope {
	t.Helper()
	var out []*eventsv1.Envelope
	err := e.db.View(func(tx *bbolt.Tx) error {
		recs, err := storage.ReadOutbox(tx, 0)
		if err != nil {
			return err
		}
		for _, r := range recs {
			env := &eventsv1.Envelope{}
			if err := proto.Unmarshal(r.Data, env); err != nil {
				return err
			}
			out = append(out, env)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func eventTypes(envs []*eventsv1.Envelope) []string {
	var out []string
	for _, e := range envs {
		out = append(out, strings.TrimPrefix(e.GetType(), "millrace.events.v1."))
	}
	return out
}

// snapshot is everything a failed call must leave unchanged.
type snapshot struct {
	customers []*customerv1.Customer
	events    int
}

func (e *env) snapshot(t testing.TB) snapshot {
	return snapshot{customers: e.all(t), events: len(e.events(t))}
}

func (e *env) unchangedSince(t testing.TB, before snapshot) {
	t.Helper()
	after := e.snapshot(t)
	if len(after.customers) != len(before.customers) || after.events != before.events {
		t.Fatalf("a failed call wrote: %d customers and %d events before, %d and %d after",
			len(before.customers), before.events, len(after.customers), after.events)
	}
	for i := range after.customers {
		if !proto.Equal(after.customers[i], before.customers[i]) {
			t.Fatalf("a failed call changed %s:\nbefore %v\nafter  %v", after.customers[i].GetId(), before.customers[i], after.customers[i])
		}
	}
}

// apiErr is what a test reads from a status error.
type apiErr struct {
	code   codes.Code
	reason string
	fields []string
	meta   map[string]string
	msg    string
}

func decodeErr(err error) apiErr {
	st := status.Convert(err)
	out := apiErr{code: st.Code(), msg: st.Message(), meta: map[string]string{}}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			out.reason, out.meta = d.GetReason(), d.GetMetadata()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				out.fields = append(out.fields, v.GetField())
			}
		}
	}
	if f := out.meta["field"]; f != "" && !slices.Contains(out.fields, f) {
		out.fields = append(out.fields, f)
	}
	return out
}

// wantErr fails unless err has the code, the reason and names the field
// (either may be empty to skip).
func wantErr(t testing.TB, err error, code codes.Code, reason, field string) apiErr {
	t.Helper()
	if err == nil {
		t.Fatalf("call succeeded, want %v %s", code, reason)
	}
	got := decodeErr(err)
	if got.code != code {
		t.Fatalf("code %v (%v), want %v", got.code, err, code)
	}
	if reason != "" && got.reason != reason {
		t.Fatalf("reason %q (%v), want %q", got.reason, err, reason)
	}
	if field != "" && !slices.Contains(got.fields, field) {
		t.Fatalf("fields %v (%v), want %q among them", got.fields, err, field)
	}
	return got
}

func TestCreateAndGet(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	in := account("Acme GmbH", "eu", ref("salesforce", "001A"), func(c *customerv1.Customer) {
		c.LegalName = "Acme Maschinenbau GmbH"
		c.Email = "ap@acme.example"
		c.CurrencyCode = "EUR"
		c.PaymentTerms = "NET30"
		c.CreditLimit = money("EUR", "25000")
		c.BillingAddress = &typev1.Address{Lines: []string{"Hafenstr. 1"}, City: "Hamburg", PostalCode: "20457", CountryCode: "DE"}
		c.Id, c.Etag, c.Status = "cus_chosen_by_caller", "99", customerv1.CustomerStatus_CUSTOMER_STATUS_BLOCKED
	})
	c := e.create(t, as(t, "erp", ""), in)

	if !strings.HasPrefix(c.GetId(), "cus_") || c.GetId() == in.GetId() {
		t.Errorf("id %q: want a new cus_ id, never the caller's", c.GetId())
	}
	if c.GetStatus() != customerv1.CustomerStatus_CUSTOMER_STATUS_ACTIVE || c.GetEtag() != "1" {
		t.Errorf("status %v etag %q, want ACTIVE and 1", c.GetStatus(), c.GetEtag())
	}
	if !c.GetCreateTime().AsTime().Equal(fixedNow) || !c.GetUpdateTime().AsTime().Equal(fixedNow) {
		t.Errorf("times %v %v, want %v", c.GetCreateTime().AsTime(), c.GetUpdateTime().AsTime(), fixedNow)
	}
	if got := c.GetCreditLimit().GetAmount(); got != "25000.00" {
		t.Errorf("credit limit stored as %q, want the currency's minor units 25000.00", got)
	}
	if got := e.get(t, c.GetId()); !proto.Equal(got, c) {
		t.Errorf("GetCustomer = %v, want %v", got, c)
	}
	envs := e.events(t)
	if got, want := eventTypes(envs), []string{"CustomerCreated", "CreditLimitChanged"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for _, env := range envs {
		if env.GetSubject() != "customers/"+c.GetId() || env.GetRegion() != "eu" || env.GetSource() != "/millrace/customer" {
			t.Errorf("envelope subject %q region %q source %q", env.GetSubject(), env.GetRegion(), env.GetSource())
		}
	}
	if e.notified.Load() != 1 {
		t.Errorf("Notify called %d times, want once per commit with events", e.notified.Load())
	}

	_, err := e.c.GetCustomer(admin(t), &customerv1.GetCustomerRequest{Id: "cus_01JF00000000000000000000XX"})
	wantErr(t, err, codes.NotFound, "NOT_FOUND", "")
	_, err = e.c.GetCustomer(t.Context(), &customerv1.GetCustomerRequest{Id: c.GetId()})
	wantErr(t, err, codes.Unauthenticated, "UNAUTHENTICATED", "")
}

func TestCreateRefusals(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	holder := e.create(t, admin(t), account("Holder", "eu", ref("salesforce", "001H")))
	na := e.create(t, admin(t), account("Far away", "na"))
	before := e.snapshot(t)

	tests := []struct {
		name   string
		ctx    context.Context
		c      *customerv1.Customer
		code   codes.Code
		reason string
		field  string
	}{
		{"no display name", admin(t), account("", "eu"), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.display_name"},
		{"no region", admin(t), account("X", ""), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.region"},
		{"unknown limit currency", admin(t), account("X", "eu", limit("EUX", "10")), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.credit_limit.currency_code"},
		{"limit finer than the currency", admin(t), account("X", "eu", limit("EUR", "10.005")), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.credit_limit.amount"},
		{"yen with decimals", admin(t), account("X", "eu", limit("JPY", "10.5")), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.credit_limit.amount"},
		{"negative limit", admin(t), account("X", "eu", limit("EUR", "-1")), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.credit_limit.amount"},
		{"unknown account currency", admin(t), account("X", "eu", func(c *customerv1.Customer) { c.CurrencyCode = "ABC" }), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.currency_code"},
		{"two refs of one system", admin(t), account("X", "eu", ref("sap", "1"), ref("sap", "2")), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.external_refs[1].system"},
		{"bad country", admin(t), account("X", "eu", func(c *customerv1.Customer) { c.ShippingAddress = &typev1.Address{CountryCode: "Germany"} }), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.shipping_address.country_code"},
		{"missing parent", admin(t), account("X", "eu", parent("cus_01JF00000000000000000000XX")), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.parent_id"},
		{"parent in another region", admin(t), account("X", "eu", parent(na.GetId())), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.parent_id"},
		{"parent the key cannot see", as(t, "crm", "eu"), account("X", "eu", parent(na.GetId())), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.parent_id"},
		{"ref held by another customer", admin(t), account("X", "eu", ref("salesforce", "001H")), codes.AlreadyExists, "EXTERNAL_REF_TAKEN", "customer.external_refs[0]"},
		{"crm sets a credit limit", as(t, "crm", ""), account("X", "eu", limit("EUR", "10")), codes.PermissionDenied, "FIELD_OWNED_BY_ROLE", "customer.credit_limit"},
		{"crm sets payment terms", as(t, "crm", ""), account("X", "eu", func(c *customerv1.Customer) { c.PaymentTerms = "NET60" }), codes.PermissionDenied, "FIELD_OWNED_BY_ROLE", "customer.payment_terms"},
		{"crm blocks credit", as(t, "crm", ""), account("X", "eu", func(c *customerv1.Customer) { c.CreditBlocked = true }), codes.PermissionDenied, "FIELD_OWNED_BY_ROLE", "customer.credit_blocked"},
		{"key of another region", as(t, "crm", "na"), account("X", "eu"), codes.PermissionDenied, "REGION_OUT_OF_SCOPE", "customer.region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.c.CreateCustomer(tt.ctx, &customerv1.CreateCustomerRequest{Customer: tt.c})
			got := wantErr(t, err, tt.code, tt.reason, tt.field)
			switch tt.reason {
			case "EXTERNAL_REF_TAKEN":
				if got.meta["holder_id"] != holder.GetId() || !strings.Contains(got.msg, holder.GetId()) {
					t.Errorf("ref taken should name holder %s in metadata and message: %v %q", holder.GetId(), got.meta, got.msg)
				}
			case "FIELD_OWNED_BY_ROLE":
				if got.meta["owning_role"] != "erp" || !strings.Contains(got.msg, "erp") {
					t.Errorf("ownership error should name the erp role: %v %q", got.meta, got.msg)
				}
			}
			e.unchangedSince(t, before)
		})
	}
}

func TestUpdateCustomer(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	c := e.create(t, admin(t), account("Acme", "eu", ref("salesforce", "001A"), limit("EUR", "1000")))
	mask := func(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

	t.Run("changes the masked fields only", func(t *testing.T) {
		in := &customerv1.Customer{Id: c.GetId(), Etag: c.GetEtag(), DisplayName: "Acme Europe", Phone: "+49 40 1234", Tier: "gold"}
		resp, err := e.c.UpdateCustomer(as(t, "crm", ""), &customerv1.UpdateCustomerRequest{Customer: in, UpdateMask: mask("display_name", "phone")})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetCustomer()
		if got.GetDisplayName() != "Acme Europe" || got.GetPhone() != "+49 40 1234" || got.GetTier() != "silver" {
			t.Errorf("updated %v: want name and phone changed, tier untouched", got)
		}
		if got.GetEtag() != "2" || got.GetCreditLimit().GetAmount() != "1000.00" {
			t.Errorf("etag %q limit %v", got.GetEtag(), got.GetCreditLimit())
		}
		envs := e.events(t)
		last := envs[len(envs)-1]
		upd := &eventsv1.CustomerUpdated{}
		if err := last.GetData().UnmarshalTo(upd); err != nil {
			t.Fatalf("last event %s: %v", last.GetType(), err)
		}
		if !slices.Equal(upd.GetChangedFields(), []string{"display_name", "phone"}) {
			t.Errorf("changed_fields %v", upd.GetChangedFields())
		}
		c = got
	})

	t.Run("a mask of unchanged values writes nothing", func(t *testing.T) {
		before := e.snapshot(t)
		resp, err := e.c.UpdateCustomer(admin(t), &customerv1.UpdateCustomerRequest{Customer: c, UpdateMask: mask("*")})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCustomer().GetEtag() != c.GetEtag() {
			t.Errorf("etag moved to %q on a no-op", resp.GetCustomer().GetEtag())
		}
		e.unchangedSince(t, before)
	})

	t.Run("erp changes the limit", func(t *testing.T) {
		in := &customerv1.Customer{Id: c.GetId(), CreditLimit: money("EUR", "2500.5")}
		resp, err := e.c.UpdateCustomer(as(t, "erp", ""), &customerv1.UpdateCustomerRequest{Customer: in, UpdateMask: mask("creditLimit")})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetCustomer().GetCreditLimit().GetAmount(); got != "2500.50" {
			t.Errorf("limit %q", got)
		}
		envs := e.events(t)
		changed := &eventsv1.CreditLimitChanged{}
		if err := envs[len(envs)-1].GetData().UnmarshalTo(changed); err != nil {
			t.Fatal(err)
		}
		if changed.GetOldLimit().GetAmount() != "1000.00" || changed.GetNewLimit().GetAmount() != "2500.50" {
			t.Errorf("CreditLimitChanged %v", changed)
		}
		c = resp.GetCustomer()
	})

	refusals := []struct {
		name   string
		ctx    context.Context
		in     *customerv1.Customer
		mask   *fieldmaskpb.FieldMask
		code   codes.Code
		reason string
		field  string
	}{
		{"stale etag", admin(t), &customerv1.Customer{Id: c.GetId(), Etag: "1", DisplayName: "Old view"}, mask("display_name"), codes.Aborted, "STALE_ETAG", ""},
		{"no mask", admin(t), &customerv1.Customer{Id: c.GetId(), DisplayName: "X"}, nil, codes.InvalidArgument, "INVALID_ARGUMENT", "update_mask"},
		{"unknown path", admin(t), &customerv1.Customer{Id: c.GetId()}, mask("display_name", "colour"), codes.InvalidArgument, "INVALID_ARGUMENT", "update_mask"},
		{"output-only path", admin(t), &customerv1.Customer{Id: c.GetId()}, mask("status"), codes.InvalidArgument, "INVALID_ARGUMENT", "update_mask"},
		{"sub-field path", admin(t), &customerv1.Customer{Id: c.GetId()}, mask("billing_address.city"), codes.InvalidArgument, "INVALID_ARGUMENT", "update_mask"},
		{"clearing a required field", admin(t), &customerv1.Customer{Id: c.GetId()}, mask("display_name"), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.display_name"},
		{"crm changes the credit limit", as(t, "crm", ""), &customerv1.Customer{Id: c.GetId(), CreditLimit: money("EUR", "9999")}, mask("credit_limit"), codes.PermissionDenied, "FIELD_OWNED_BY_ROLE", "customer.credit_limit"},
		{"crm removes the credit limit", as(t, "crm", ""), &customerv1.Customer{Id: c.GetId()}, mask("credit_limit"), codes.PermissionDenied, "FIELD_OWNED_BY_ROLE", "customer.credit_limit"},
		{"region-scoped key, other region", as(t, "crm", "na"), &customerv1.Customer{Id: c.GetId(), DisplayName: "X"}, mask("display_name"), codes.NotFound, "NOT_FOUND", ""},
		{"move to a region out of scope", as(t, "crm", "eu"), &customerv1.Customer{Id: c.GetId(), Region: "na"}, mask("region"), codes.PermissionDenied, "REGION_OUT_OF_SCOPE", "customer.region"},
		{"unknown customer", admin(t), &customerv1.Customer{Id: "cus_01JF00000000000000000000XX", DisplayName: "X"}, mask("display_name"), codes.NotFound, "NOT_FOUND", ""},
		{"no id", admin(t), &customerv1.Customer{DisplayName: "X"}, mask("display_name"), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.id"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := e.snapshot(t)
			_, err := e.c.UpdateCustomer(tt.ctx, &customerv1.UpdateCustomerRequest{Customer: tt.in, UpdateMask: tt.mask})
			got := wantErr(t, err, tt.code, tt.reason, tt.field)
			if tt.reason == "FIELD_OWNED_BY_ROLE" && got.meta["owning_role"] != "erp" {
				t.Errorf("metadata %v should name the erp role", got.meta)
			}
			e.unchangedSince(t, before)
		})
	}
}

func TestUpsertByExternalRef(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	upsert := func(t *testing.T, ctx context.Context, r *typev1.ExternalRef, c *customerv1.Customer) *customerv1.UpsertCustomerByExternalRefResponse {
		t.Helper()
		resp, err := e.c.UpsertCustomerByExternalRef(ctx, &customerv1.UpsertCustomerByExternalRefRequest{ExternalRef: r, Customer: c})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	sf := &typev1.ExternalRef{System: "salesforce", Id: "0015g00000ABC"}
	sap := &typev1.ExternalRef{System: "sap", Id: "100042"}

	first := upsert(t, as(t, "erp", ""), sap, account("Bolt & Nut Co", "na", limit("USD", "50000"), func(c *customerv1.Customer) { c.PaymentTerms = "NET45" }))
	if first.GetResult() != customerv1.UpsertResult_UPSERT_RESULT_CREATED {
		t.Fatalf("first upsert %v", first.GetResult())
	}
	id := first.GetCustomer().GetId()

	t.Run("same values are UNCHANGED", func(t *testing.T) {
		before := e.snapshot(t)
		r := upsert(t, as(t, "erp", ""), sap, account("Bolt & Nut Co", "na", limit("USD", "50000.00"), func(c *customerv1.Customer) { c.PaymentTerms = "NET45" }))
		if r.GetResult() != customerv1.UpsertResult_UPSERT_RESULT_UNCHANGED || r.GetCustomer().GetId() != id {
			t.Errorf("result %v id %s", r.GetResult(), r.GetCustomer().GetId())
		}
		e.unchangedSince(t, before)
	})

	t.Run("crm adds its ref; ERP fields it leaves out are kept", func(t *testing.T) {
		// The CRM knows the account by its SAP number (stored ref) and
		// claims it for Salesforce in the same call.
		r := upsert(t, as(t, "crm", ""), sap, account("Bolt & Nut Company", "na", ref("salesforce", sf.GetId())))
		if r.GetResult() != customerv1.UpsertResult_UPSERT_RESULT_UPDATED {
			t.Fatalf("result %v", r.GetResult())
		}
		got := r.GetCustomer()
		if got.GetCreditLimit().GetAmount() != "50000.00" || got.GetPaymentTerms() != "NET45" {
			t.Errorf("ERP-owned fields lost on a crm upsert: %v", got)
		}
		if len(got.GetExternalRefs()) != 2 {
			t.Errorf("refs %v: want both systems", got.GetExternalRefs())
		}
	})

	t.Run("upsert by the other ref keeps the first", func(t *testing.T) {
		r := upsert(t, as(t, "crm", ""), sf, account("Bolt & Nut Company", "na", func(c *customerv1.Customer) { c.Email = "buy@boltnut.example" }))
		if r.GetResult() != customerv1.UpsertResult_UPSERT_RESULT_UPDATED || r.GetCustomer().GetId() != id {
			t.Fatalf("result %v id %s", r.GetResult(), r.GetCustomer().GetId())
		}
		if n := len(r.GetCustomer().GetExternalRefs()); n != 2 {
			t.Errorf("the SAP ref was dropped by a Salesforce upsert: %v", r.GetCustomer().GetExternalRefs())
		}
		if r.GetCustomer().GetTier() != "silver" || r.GetCustomer().GetEmail() != "buy@boltnut.example" {
			t.Errorf("customer %v", r.GetCustomer())
		}
	})

	t.Run("erp replaces the limit", func(t *testing.T) {
		r := upsert(t, as(t, "erp", ""), sap, account("Bolt & Nut Company", "na", limit("USD", "75000"), func(c *customerv1.Customer) {
			c.PaymentTerms = "NET45"
			c.Email = "buy@boltnut.example"
		}))
		if r.GetResult() != customerv1.UpsertResult_UPSERT_RESULT_UPDATED || r.GetCustomer().GetCreditLimit().GetAmount() != "75000.00" {
			t.Fatalf("result %v limit %v", r.GetResult(), r.GetCustomer().GetCreditLimit())
		}
	})

	other := upsert(t, admin(t), &typev1.ExternalRef{System: "salesforce", Id: "0015g00000XYZ"}, account("Other", "na"))

	refusals := []struct {
		name   string
		ctx    context.Context
		ref    *typev1.ExternalRef
		c      *customerv1.Customer
		code   codes.Code
		reason string
		field  string
		holder string
	}{
		{"crm changes the limit", as(t, "crm", ""), sap, account("Bolt", "na", limit("USD", "1")), codes.PermissionDenied, "FIELD_OWNED_BY_ROLE", "customer.credit_limit", ""},
		{"crm sets credit_blocked", as(t, "crm", ""), sap, account("Bolt", "na", func(c *customerv1.Customer) { c.CreditBlocked = true }), codes.PermissionDenied, "FIELD_OWNED_BY_ROLE", "customer.credit_blocked", ""},
		{"crm creates with terms", as(t, "crm", ""), &typev1.ExternalRef{System: "salesforce", Id: "new"}, account("New", "na", func(c *customerv1.Customer) { c.PaymentTerms = "NET10" }), codes.PermissionDenied, "FIELD_OWNED_BY_ROLE", "customer.payment_terms", ""},
		{"claims a ref of another account", admin(t), &typev1.ExternalRef{System: "salesforce", Id: "0015g00000XYZ"}, account("Other", "na", ref("sap", sap.GetId())), codes.AlreadyExists, "EXTERNAL_REF_TAKEN", "customer.external_refs", id},
		{"customer names another id for the ref's system", admin(t), sf, account("Bolt", "na", ref("salesforce", "0015g00000DIFF")), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.external_refs[0].id", ""},
		{"no ref", admin(t), nil, account("Bolt", "na"), codes.InvalidArgument, "INVALID_ARGUMENT", "external_ref", ""},
		{"bad ref system", admin(t), &typev1.ExternalRef{System: "Sales Force", Id: "1"}, account("Bolt", "na"), codes.InvalidArgument, "INVALID_ARGUMENT", "external_ref.system", ""},
		{"ref held in a region the key cannot see", as(t, "crm", "eu"), sap, account("Bolt", "eu"), codes.AlreadyExists, "EXTERNAL_REF_TAKEN", "external_ref", ""},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := e.snapshot(t)
			_, err := e.c.UpsertCustomerByExternalRef(tt.ctx, &customerv1.UpsertCustomerByExternalRefRequest{ExternalRef: tt.ref, Customer: tt.c})
			got := wantErr(t, err, tt.code, tt.reason, tt.field)
			if tt.reason == "EXTERNAL_REF_TAKEN" {
				if got.meta["holder_id"] != tt.holder {
					t.Errorf("holder_id %q, want %q", got.meta["holder_id"], tt.holder)
				}
				if tt.holder == "" && strings.Contains(got.msg, "cus_") {
					t.Errorf("message %q names a holder the caller cannot see", got.msg)
				}
			}
			e.unchangedSince(t, before)
		})
	}
	_ = other
}

func TestBatchUpsert(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	existing := e.create(t, admin(t), account("Existing", "eu", ref("sap", "900001")))
	kept := e.create(t, admin(t), account("Kept", "eu", ref("salesforce", "KEPT")))
	item := func(system, id string, c *customerv1.Customer) *customerv1.UpsertCustomerByExternalRefRequest {
		return &customerv1.UpsertCustomerByExternalRefRequest{ExternalRef: &typev1.ExternalRef{System: system, Id: id}, Customer: c}
	}
	items := []*customerv1.UpsertCustomerByExternalRefRequest{
		0: item("salesforce", "A1", account("Alpha", "eu")),
		1: item("salesforce", "A2", account("Bad currency", "eu", limit("XXZ", "100"))),
		2: item("salesforce", "A3", account("Steals a ref", "eu", ref("sap", "900001"))),
		3: item("salesforce", "A4", account("Orphan", "eu", parent("cus_01JF00000000000000000000XX"))),
		4: item("salesforce", "A1", account("Alpha renamed", "eu")),
		5: item("salesforce", "KEPT", account("Kept", "eu")),
		6: item("salesforce", "A6", account("Owned field", "eu", func(c *customerv1.Customer) { c.PaymentTerms = "NET30" })),
		7: item("salesforce", "A7", account("", "eu")),
		8: item("salesforce", "A8", account("Beta", "eu", parent(existing.GetId()))),
		9: item("salesforce", "A9", account("Bad mail", "eu", func(c *customerv1.Customer) { c.Email = "not-an-address" })),
	}
	before := len(e.events(t))
	resp, err := e.c.BatchUpsertCustomers(as(t, "crm", ""), &customerv1.BatchUpsertCustomersRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		result customerv1.UpsertResult
		code   codes.Code
		reason string
		field  string
	}{
		0: {result: customerv1.UpsertResult_UPSERT_RESULT_CREATED},
		1: {code: codes.InvalidArgument, reason: "INVALID_ARGUMENT", field: "items[1].customer.credit_limit.currency_code"},
		2: {code: codes.AlreadyExists, reason: "EXTERNAL_REF_TAKEN", field: "items[2].customer.external_refs[0]"},
		3: {code: codes.InvalidArgument, reason: "INVALID_ARGUMENT", field: "items[3].customer.parent_id"},
		4: {result: customerv1.UpsertResult_UPSERT_RESULT_UPDATED},
		5: {result: customerv1.UpsertResult_UPSERT_RESULT_UNCHANGED},
		6: {code: codes.PermissionDenied, reason: "FIELD_OWNED_BY_ROLE", field: "items[6].customer.payment_terms"},
		7: {code: codes.InvalidArgument, reason: "INVALID_ARGUMENT", field: "items[7].customer.display_name"},
		8: {result: customerv1.UpsertResult_UPSERT_RESULT_CREATED},
		// A contract (protovalidate) rule fails the item alone.
		9: {code: codes.InvalidArgument, reason: "INVALID_ARGUMENT", field: "items[9].customer.email"},
	}
	if len(resp.GetResults()) != len(items) {
		t.Fatalf("%d results for %d items", len(resp.GetResults()), len(items))
	}
	for i, w := range want {
		r := resp.GetResults()[i]
		t.Run(fmt.Sprintf("item %d", i), func(t *testing.T) {
			if r.GetIndex() != int32(i) {
				t.Errorf("index %d", r.GetIndex())
			}
			if w.code == codes.OK {
				if r.GetError() != nil || r.GetResult() != w.result || r.GetCustomerId() == "" {
					t.Fatalf("result %v error %v, want %v", r.GetResult(), r.GetError(), w.result)
				}
				return
			}
			if r.GetCustomerId() != "" || r.GetResult() != customerv1.UpsertResult_UPSERT_RESULT_UNSPECIFIED {
				t.Errorf("failed item carries id %q result %v", r.GetCustomerId(), r.GetResult())
			}
			got := wantErr(t, status.FromProto(r.GetError()).Err(), w.code, w.reason, w.field)
			if w.reason == "EXTERNAL_REF_TAKEN" && got.meta["holder_id"] != existing.GetId() {
				t.Errorf("holder %q, want %s", got.meta["holder_id"], existing.GetId())
			}
		})
	}
	res := resp.GetResults()
	if res[0].GetCustomerId() != res[4].GetCustomerId() || res[5].GetCustomerId() != kept.GetId() {
		t.Errorf("items of one ref must land on one account: %s %s / %s %s", res[0].GetCustomerId(), res[4].GetCustomerId(), res[5].GetCustomerId(), kept.GetId())
	}
	if got := e.get(t, res[0].GetCustomerId()).GetDisplayName(); got != "Alpha renamed" {
		t.Errorf("item 4 applied after item 0: name %q", got)
	}
	if got := e.get(t, res[8].GetCustomerId()).GetParentId(); got != existing.GetId() {
		t.Errorf("item 8 parent %q", got)
	}
	for _, id := range []string{"A2", "A3", "A4", "A6", "A7", "A9"} {
		l, err := e.c.ListCustomers(admin(t), &customerv1.ListCustomersRequest{ExternalRefSystem: "salesforce", ExternalRefId: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.GetCustomers()) != 0 {
			t.Errorf("failed item %s stored %v", id, l.GetCustomers())
		}
	}
	if n := len(e.all(t)); n != 4 {
		t.Errorf("%d accounts, want 4 (2 before, Alpha, Beta)", n)
	}
	// Alpha created and renamed, Beta created: three events, no more.
	if got := eventTypes(e.events(t)[before:]); !slices.Equal(got, []string{"CustomerCreated", "CustomerUpdated", "CustomerCreated"}) {
		t.Errorf("events %v", got)
	}

	t.Run("more than 1000 items", func(t *testing.T) {
		big := make([]*customerv1.UpsertCustomerByExternalRefRequest, customer.MaxBatchItems+1)
		for i := range big {
			big[i] = item("salesforce", fmt.Sprint("B", i), account("B", "eu"))
		}
		_, err := e.c.BatchUpsertCustomers(admin(t), &customerv1.BatchUpsertCustomersRequest{Items: big})
		wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "items")
	})
}

// TestBatchUpsertLoad loads accounts in full batches of 1,000 and reads
// them back by every index, as an integration engineer's first load does.
func TestBatchUpsertLoad(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	const batches = 3
	for b := range batches {
		items := make([]*customerv1.UpsertCustomerByExternalRefRequest, customer.MaxBatchItems)
		for i := range items {
			region := []string{"eu", "na"}[i%2]
			items[i] = &customerv1.UpsertCustomerByExternalRefRequest{
				ExternalRef: &typev1.ExternalRef{System: "salesforce", Id: fmt.Sprintf("SF%d-%04d", b, i)},
				Customer:    account(fmt.Sprintf("Account %d-%d", b, i), region, limit("EUR", "1000")),
			}
		}
		resp, err := e.c.BatchUpsertCustomers(as(t, "erp", ""), &customerv1.BatchUpsertCustomersRequest{Items: items})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetResults() {
			if r.GetResult() != customerv1.UpsertResult_UPSERT_RESULT_CREATED {
				t.Fatalf("item %d: %v %v", r.GetIndex(), r.GetResult(), r.GetError())
			}
		}
	}
	all := e.all(t)
	if len(all) != batches*customer.MaxBatchItems {
		t.Fatalf("%d accounts", len(all))
	}
	if !slices.IsSortedFunc(all, func(a, b *customerv1.Customer) int { return strings.Compare(a.GetId(), b.GetId()) }) {
		t.Error("list is not in creation order")
	}
	if all[0].GetDisplayName() != "Account 0-0" || all[len(all)-1].GetDisplayName() != "Account 2-999" {
		t.Errorf("first %q last %q", all[0].GetDisplayName(), all[len(all)-1].GetDisplayName())
	}
	if n := len(e.events(t)); n != 2*batches*customer.MaxBatchItems {
		t.Errorf("%d events, want CustomerCreated and CreditLimitChanged per account", n)
	}
	if e.notified.Load() != batches {
		t.Errorf("Notify called %d times, want once per batch", e.notified.Load())
	}
}

func TestListCustomers(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	group := e.create(t, admin(t), account("Group", "eu"))
	var euChildren, naAll []*customerv1.Customer
	for i := range 7 {
		euChildren = append(euChildren, e.create(t, admin(t), account(fmt.Sprint("EU child ", i), "eu", parent(group.GetId()), ref("salesforce", fmt.Sprint("EU", i)))))
		naAll = append(naAll, e.create(t, admin(t), account(fmt.Sprint("NA ", i), "na")))
	}
	for _, c := range []*customerv1.Customer{euChildren[1], euChildren[4], naAll[2]} {
		if _, err := e.c.BlockCustomer(as(t, "erp", ""), &customerv1.BlockCustomerRequest{Id: c.GetId(), Reason: "overdue"}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(cs []*customerv1.Customer) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.GetId())
		}
		return out
	}
	tests := []struct {
		name string
		ctx  context.Context
		req  *customerv1.ListCustomersRequest
		want []string
	}{
		{"all", admin(t), &customerv1.ListCustomersRequest{}, append([]string{group.GetId()}, interleave(ids(euChildren), ids(naAll))...)},
		{"by parent", admin(t), &customerv1.ListCustomersRequest{ParentId: group.GetId()}, ids(euChildren)},
		{"by region", admin(t), &customerv1.ListCustomersRequest{Region: "na"}, ids(naAll)},
		{"by status", admin(t), &customerv1.ListCustomersRequest{Status: customerv1.CustomerStatus_CUSTOMER_STATUS_BLOCKED}, []string{euChildren[1].GetId(), naAll[2].GetId(), euChildren[4].GetId()}},
		{"by region and status", admin(t), &customerv1.ListCustomersRequest{Region: "eu", Status: customerv1.CustomerStatus_CUSTOMER_STATUS_BLOCKED}, []string{euChildren[1].GetId(), euChildren[4].GetId()}},
		{"by parent and status", admin(t), &customerv1.ListCustomersRequest{ParentId: group.GetId(), Status: customerv1.CustomerStatus_CUSTOMER_STATUS_ACTIVE}, ids(slices.Concat(euChildren[:1], euChildren[2:4], euChildren[5:]))},
		{"by external ref", admin(t), &customerv1.ListCustomersRequest{ExternalRefSystem: "salesforce", ExternalRefId: "EU3"}, []string{euChildren[3].GetId()}},
		{"unknown external ref", admin(t), &customerv1.ListCustomersRequest{ExternalRefSystem: "salesforce", ExternalRefId: "nope"}, nil},
		{"region-scoped key sees its region", as(t, "crm", "na"), &customerv1.ListCustomersRequest{}, ids(naAll)},
		{"region-scoped key asking for another region", as(t, "crm", "na"), &customerv1.ListCustomersRequest{Region: "eu"}, nil},
		{"region-scoped key by another region's ref", as(t, "crm", "na"), &customerv1.ListCustomersRequest{ExternalRefSystem: "salesforce", ExternalRefId: "EU3"}, nil},
	}
	for _, tt := range tests {
		for _, size := range []int32{0, 1, 2, 3} {
			t.Run(fmt.Sprintf("%s/page size %d", tt.name, size), func(t *testing.T) {
				req := proto.Clone(tt.req).(*customerv1.ListCustomersRequest)
				req.PageSize = size
				var got []string
				for pages := 0; ; pages++ {
					if pages > 20 {
						t.Fatal("paging does not end")
					}
					resp, err := e.c.ListCustomers(tt.ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					if size > 0 && len(resp.GetCustomers()) > int(size) {
						t.Fatalf("page of %d, size %d", len(resp.GetCustomers()), size)
					}
					got = append(got, ids(resp.GetCustomers())...)
					if resp.GetNextPageToken() == "" {
						break
					}
					req.PageToken = resp.GetNextPageToken()
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("got  %v\nwant %v", got, tt.want)
				}
			})
		}
	}

	first, err := e.c.ListCustomers(admin(t), &customerv1.ListCustomersRequest{PageSize: 2, Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		name  string
		req   *customerv1.ListCustomersRequest
		field string
	}{
		{"token of other filters", &customerv1.ListCustomersRequest{PageSize: 2, Region: "na", PageToken: first.GetNextPageToken()}, "page_token"},
		{"garbage token", &customerv1.ListCustomersRequest{PageToken: "not-a-token"}, "page_token"},
		{"page size too large", &customerv1.ListCustomersRequest{PageSize: 501}, "page_size"},
		{"ref id without system", &customerv1.ListCustomersRequest{ExternalRefId: "EU3"}, "external_ref_system"},
		{"unknown status", &customerv1.ListCustomersRequest{Status: 9}, "status"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.c.ListCustomers(admin(t), tt.req)
			wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", tt.field)
		})
	}
}

// interleave merges two lists created alternately, a[0] first.
func interleave(a, b []string) []string {
	var out []string
	for i := range a {
		out = append(out, a[i], b[i])
	}
	return out
}

func TestHierarchy(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	root := e.create(t, admin(t), account("Root", "eu", limit("EUR", "100000")))
	sub := e.create(t, admin(t), account("Sub", "eu", parent(root.GetId())))
	leaf1 := e.create(t, admin(t), account("Leaf 1", "eu", parent(sub.GetId())))
	leaf2 := e.create(t, admin(t), account("Leaf 2", "eu", parent(sub.GetId()), limit("EUR", "500")))

	t.Run("any node answers root, path and children", func(t *testing.T) {
		tests := []struct {
			id       string
			path     []string
			children []string
		}{
			{root.GetId(), []string{root.GetId()}, []string{sub.GetId()}},
			{sub.GetId(), []string{root.GetId(), sub.GetId()}, []string{leaf1.GetId(), leaf2.GetId()}},
			{leaf2.GetId(), []string{root.GetId(), sub.GetId(), leaf2.GetId()}, nil},
		}
		for _, tt := range tests {
			resp, err := e.c.GetCustomerHierarchy(as(t, "crm", "eu"), &customerv1.GetCustomerHierarchyRequest{Id: tt.id})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetRoot().GetId() != root.GetId() || !resp.GetRoot().GetHasCreditLimit() {
				t.Errorf("root %v", resp.GetRoot())
			}
			var path, children []string
			for _, s := range resp.GetPath() {
				path = append(path, s.GetId())
			}
			for _, s := range resp.GetChildren() {
				children = append(children, s.GetId())
			}
			if !slices.Equal(path, tt.path) || !slices.Equal(children, tt.children) {
				t.Errorf("%s: path %v children %v, want %v %v", tt.id, path, children, tt.path, tt.children)
			}
		}
	})

	t.Run("region-scoped key of another region", func(t *testing.T) {
		_, err := e.c.GetCustomerHierarchy(as(t, "crm", "na"), &customerv1.GetCustomerHierarchyRequest{Id: sub.GetId()})
		wantErr(t, err, codes.NotFound, "NOT_FOUND", "")
	})

	mask := &fieldmaskpb.FieldMask{Paths: []string{"parent_id"}}
	reparent := func(t *testing.T, id, parentID string) error {
		t.Helper()
		_, err := e.c.UpdateCustomer(admin(t), &customerv1.UpdateCustomerRequest{Customer: &customerv1.Customer{Id: id, ParentId: parentID}, UpdateMask: mask})
		return err
	}
	t.Run("cycles are refused", func(t *testing.T) {
		for _, tt := range []struct{ name, id, parent string }{
			{"own parent", sub.GetId(), sub.GetId()},
			{"under its child", root.GetId(), sub.GetId()},
			{"under its grandchild", root.GetId(), leaf1.GetId()},
		} {
			t.Run(tt.name, func(t *testing.T) {
				before := e.snapshot(t)
				err := reparent(t, tt.id, tt.parent)
				wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "customer.parent_id")
				e.unchangedSince(t, before)
			})
		}
	})

	t.Run("depth is at most 10", func(t *testing.T) {
		chain := []*customerv1.Customer{e.create(t, admin(t), account("Level 1", "na"))}
		for lvl := 2; lvl <= customer.MaxDepth; lvl++ {
			chain = append(chain, e.create(t, admin(t), account(fmt.Sprint("Level ", lvl), "na", parent(chain[len(chain)-1].GetId()))))
		}
		before := e.snapshot(t)
		_, err := e.c.CreateCustomer(admin(t), &customerv1.CreateCustomerRequest{Customer: account("Level 11", "na", parent(chain[9].GetId()))})
		got := wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "customer.parent_id")
		if !strings.Contains(got.msg, "11 levels") {
			t.Errorf("message %q should say how deep", got.msg)
		}
		// A two-level subtree moved under level 9 would reach level 11.
		top := e.create(t, admin(t), account("Top", "na"))
		e.create(t, admin(t), account("Below top", "na", parent(top.GetId())))
		before = e.snapshot(t)
		wantErr(t, reparent(t, top.GetId(), chain[8].GetId()), codes.InvalidArgument, "INVALID_ARGUMENT", "customer.parent_id")
		e.unchangedSince(t, before)
		if err := reparent(t, top.GetId(), chain[7].GetId()); err != nil {
			t.Errorf("a subtree reaching level 10 exactly: %v", err)
		}
	})

	t.Run("an account with children keeps its region", func(t *testing.T) {
		_, err := e.c.UpdateCustomer(admin(t), &customerv1.UpdateCustomerRequest{
			Customer: &customerv1.Customer{Id: root.GetId(), Region: "na"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"region"}}})
		wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "customer.region")
	})

	t.Run("moving a leaf updates both parents' children", func(t *testing.T) {
		if err := reparent(t, leaf1.GetId(), root.GetId()); err != nil {
			t.Fatal(err)
		}
		resp, err := e.c.GetCustomerHierarchy(admin(t), &customerv1.GetCustomerHierarchyRequest{Id: root.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetChildren()) != 2 || resp.GetChildren()[1].GetId() != leaf1.GetId() {
			t.Errorf("root children %v", resp.GetChildren())
		}
		l, err := e.c.ListCustomers(admin(t), &customerv1.ListCustomersRequest{ParentId: sub.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.GetCustomers()) != 1 || l.GetCustomers()[0].GetId() != leaf2.GetId() {
			t.Errorf("sub's children %v", l.GetCustomers())
		}
	})
}

func TestRegionScope(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	na := e.create(t, admin(t), account("NA", "na", limit("USD", "100")))
	eu := as(t, "crm", "eu")
	calls := []struct {
		name string
		call func() error
	}{
		{"GetCustomer", func() error {
			_, err := e.c.GetCustomer(eu, &customerv1.GetCustomerRequest{Id: na.GetId()})
			return err
		}},
		{"GetCustomerHierarchy", func() error {
			_, err := e.c.GetCustomerHierarchy(eu, &customerv1.GetCustomerHierarchyRequest{Id: na.GetId()})
			return err
		}},
		{"CheckCredit", func() error {
			_, err := e.c.CheckCredit(eu, &customerv1.CheckCreditRequest{Id: na.GetId(), Amount: money("USD", "1")})
			return err
		}},
		{"ReserveCredit", func() error {
			_, err := e.c.ReserveCredit(as(t, "service", "eu"), &customerv1.ReserveCreditRequest{CustomerId: na.GetId(), OrderId: "ord_1", Amount: money("USD", "1")})
			return err
		}},
		{"ReleaseCredit", func() error {
			_, err := e.c.ReleaseCredit(as(t, "service", "eu"), &customerv1.ReleaseCreditRequest{CustomerId: na.GetId(), OrderId: "ord_1"})
			return err
		}},
		{"BlockCustomer", func() error {
			_, err := e.c.BlockCustomer(as(t, "erp", "eu"), &customerv1.BlockCustomerRequest{Id: na.GetId()})
			return err
		}},
		{"UpdateCustomer", func() error {
			_, err := e.c.UpdateCustomer(eu, &customerv1.UpdateCustomerRequest{Customer: &customerv1.Customer{Id: na.GetId(), DisplayName: "x"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
			return err
		}},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			before := e.snapshot(t)
			got := wantErr(t, tt.call(), codes.NotFound, "NOT_FOUND", "")
			if got.code == codes.PermissionDenied {
				t.Error("a region-scoped key must get NOT_FOUND, never PERMISSION_DENIED")
			}
			e.unchangedSince(t, before)
		})
	}
	if _, err := e.c.GetCustomer(as(t, "crm", "na"), &customerv1.GetCustomerRequest{Id: na.GetId()}); err != nil {
		t.Errorf("key of the account's own region: %v", err)
	}
}

func TestBlockAndUnblock(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	c := e.create(t, admin(t), account("Late payer", "eu", limit("EUR", "1000")))
	erp := as(t, "erp", "")
	b, err := e.c.BlockCustomer(erp, &customerv1.BlockCustomerRequest{Id: c.GetId(), Reason: "invoices 90 days overdue"})
	if err != nil {
		t.Fatal(err)
	}
	if b.GetCustomer().GetStatus() != customerv1.CustomerStatus_CUSTOMER_STATUS_BLOCKED || b.GetCustomer().GetEtag() != "2" ||
		b.GetCustomer().GetStatusReason() != "invoices 90 days overdue" {
		t.Fatalf("after block: %v", b.GetCustomer())
	}
	// The reason is output only: an update cannot set or clear it.
	upd, err := e.c.UpdateCustomer(admin(t), &customerv1.UpdateCustomerRequest{
		Customer:   &customerv1.Customer{Id: c.GetId(), DisplayName: "Late payer GmbH", StatusReason: "forged"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
	if err != nil {
		t.Fatal(err)
	}
	if upd.GetCustomer().GetStatusReason() != "invoices 90 days overdue" {
		t.Errorf("reason after an update: %q", upd.GetCustomer().GetStatusReason())
	}
	again, err := e.c.BlockCustomer(erp, &customerv1.BlockCustomerRequest{Id: c.GetId()})
	if err != nil || again.GetCustomer().GetEtag() != "3" {
		t.Errorf("blocking twice: %v etag %q, want a no-op", err, again.GetCustomer().GetEtag())
	}
	chk, err := e.c.CheckCredit(erp, &customerv1.CheckCreditRequest{Id: c.GetId(), Amount: money("EUR", "1")})
	if err != nil {
		t.Fatal(err)
	}
	if chk.GetDecision() != customerv1.CreditDecision_CREDIT_DECISION_DECLINED || chk.GetReason() != customer.DeclineCustomerBlocked {
		t.Errorf("blocked account credit check %v %q", chk.GetDecision(), chk.GetReason())
	}
	u, err := e.c.UnblockCustomer(erp, &customerv1.UnblockCustomerRequest{Id: c.GetId(), Reason: "paid"})
	if err != nil {
		t.Fatal(err)
	}
	if u.GetCustomer().GetStatus() != customerv1.CustomerStatus_CUSTOMER_STATUS_ACTIVE || u.GetCustomer().GetEtag() != "4" || u.GetCustomer().GetStatusReason() != "paid" {
		t.Errorf("after unblock: %v", u.GetCustomer())
	}
	if got := eventTypes(e.events(t)); !slices.Equal(got, []string{"CustomerCreated", "CreditLimitChanged", "CustomerUpdated", "CustomerUpdated", "CustomerUpdated"}) {
		t.Errorf("events %v", got)
	}
	_, err = e.c.BlockCustomer(erp, &customerv1.BlockCustomerRequest{Id: c.GetId(), Reason: strings.Repeat("x", 501)})
	wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "reason")
}

// creditGroup is a parent carrying a group limit and three subsidiaries
// without limits of their own.
type creditGroup struct {
	parent   *customerv1.Customer
	children []*customerv1.Customer
}

func (e *env) creditGroup(t *testing.T, currency, amount string) creditGroup {
	t.Helper()
	g := creditGroup{parent: e.create(t, admin(t), account("Group", "eu", limit(currency, amount)))}
	for i := range 3 {
		g.children = append(g.children, e.create(t, admin(t), account(fmt.Sprint("Subsidiary ", i), "eu", parent(g.parent.GetId()))))
	}
	return g
}

func (e *env) position(t *testing.T, id, currency string) *customerv1.CreditPosition {
	t.Helper()
	resp, err := e.c.CheckCredit(admin(t), &customerv1.CheckCreditRequest{Id: id, Amount: money(currency, "0.01")})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetPosition()
}

func TestCredit(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	g := e.creditGroup(t, "EUR", "1000")
	svc := as(t, "service", "")
	reserve := func(t *testing.T, customerID, order, amount string) *customerv1.ReserveCreditResponse {
		t.Helper()
		resp, err := e.c.ReserveCredit(svc, &customerv1.ReserveCreditRequest{CustomerId: customerID, OrderId: order, Amount: money("EUR", amount)})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	t.Run("subsidiaries share the group limit", func(t *testing.T) {
		r := reserve(t, g.children[0].GetId(), "ord_1", "600")
		if r.GetDecision() != customerv1.CreditDecision_CREDIT_DECISION_APPROVED {
			t.Fatalf("reserve 600: %v %s", r.GetDecision(), r.GetReason())
		}
		p := r.GetPosition()
		if p.GetCreditAccountId() != g.parent.GetId() || p.GetExposure().GetAmount() != "600.00" || p.GetAvailable().GetAmount() != "400.00" || p.GetLimit().GetAmount() != "1000.00" {
			t.Errorf("position %v", p)
		}
		r = reserve(t, g.children[1].GetId(), "ord_2", "400.01")
		if r.GetDecision() != customerv1.CreditDecision_CREDIT_DECISION_DECLINED || r.GetReason() != customer.DeclineCreditLimitExceeded {
			t.Errorf("reserve 400.01 of 400 left: %v %s", r.GetDecision(), r.GetReason())
		}
		r = reserve(t, g.children[1].GetId(), "ord_2", "400")
		if r.GetDecision() != customerv1.CreditDecision_CREDIT_DECISION_APPROVED || r.GetPosition().GetAvailable().GetAmount() != "0.00" {
			t.Errorf("a declined order retried for what is left: %v %v", r.GetDecision(), r.GetPosition())
		}
		if p := e.position(t, g.parent.GetId(), "EUR"); p.GetExposure().GetAmount() != "1000.00" {
			t.Errorf("parent exposure %v", p.GetExposure())
		}
	})

	t.Run("reserving again for one order counts once", func(t *testing.T) {
		r := reserve(t, g.children[0].GetId(), "ord_1", "600.00")
		if r.GetDecision() != customerv1.CreditDecision_CREDIT_DECISION_APPROVED || r.GetPosition().GetExposure().GetAmount() != "1000.00" {
			t.Errorf("replay: %v %v", r.GetDecision(), r.GetPosition())
		}
		_, err := e.c.ReserveCredit(svc, &customerv1.ReserveCreditRequest{CustomerId: g.children[0].GetId(), OrderId: "ord_1", Amount: money("EUR", "601")})
		wantErr(t, err, codes.FailedPrecondition, customer.ReasonReservationMismatch, "amount")
		_, err = e.c.ReserveCredit(svc, &customerv1.ReserveCreditRequest{CustomerId: g.children[2].GetId(), OrderId: "ord_1", Amount: money("EUR", "600")})
		wantErr(t, err, codes.FailedPrecondition, customer.ReasonReservationMismatch, "order_id")
	})

	t.Run("release is idempotent", func(t *testing.T) {
		r, err := e.c.ReleaseCredit(svc, &customerv1.ReleaseCreditRequest{CustomerId: g.children[0].GetId(), OrderId: "ord_1"})
		if err != nil {
			t.Fatal(err)
		}
		if !r.GetReleased() || r.GetPosition().GetExposure().GetAmount() != "400.00" {
			t.Errorf("release: %v %v", r.GetReleased(), r.GetPosition())
		}
		r, err = e.c.ReleaseCredit(svc, &customerv1.ReleaseCreditRequest{CustomerId: g.children[0].GetId(), OrderId: "ord_1"})
		if err != nil || r.GetReleased() || r.GetPosition().GetExposure().GetAmount() != "400.00" {
			t.Errorf("second release: %v %v %v", err, r.GetReleased(), r.GetPosition())
		}
		_, err = e.c.ReleaseCredit(svc, &customerv1.ReleaseCreditRequest{CustomerId: g.children[0].GetId(), OrderId: "ord_2"})
		wantErr(t, err, codes.FailedPrecondition, customer.ReasonReservationMismatch, "order_id")
	})

	decisions := []struct {
		name     string
		setup    func(t *testing.T) (id string)
		amount   *typev1.Money
		decision customerv1.CreditDecision
		reason   string
	}{
		{"fits", func(*testing.T) string { return g.children[2].GetId() }, money("EUR", "600"), customerv1.CreditDecision_CREDIT_DECISION_APPROVED, ""},
		{"exceeds", func(*testing.T) string { return g.children[2].GetId() }, money("EUR", "600.01"), customerv1.CreditDecision_CREDIT_DECISION_DECLINED, customer.DeclineCreditLimitExceeded},
		{"no limit anywhere up the tree", func(t *testing.T) string {
			return e.create(t, admin(t), account("No credit", "eu")).GetId()
		}, money("EUR", "1"), customerv1.CreditDecision_CREDIT_DECISION_DECLINED, customer.DeclineNoCreditLimit},
		{"credit blocked on the credit account", func(t *testing.T) string {
			p := e.create(t, admin(t), account("Blocked group", "eu", limit("EUR", "1000"), func(c *customerv1.Customer) { c.CreditBlocked = true }))
			return e.create(t, admin(t), account("Child", "eu", parent(p.GetId()))).GetId()
		}, money("EUR", "1"), customerv1.CreditDecision_CREDIT_DECISION_DECLINED, customer.DeclineCreditBlocked},
		{"credit blocked on the customer", func(t *testing.T) string {
			return e.create(t, admin(t), account("Blocked child", "eu", parent(g.parent.GetId()), func(c *customerv1.Customer) { c.CreditBlocked = true })).GetId()
		}, money("EUR", "1"), customerv1.CreditDecision_CREDIT_DECISION_DECLINED, customer.DeclineCreditBlocked},
	}
	for _, tt := range decisions {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.setup(t)
			before := e.snapshot(t)
			chk, err := e.c.CheckCredit(as(t, "crm", ""), &customerv1.CheckCreditRequest{Id: id, Amount: tt.amount})
			if err != nil {
				t.Fatal(err)
			}
			if chk.GetDecision() != tt.decision || chk.GetReason() != tt.reason {
				t.Errorf("check: %v %q, want %v %q", chk.GetDecision(), chk.GetReason(), tt.decision, tt.reason)
			}
			e.unchangedSince(t, before)
			res, err := e.c.ReserveCredit(svc, &customerv1.ReserveCreditRequest{CustomerId: id, OrderId: "probe-" + id, Amount: tt.amount})
			if err != nil {
				t.Fatal(err)
			}
			if res.GetDecision() != tt.decision || res.GetReason() != tt.reason {
				t.Errorf("reserve: %v %q, want %v %q", res.GetDecision(), res.GetReason(), tt.decision, tt.reason)
			}
			if res.GetDecision() == customerv1.CreditDecision_CREDIT_DECISION_APPROVED {
				if _, err := e.c.ReleaseCredit(svc, &customerv1.ReleaseCreditRequest{CustomerId: id, OrderId: "probe-" + id}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}

	refusals := []struct {
		name   string
		amount *typev1.Money
		field  string
	}{
		{"currency other than the limit's", money("USD", "1"), "amount.currency_code"},
		{"unknown currency", money("EUX", "1"), "amount.currency_code"},
		{"zero", money("EUR", "0"), "amount.amount"},
		{"negative", money("EUR", "-5"), "amount.amount"},
		{"finer than cents", money("EUR", "1.001"), "amount.amount"},
		{"not a number", money("EUR", "1e3"), "amount.amount"},
		{"missing", nil, "amount"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := e.snapshot(t)
			_, err := e.c.CheckCredit(admin(t), &customerv1.CheckCreditRequest{Id: g.children[0].GetId(), Amount: tt.amount})
			wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", tt.field)
			_, err = e.c.ReserveCredit(svc, &customerv1.ReserveCreditRequest{CustomerId: g.children[0].GetId(), OrderId: "ord_bad", Amount: tt.amount})
			wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", tt.field)
			e.unchangedSince(t, before)
		})
	}
}

// TestCreditFollowsHierarchyChanges checks that open reservations move to
// the new credit account when limits or parents change, so that exposure
// always equals the reservations counted on it.
func TestCreditFollowsHierarchyChanges(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	g := e.creditGroup(t, "EUR", "1000")
	child := g.children[0]
	erp := as(t, "erp", "")
	update := func(t *testing.T, c *customerv1.Customer, paths ...string) error {
		t.Helper()
		_, err := e.c.UpdateCustomer(erp, &customerv1.UpdateCustomerRequest{Customer: c, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
		return err
	}
	if _, err := e.c.ReserveCredit(erp, &customerv1.ReserveCreditRequest{CustomerId: child.GetId(), OrderId: "ord_1", Amount: money("EUR", "300")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.ReserveCredit(erp, &customerv1.ReserveCreditRequest{CustomerId: g.parent.GetId(), OrderId: "ord_2", Amount: money("EUR", "100")}); err != nil {
		t.Fatal(err)
	}
	exposure := func(t *testing.T, of string) (account, amount string) {
		t.Helper()
		p := e.position(t, of, "EUR")
		return p.GetCreditAccountId(), p.GetExposure().GetAmount()
	}
	usd := e.create(t, admin(t), account("Dollar group", "eu", limit("USD", "5000")))
	eur := e.create(t, admin(t), account("Euro group", "eu", limit("EUR", "5000")))

	steps := []struct {
		name       string
		change     func(t *testing.T) error
		wantErr    string // reason of a refusal
		wantField  string
		wantAcct   func() string
		wantChild  string
		wantParent string
	}{
		{"a limit set on the subsidiary takes its exposure along",
			func(t *testing.T) error {
				return update(t, &customerv1.Customer{Id: child.GetId(), CreditLimit: money("EUR", "500")}, "credit_limit")
			}, "", "", func() string { return child.GetId() }, "300.00", "100.00"},
		{"its currency cannot change while credit is reserved",
			func(t *testing.T) error {
				return update(t, &customerv1.Customer{Id: child.GetId(), CreditLimit: money("USD", "500")}, "credit_limit")
			}, customer.ReasonReservationsOpen, "customer.credit_limit.currency_code", func() string { return child.GetId() }, "300.00", "100.00"},
		{"removing the limit gives the exposure back to the group",
			func(t *testing.T) error { return update(t, &customerv1.Customer{Id: child.GetId()}, "credit_limit") },
			"", "", func() string { return g.parent.GetId() }, "400.00", "400.00"},
		{"a move under a limit in another currency is refused",
			func(t *testing.T) error {
				return update(t, &customerv1.Customer{Id: child.GetId(), ParentId: usd.GetId()}, "parent_id")
			}, customer.ReasonReservationsOpen, "customer.parent_id", func() string { return g.parent.GetId() }, "400.00", "400.00"},
		{"a move to another group takes the exposure along",
			func(t *testing.T) error {
				return update(t, &customerv1.Customer{Id: child.GetId(), ParentId: eur.GetId()}, "parent_id")
			}, "", "", func() string { return eur.GetId() }, "300.00", "100.00"},
		{"a move to the root leaves it without credit, reservation kept",
			func(t *testing.T) error { return update(t, &customerv1.Customer{Id: child.GetId()}, "parent_id") },
			"", "", func() string { return "" }, "", "100.00"},
		{"back under the group counts it again",
			func(t *testing.T) error {
				return update(t, &customerv1.Customer{Id: child.GetId(), ParentId: g.parent.GetId()}, "parent_id")
			}, "", "", func() string { return g.parent.GetId() }, "400.00", "400.00"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := e.snapshot(t)
			err := st.change(t)
			if st.wantErr != "" {
				wantErr(t, err, codes.FailedPrecondition, st.wantErr, st.wantField)
				e.unchangedSince(t, before)
			} else if err != nil {
				t.Fatal(err)
			}
			acct, amount := exposure(t, child.GetId())
			if acct != st.wantAcct() || amount != st.wantChild {
				t.Errorf("child's credit account %s exposure %q, want %s %q", acct, amount, st.wantAcct(), st.wantChild)
			}
			if _, amount := exposure(t, g.parent.GetId()); amount != st.wantParent {
				t.Errorf("group exposure %q, want %q", amount, st.wantParent)
			}
		})
	}
	if p := e.position(t, eur.GetId(), "EUR"); p.GetExposure().GetAmount() != "0.00" {
		t.Errorf("the euro group kept exposure %v after the account left", p.GetExposure())
	}
	r, err := e.c.ReleaseCredit(erp, &customerv1.ReleaseCreditRequest{CustomerId: child.GetId(), OrderId: "ord_1"})
	if err != nil || !r.GetReleased() || r.GetPosition().GetExposure().GetAmount() != "100.00" {
		t.Errorf("release after the moves: %v %v", err, r.GetPosition())
	}
}

// TestConcurrentReservations reserves from many goroutines at once on one
// group through the gRPC server: exactly floor(limit/amount) succeed and
// exposure never passes the limit.
func TestConcurrentReservations(t *testing.T) {
	e := newEnv(t, storage.Options{}) // fsync'd, as in production
	g := e.creditGroup(t, "EUR", "1000")
	const (
		workers = 64
		amount  = "30"
		fit     = 33 // floor(1000 / 30)
	)
	var (
		approved, declined atomic.Int64
		wg                 sync.WaitGroup
		start              = make(chan struct{})
	)
	ctx := as(t, "service", "")
	for w := range workers {
		wg.Go(func() {
			<-start
			c := g.children[w%len(g.children)]
			r, err := e.c.ReserveCredit(ctx, &customerv1.ReserveCreditRequest{CustomerId: c.GetId(), OrderId: fmt.Sprint("ord_", w), Amount: money("EUR", amount)})
			if err != nil {
				t.Error(err)
				return
			}
			switch r.GetDecision() {
			case customerv1.CreditDecision_CREDIT_DECISION_APPROVED:
				approved.Add(1)
			default:
				if r.GetReason() != customer.DeclineCreditLimitExceeded {
					t.Errorf("declined for %q", r.GetReason())
				}
				declined.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if approved.Load() != fit || declined.Load() != workers-fit {
		t.Errorf("approved %d declined %d, want %d and %d", approved.Load(), declined.Load(), fit, workers-fit)
	}
	p := e.position(t, g.parent.GetId(), "EUR")
	if p.GetExposure().GetAmount() != "990.00" {
		t.Errorf("exposure %v, want 990.00", p.GetExposure())
	}

	// Concurrent releases give everything back.
	var (
		releases sync.WaitGroup
		released atomic.Int64
	)
	for w := range workers {
		releases.Go(func() {
			c := g.children[w%len(g.children)]
			r, err := e.c.ReleaseCredit(ctx, &customerv1.ReleaseCreditRequest{CustomerId: c.GetId(), OrderId: fmt.Sprint("ord_", w)})
			if err != nil {
				t.Error(err)
				return
			}
			if r.GetReleased() {
				released.Add(1)
			}
		})
	}
	releases.Wait()
	if released.Load() != fit {
		t.Errorf("%d reservations released, want the %d approved ones (a declined order holds nothing)", released.Load(), fit)
	}
	if p := e.position(t, g.parent.GetId(), "EUR"); p.GetExposure().GetAmount() != "0.00" {
		t.Errorf("exposure after releasing everything %v", p.GetExposure())
	}

	// The same order reserved from many goroutines counts once.
	var same sync.WaitGroup
	for range 20 {
		same.Go(func() {
			r, err := e.c.ReserveCredit(ctx, &customerv1.ReserveCreditRequest{CustomerId: g.children[0].GetId(), OrderId: "ord_same", Amount: money("EUR", "250")})
			if err != nil || r.GetDecision() != customerv1.CreditDecision_CREDIT_DECISION_APPROVED {
				t.Errorf("replayed reservation: %v %v", err, r.GetDecision())
			}
		})
	}
	same.Wait()
	if p := e.position(t, g.parent.GetId(), "EUR"); p.GetExposure().GetAmount() != "250.00" {
		t.Errorf("exposure after 20 identical reservations %v, want 250.00", p.GetExposure())
	}
}

// BenchmarkBatchUpsert loads batches of 1,000 new accounts through gRPC
// into an fsync'd store: b.N=100 is the 100,000-account initial load.
func BenchmarkBatchUpsert(b *testing.B) {
	e := newEnv(b, storage.Options{})
	ctx := as(b, "erp", "")
	n := 0
	for b.Loop() {
		items := make([]*customerv1.UpsertCustomerByExternalRefRequest, customer.MaxBatchItems)
		for i := range items {
			n++
			items[i] = &customerv1.UpsertCustomerByExternalRefRequest{
				ExternalRef: &typev1.ExternalRef{System: "salesforce", Id: fmt.Sprintf("0015g%010d", n)},
				Customer: account(fmt.Sprint("Account ", n), []string{"eu", "na"}[n%2], limit("EUR", "10000"), func(c *customerv1.Customer) {
					c.Email = "ap@example.com"
					c.BillingAddress = &typev1.Address{Lines: []string{"1 Main St"}, City: "Springfield", PostalCode: "12345", CountryCode: "US"}
				}),
			}
		}
		resp, err := e.c.BatchUpsertCustomers(ctx, &customerv1.BatchUpsertCustomersRequest{Items: items})
		if err != nil {
			b.Fatal(err)
		}
		if r := resp.GetResults()[len(items)-1]; r.GetError() != nil {
			b.Fatal(r.GetError())
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "accounts/s")
}

// TestHierarchyChildrenPages pages through an account's children and
// checks the refusals of bad page sizes and tokens.
func TestHierarchyChildrenPages(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	root := e.create(t, admin(t), account("Root", "eu"))
	var want []string
	for i := range 7 {
		c := e.create(t, admin(t), account(fmt.Sprintf("Child %d", i), "eu", parent(root.GetId())))
		want = append(want, c.GetId())
	}

	var (
		got   []string
		token string
		pages int
	)
	for {
		resp, err := e.c.GetCustomerHierarchy(admin(t), &customerv1.GetCustomerHierarchyRequest{Id: root.GetId(), ChildrenPageSize: 3, ChildrenPageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if n := len(resp.GetChildren()); n > 3 {
			t.Fatalf("page of %d children, want at most 3", n)
		}
		if resp.GetRoot().GetId() != root.GetId() {
			t.Errorf("root %v", resp.GetRoot())
		}
		for _, c := range resp.GetChildren() {
			got = append(got, c.GetId())
		}
		token = resp.GetNextChildrenPageToken()
		if token == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Errorf("children %v in %d pages, want %v in 3", got, pages, want)
	}

	all, err := e.c.GetCustomerHierarchy(admin(t), &customerv1.GetCustomerHierarchyRequest{Id: root.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.GetChildren()) != 7 || all.GetNextChildrenPageToken() != "" {
		t.Errorf("default page: %d children, token %q; want all 7 and no token", len(all.GetChildren()), all.GetNextChildrenPageToken())
	}

	first, err := e.c.GetCustomerHierarchy(admin(t), &customerv1.GetCustomerHierarchyRequest{Id: root.GetId(), ChildrenPageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.c.GetCustomerHierarchy(admin(t), &customerv1.GetCustomerHierarchyRequest{Id: want[0], ChildrenPageToken: first.GetNextChildrenPageToken()})
	wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "children_page_token")
	_, err = e.c.GetCustomerHierarchy(admin(t), &customerv1.GetCustomerHierarchyRequest{Id: root.GetId(), ChildrenPageToken: "not-a-token"})
	wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "children_page_token")
	_, err = e.c.GetCustomerHierarchy(admin(t), &customerv1.GetCustomerHierarchyRequest{Id: root.GetId(), ChildrenPageSize: 1001})
	wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "children_page_size")
}

// TestUpsertParentByExternalRef loads a hierarchy the way a CRM knows it,
// by its own ids: parents named by reference, in one batch and one by one,
// and the refusals of an unknown parent, a parent set twice and an account
// naming itself.
func TestUpsertParentByExternalRef(t *testing.T) {
	e := newEnv(t, storage.Options{NoSync: true})
	sf := func(id string) *typev1.ExternalRef { return &typev1.ExternalRef{System: "salesforce", Id: id} }
	item := func(id, name string, parentRef *typev1.ExternalRef) *customerv1.UpsertCustomerByExternalRefRequest {
		return &customerv1.UpsertCustomerByExternalRefRequest{ExternalRef: sf(id), Customer: account(name, "eu"), ParentExternalRef: parentRef}
	}
	resp, err := e.c.BatchUpsertCustomers(admin(t), &customerv1.BatchUpsertCustomersRequest{Items: []*customerv1.UpsertCustomerByExternalRefRequest{
		item("001A", "Group", nil),
		item("001B", "Subsidiary", sf("001A")),
		item("001C", "Plant", sf("001B")),
		item("001D", "Orphan", sf("001Z")),
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := resp.GetResults()
	for i := range 3 {
		if res[i].GetError() != nil {
			t.Fatalf("item %d: %v", i, res[i].GetError())
		}
	}
	if res[3].GetError() == nil || !strings.Contains(res[3].GetError().GetMessage(), "001Z") {
		t.Errorf("unknown parent: %v, want an error naming the reference", res[3].GetError())
	}
	h, err := e.c.GetCustomerHierarchy(admin(t), &customerv1.GetCustomerHierarchyRequest{Id: res[2].GetCustomerId()})
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, s := range h.GetPath() {
		path = append(path, s.GetId())
	}
	if want := []string{res[0].GetCustomerId(), res[1].GetCustomerId(), res[2].GetCustomerId()}; !slices.Equal(path, want) {
		t.Errorf("path %v, want %v", path, want)
	}

	// Moving the plant under the group, one by one.
	one, err := e.c.UpsertCustomerByExternalRef(admin(t), item("001C", "Plant", sf("001A")))
	if err != nil {
		t.Fatal(err)
	}
	if one.GetCustomer().GetParentId() != res[0].GetCustomerId() || one.GetResult() != customerv1.UpsertResult_UPSERT_RESULT_UPDATED {
		t.Errorf("after the move: parent %s, result %s", one.GetCustomer().GetParentId(), one.GetResult())
	}

	before := e.snapshot(t)
	both := item("001E", "Both", sf("001A"))
	both.Customer.ParentId = res[0].GetCustomerId()
	_, err = e.c.UpsertCustomerByExternalRef(admin(t), both)
	wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "parent_external_ref")
	_, err = e.c.UpsertCustomerByExternalRef(admin(t), item("001E", "Self", sf("001E")))
	wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "parent_external_ref")
	_, err = e.c.UpsertCustomerByExternalRef(admin(t), item("001E", "Lost", sf("nope")))
	wantErr(t, err, codes.InvalidArgument, "INVALID_ARGUMENT", "parent_external_ref")
	e.unchangedSince(t, before)
}
