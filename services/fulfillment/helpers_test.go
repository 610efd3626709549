package fulfillment

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"path/filepath"
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
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/money"
	"github.com/millrace/millrace/internal/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the pinned "now" of every test.
var t0 = time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC)

func day(n int) time.Time { return t0.Add(time.Duration(n) * 24 * time.Hour) }

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// testProducts are the catalog of the tests:
//   - VALVE-100 counts whole EA; a CASE is 12 EA, a PALLET 40 CASE.
//   - RESIN-5 counts KG, divisible; a G is 0.001 KG, a BAG 25 KG (whole).
//   - GASKET-7 counts whole EA; a BOX is 100 EA.
func testProducts() []*productpricingv1.Product {
	return []*productpricingv1.Product{
		{Sku: "VALVE-100", Name: "Valve", BaseUnit: "EA", BaseUnitIndivisible: true, Conversions: []*productpricingv1.UnitConversion{
			{Unit: "PALLET", Factor: "40", PerUnit: "CASE", Indivisible: true},
			{Unit: "CASE", Factor: "12", PerUnit: "EA", Indivisible: true},
		}},
		{Sku: "RESIN-5", Name: "Resin", BaseUnit: "KG", Conversions: []*productpricingv1.UnitConversion{
			{Unit: "G", Factor: "0.001", PerUnit: "KG"},
			{Unit: "BAG", Factor: "25", PerUnit: "KG", Indivisible: true},
		}},
		{Sku: "GASKET-7", Name: "Gasket", BaseUnit: "EA", BaseUnitIndivisible: true, Conversions: []*productpricingv1.UnitConversion{
			{Unit: "BOX", Factor: "100", PerUnit: "EA"},
		}},
	}
}

// fakeCatalog is a ProductCatalog over testProducts; down makes it answer
// like an unreachable productpricing.
type fakeCatalog struct {
	products map[string]ProductFacts
	down     atomic.Bool
}

func newFakeCatalog(t *testing.T) *fakeCatalog {
	t.Helper()
	c := &fakeCatalog{products: map[string]ProductFacts{}}
	for _, p := range testProducts() {
		f, err := NewProductFacts(p)
		if err != nil {
			t.Fatal(err)
		}
		c.products[p.GetSku()] = f
	}
	return c
}

func (c *fakeCatalog) Product(_ context.Context, sku string) (ProductFacts, error) {
	if c.down.Load() {
		return ProductFacts{}, &PeerUnavailableError{Peer: "productpricing", Err: errors.New("connection refused")}
	}
	f, ok := c.products[sku]
	if !ok {
		return ProductFacts{}, ErrUnknownProduct
	}
	return f, nil
}

// fakeOrders is an OrderDirectory holding priced orders.
type fakeOrders struct {
	mu     sync.Mutex
	orders map[string][]PricedLine
	down   atomic.Bool
}

func (o *fakeOrders) OrderLines(_ context.Context, id string) ([]PricedLine, error) {
	if o.down.Load() {
		return nil, &PeerUnavailableError{Peer: "order", Err: errors.New("deadline exceeded")}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	lines, ok := o.orders[id]
	if !ok {
		return nil, ErrUnknownOrder
	}
	return lines, nil
}

// put records an order: each line is (sku, unit, unit price).
func (o *fakeOrders) put(id, customer, region, currency string, lines ...[3]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []PricedLine
	for i, l := range lines {
		out = append(out, PricedLine{Index: int32(i), SKU: l[0], Unit: l[1], UnitPrice: money.MustParse(l[2]),
			Currency: currency, CustomerID: customer, ShipToRegion: region})
	}
	o.orders[id] = out
}

// fixture is one fulfillment service on a real bbolt file in t.TempDir().
type fixture struct {
	t        *testing.T
	db       *storage.DB
	srv      *Server
	clock    *clock
	catalog  *fakeCatalog
	orders   *fakeOrders
	notified atomic.Int32
	ctx      context.Context
	p        auth.Principal
}

var erpKey = auth.Principal{KeyID: "key_erp", Name: "erp", Role: auth.RoleERP}

func newFixture(t *testing.T) *fixture {
	return newFixtureWith(t, nil)
}

func newFixtureWith(t *testing.T, taxRates map[string]string) *fixture {
	t.Helper()
	db, err := storage.Open(filepath.Join(t.TempDir(), "fulfillment.db"), Schema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	f := &fixture{t: t, db: db, clock: &clock{t: t0}, catalog: newFakeCatalog(t),
		orders: &fakeOrders{orders: map[string][]PricedLine{}}, ctx: context.Background(), p: erpKey}
	f.srv = NewServer(db, Options{
		Notify:   func() { f.notified.Add(1) },
		Now:      f.clock.Now,
		Products: f.catalog,
		Orders:   f.orders,
		TaxRates: taxRates,
	})
	return f
}

func (f *fixture) core() *core { return f.srv.core }

// The domain operations the tests use most, failing the test on error.

func (f *fixture) site(id, region string, transit ...any) *fulfillmentv1.Site {
	f.t.Helper()
	s := &fulfillmentv1.Site{Id: id, Name: id, Kind: fulfillmentv1.SiteKind_SITE_KIND_WAREHOUSE, Region: region}
	for i := 0; i+1 < len(transit); i += 2 {
		s.TransitTimes = append(s.TransitTimes, &fulfillmentv1.TransitTime{Region: transit[i].(string), Days: int32(transit[i+1].(int))})
	}
	out, err := f.core().createSite(f.ctx, f.p, s)
	if err != nil {
		f.t.Fatalf("create site %s: %v", id, err)
	}
	return out
}

func (f *fixture) receive(siteID, sku, qty, unit string) *fulfillmentv1.AdjustInventoryResponse {
	f.t.Helper()
	resp, err := f.core().adjustInventory(f.ctx, f.p, &fulfillmentv1.AdjustInventoryRequest{
		SiteId: siteID, Sku: sku, Delta: qty, Unit: unit, Reason: fulfillmentv1.LedgerReason_LEDGER_REASON_PRODUCTION_RECEIPT,
	})
	if err != nil {
		f.t.Fatalf("receive %s %s of %s at %s: %v", qty, unit, sku, siteID, err)
	}
	return resp
}

func (f *fixture) plan(siteID, sku, qty, unit string, due time.Time) *fulfillmentv1.SupplyPlan {
	f.t.Helper()
	pl, err := f.core().createSupplyPlan(f.ctx, f.p, &fulfillmentv1.SupplyPlan{
		SiteId: siteID, Sku: sku, Quantity: &typev1.Quantity{Value: qty, Unit: unit}, DueTime: timestamppb.New(due),
	})
	if err != nil {
		f.t.Fatalf("plan %s %s of %s at %s: %v", qty, unit, sku, siteID, err)
	}
	return pl
}

// line is an availability line "SKU", "value", "UNIT".
func line(sku, value, unit string) *fulfillmentv1.AvailabilityLine {
	return &fulfillmentv1.AvailabilityLine{Sku: sku, Quantity: &typev1.Quantity{Value: value, Unit: unit}}
}

func (f *fixture) check(region string, split bool, lines ...*fulfillmentv1.AvailabilityLine) []*fulfillmentv1.LineAvailability {
	f.t.Helper()
	resp, err := f.core().checkAvailability(f.ctx, f.p, &fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: region, Lines: lines, AllowSplit: split})
	if err != nil {
		f.t.Fatalf("check availability: %v", err)
	}
	return resp.GetLines()
}

func (f *fixture) reserve(kind fulfillmentv1.ReservationKind, ref, region string, expire time.Time, split bool, lines ...*fulfillmentv1.AvailabilityLine) *fulfillmentv1.CreateReservationResponse {
	f.t.Helper()
	req := &fulfillmentv1.CreateReservationRequest{Kind: kind, ReferenceId: ref, ShipToRegion: region, Lines: lines, AllowSplit: split}
	if !expire.IsZero() {
		req.ExpireTime = timestamppb.New(expire)
	}
	resp, err := f.core().createReservation(f.ctx, f.p, req)
	if err != nil {
		f.t.Fatalf("reserve %s: %v", ref, err)
	}
	return resp
}

const (
	hard = fulfillmentv1.ReservationKind_RESERVATION_KIND_HARD
	soft = fulfillmentv1.ReservationKind_RESERVATION_KIND_SOFT
)

func (f *fixture) hardReserve(ref, region string, lines ...*fulfillmentv1.AvailabilityLine) *fulfillmentv1.Reservation {
	f.t.Helper()
	resp := f.reserve(hard, ref, region, time.Time{}, false, lines...)
	if resp.GetReservation() == nil {
		f.t.Fatalf("reserve %s: not covered: %v", ref, resp.GetLines())
	}
	return resp.GetReservation()
}

// balance returns on hand, reserved, soft held and available of an item.
func (f *fixture) balance(siteID, sku string) [4]string {
	f.t.Helper()
	resp, err := f.core().listInventory(f.ctx, f.p, &fulfillmentv1.ListInventoryRequest{SiteId: siteID, Sku: sku})
	if err != nil {
		f.t.Fatal(err)
	}
	if len(resp.GetBalances()) == 0 {
		return [4]string{}
	}
	b := resp.GetBalances()[0]
	return [4]string{b.GetOnHand().GetValue(), b.GetReserved().GetValue(), b.GetSoftHeld().GetValue(), b.GetAvailable().GetValue()}
}

// snapshot is every key and value of the store, the platform buckets (the
// outbox among them) included: equal snapshots mean nothing was written.
func (f *fixture) snapshot() map[string]string {
	f.t.Helper()
	out := map[string]string{}
	err := f.db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				out[string(name)+"/"+hex.EncodeToString(k)] = hex.EncodeToString(v)
				return nil
			})
		})
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *fixture) assertUnchanged(before map[string]string) {
	f.t.Helper()
	after := f.snapshot()
	for k, v := range after {
		if before[k] != v {
			f.t.Errorf("store changed: %s written", k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			f.t.Errorf("store changed: %s deleted", k)
		}
	}
}

// outbox returns the events waiting in the outbox, in commit order.
func (f *fixture) outbox() []*eventsv1.Envelope {
	f.t.Helper()
	var out []*eventsv1.Envelope
	err := f.db.View(func(tx *bbolt.Tx) error {
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
		f.t.Fatal(err)
	}
	return out
}

// eventsSince returns the types and subjects of the events after the
// first n of the outbox.
func (f *fixture) eventsSince(n int) []*eventsv1.Envelope {
	all := f.outbox()
	return all[n:]
}

func eventTypes(envs []*eventsv1.Envelope) []string {
	var out []string
	for _, e := range envs {
		out = append(out, e.GetType())
	}
	return out
}

// unpack decodes the event message of an envelope.
func unpack[T proto.Message](t *testing.T, env *eventsv1.Envelope) T {
	t.Helper()
	m, err := env.GetData().UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := m.(T)
	if !ok {
		t.Fatalf("event %s is %T", env.GetType(), m)
	}
	return v
}

// wantErr checks a gRPC error's code, ErrorInfo reason and field (from
// the ErrorInfo metadata or the first BadRequest violation).
func wantErr(t *testing.T, err error, code codes.Code, reason, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s %s on %s", code, reason, field)
	}
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("code %s (%v), want %s", st.Code(), err, code)
	}
	var gotReason, gotField string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			gotReason = d.GetReason()
			if f := d.GetMetadata()["field"]; f != "" && gotField == "" {
				gotField = f
			}
		case *errdetails.BadRequest:
			if len(d.GetFieldViolations()) > 0 {
				gotField = d.GetFieldViolations()[0].GetField()
			}
		}
	}
	if reason != "" && gotReason != reason {
		t.Errorf("reason %q (%v), want %q", gotReason, err, reason)
	}
	if field != "" && gotField != field {
		t.Errorf("field %q (%v), want %q", gotField, err, field)
	}
}

// domainErr maps a domain error the way the server does, so domain tests
// can assert codes, reasons and fields with wantErr.
func domainErr(err error) error {
	if err == nil {
		return nil
	}
	return apiError(context.Background(), err)
}

// ---------------------------------------------------------------------------
// A real gRPC connection.

// Metadata the test interceptor turns into the principal.
const (
	mdRole   = "x-test-role"
	mdRegion = "x-test-region"
)

// principalInterceptor stands in for the platform's auth: it puts an ERP
// principal into the context, with the role and region scope the call's
// test metadata asks for.
func principalInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	p := erpKey
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(mdRole); len(v) > 0 {
			if r, ok := auth.ParseRole(v[0]); ok {
				p.Role = r
			}
		}
		if v := md.Get(mdRegion); len(v) > 0 {
			p.Region = v[0]
		}
	}
	return handler(auth.WithPrincipal(ctx, p), req)
}

// grpcClient serves f's server on a bufconn listener and returns a client.
func (f *fixture) grpcClient() fulfillmentv1.FulfillmentServiceClient {
	f.t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.UnaryInterceptor(principalInterceptor))
	fulfillmentv1.RegisterFulfillmentServiceServer(gs, f.srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
		<-done
	})
	return fulfillmentv1.NewFulfillmentServiceClient(conn)
}

func inRegion(ctx context.Context, region string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, mdRegion, region)
}
