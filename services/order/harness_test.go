package order

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
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
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

// t0 is the time the tests start at.
var t0 = time.Date(2026, 2, 15, 12, 0, 0, 0, time.UTC)

// testClock is a clock a test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// harness runs the order service on a bbolt file in t.TempDir(), behind a
// real gRPC server on a bufconn listener whose only interceptor puts a
// principal (and the request context the platform would) into the call.
type harness struct {
	t       *testing.T
	path    string
	clock   *testClock
	pricing *fakePricing
	inv     *fakeInventory
	credit  *fakeCredit
	notify  atomic.Int64

	db       *storage.DB
	srv      *Server
	grpc     *grpc.Server
	conn     *grpc.ClientConn
	client   orderv1.OrderServiceClient
	stopRun  context.CancelFunc
	runDone  chan struct{}
	shutdown sync.Once
}

// harnessOption changes the options a harness starts the server with.
type harnessOption func(*Options)

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{
		t:       t,
		path:    filepath.Join(t.TempDir(), "order.db"),
		clock:   &testClock{now: t0},
		pricing: newFakePricing(),
		inv:     newFakeInventory(),
		credit:  newFakeCredit(),
	}
	h.start(opts...)
	t.Cleanup(h.stop)
	return h
}

// start opens the store and serves it; it does not Run.
func (h *harness) start(opts ...harnessOption) {
	t := h.t
	t.Helper()
	db, err := storage.Open(h.path, Schema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	o := Options{
		Notify:          func() { h.notify.Add(1) },
		Now:             h.clock.Now,
		Pricing:         h.pricing,
		Inventory:       h.inv,
		Credit:          h.credit,
		RevalidateEvery: 20 * time.Millisecond,
		Log:             quietLog,
	}
	for _, f := range opts {
		f(&o)
	}
	h.db, h.srv = db, NewServer(db, o)
	h.shutdown = sync.Once{}

	lis := bufconn.Listen(1 << 20)
	h.grpc = grpc.NewServer(grpc.UnaryInterceptor(testAuth))
	orderv1.RegisterOrderServiceServer(h.grpc, h.srv)
	go func() { _ = h.grpc.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.conn, h.client = conn, orderv1.NewOrderServiceClient(conn)
}

// run starts the server's background work.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h.stopRun, h.runDone = cancel, done
	go func() {
		defer close(done)
		if err := h.srv.Run(ctx); err != nil {
			h.t.Errorf("Run: %v", err)
		}
	}()
}

// stop shuts everything down the way a dying process would leave it: the
// store file is closed with whatever was committed.
func (h *harness) stop() {
	h.shutdown.Do(func() {
		if h.stopRun != nil {
			h.stopRun()
			<-h.runDone
			h.stopRun = nil
		}
		_ = h.conn.Close()
		h.grpc.Stop()
		if err := h.db.Close(); err != nil {
			h.t.Errorf("close store: %v", err)
		}
	})
}

// restart simulates a process restart: everything stops, the same store
// file is opened by a new Server with opts, and Run starts.
func (h *harness) restart(opts ...harnessOption) {
	h.stop()
	h.start(opts...)
	h.run()
}

// testAuth is the platform's authentication in miniature: it takes the role,
// key id and region from metadata, enforces the permission table, and puts
// the principal, actor, correlation id and traceparent into the context.
func testAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	get := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	roleName := get("x-test-role")
	if roleName == "" {
		roleName = "erp"
	}
	role, ok := auth.ParseRole(roleName)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "unknown test role")
	}
	perm, ok := auth.Lookup(info.FullMethod)
	if !ok || !perm.Allows(role) {
		return nil, apierr.PermissionDenied(apierr.ReasonPermissionDenied, "the "+roleName+" role may not call "+info.FullMethod, nil)
	}
	key := get("x-test-key")
	if key == "" {
		key = "key_" + roleName
	}
	p := auth.Principal{KeyID: key, Name: key, Role: role, Region: get("x-test-region")}
	ctx = auth.WithPrincipal(ctx, p)
	ctx = reqctx.WithActor(ctx, p.KeyID)
	if id := get("x-correlation-id"); id != "" {
		ctx = reqctx.WithCorrelationID(ctx, id)
	}
	if tp := get("traceparent"); tp != "" {
		ctx = reqctx.WithTraceparent(ctx, tp)
	}
	return handler(ctx, req)
}

// as returns a context calling as a role, with optional extra metadata
// pairs (x-test-region, x-correlation-id, traceparent, x-test-key).
func as(role string, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), append([]string{"x-test-role", role}, kv...)...)
}

var erp = as("erp")

// ---------------------------------------------------------------------------
// Builders.

func line(sku, value, unit string) *orderv1.OrderLine {
	return &orderv1.OrderLine{Sku: sku, Quantity: &typev1.Quantity{Value: value, Unit: unit}}
}

func ref(id string) *typev1.ExternalRef { return &typev1.ExternalRef{System: "salesforce", Id: id} }

func newOrder(customer string, r *typev1.ExternalRef, lines ...*orderv1.OrderLine) *orderv1.Order {
	return &orderv1.Order{CustomerId: customer, CurrencyCode: "EUR", ShipToRegion: "eu", Lines: lines, ExternalRef: r}
}

func newQuote(customer string, validFor time.Duration, lines ...*orderv1.OrderLine) *orderv1.Quote {
	return &orderv1.Quote{CustomerId: customer, CurrencyCode: "EUR", ShipToRegion: "eu", Lines: lines, ValidUntil: timestamppb.New(t0.Add(validFor))}
}

// ---------------------------------------------------------------------------
// Calls and assertions.

func (h *harness) createOrder(ctx context.Context, o *orderv1.Order) *orderv1.Order {
	h.t.Helper()
	resp, err := h.client.CreateOrder(ctx, &orderv1.CreateOrderRequest{Order: o})
	if err != nil {
		h.t.Fatalf("CreateOrder: %v", err)
	}
	return resp.GetOrder()
}

func (h *harness) getOrder(id string) *orderv1.Order {
	h.t.Helper()
	resp, err := h.client.GetOrder(erp, &orderv1.GetOrderRequest{Id: id})
	if err != nil {
		h.t.Fatalf("GetOrder %s: %v", id, err)
	}
	return resp.GetOrder()
}

func (h *harness) timeline(id string) []*orderv1.TimelineEntry {
	h.t.Helper()
	resp, err := h.client.GetOrderTimeline(erp, &orderv1.GetOrderTimelineRequest{Id: id})
	if err != nil {
		h.t.Fatalf("GetOrderTimeline %s: %v", id, err)
	}
	return resp.GetEntries()
}

// approvedQuote creates a quote and takes it to APPROVED.
func (h *harness) approvedQuote(q *orderv1.Quote) *orderv1.Quote {
	h.t.Helper()
	cr, err := h.client.CreateQuote(erp, &orderv1.CreateQuoteRequest{Quote: q})
	if err != nil {
		h.t.Fatalf("CreateQuote: %v", err)
	}
	if _, err := h.client.SubmitQuote(erp, &orderv1.SubmitQuoteRequest{Id: cr.GetQuote().GetId()}); err != nil {
		h.t.Fatalf("SubmitQuote: %v", err)
	}
	ar, err := h.client.ApproveQuote(erp, &orderv1.ApproveQuoteRequest{Id: cr.GetQuote().GetId()})
	if err != nil {
		h.t.Fatalf("ApproveQuote: %v", err)
	}
	return ar.GetQuote()
}

// waitStatus polls until the order has a status (and hold reason), or
// fails after timeout.
func (h *harness) waitStatus(id string, want orderv1.OrderStatus, hold orderv1.HoldReason, timeout time.Duration) *orderv1.Order {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var o *orderv1.Order
	for {
		o = h.getOrder(id)
		if o.GetStatus() == want && o.GetHoldReason() == hold {
			return o
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("order %s is %s/%s after %v, want %s/%s", id, o.GetStatus(), o.GetHoldReason(), timeout, want, hold)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// outbox returns the events in the store's outbox, oldest first.
func (h *harness) outbox() []*eventsv1.Envelope {
	h.t.Helper()
	var out []*eventsv1.Envelope
	err := h.db.View(func(tx *bbolt.Tx) error {
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
		h.t.Fatal(err)
	}
	return out
}

// eventTypes returns the short type names of the outbox events about a
// subject, for example ["OrderStatusChanged", "OrderAccepted", …].
func (h *harness) eventTypes(subject string) []string {
	var out []string
	for _, env := range h.outbox() {
		if subject == "" || env.GetSubject() == subject {
			out = append(out, shortType(env.GetType()))
		}
	}
	return out
}

func shortType(t string) string {
	for i := len(t) - 1; i >= 0; i-- {
		if t[i] == '.' {
			return t[i+1:]
		}
	}
	return t
}

// wantCode asserts a gRPC error's code and ErrorInfo reason (reason "" is
// not checked) and returns its details.
func wantCode(t *testing.T, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	if err == nil {
		t.Fatalf("call succeeded, want %s", code)
	}
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("code %s (%v), want %s", st.Code(), err, code)
	}
	if reason != "" && apierr.Reason(err) != reason {
		t.Fatalf("reason %q (%v), want %q", apierr.Reason(err), err, reason)
	}
	return st
}

// errorMeta returns the ErrorInfo metadata of a status.
func errorMeta(st *status.Status) map[string]string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetMetadata()
		}
	}
	return nil
}

// fieldViolations returns the fields a status names.
func fieldViolations(st *status.Status) map[string]string {
	out := map[string]string{}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out[v.GetField()] = v.GetDescription()
			}
		}
	}
	return out
}

// countOrders counts the orders in the store.
func (h *harness) countOrders() int {
	n := 0
	_ = h.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketOrders).Stats().KeyN
		return nil
	})
	return n
}

func (h *harness) countQuotes() int {
	n := 0
	_ = h.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketQuotes).Stats().KeyN
		return nil
	})
	return n
}

// owed returns the compensations queued in the store.
func (h *harness) owed() []compensation {
	var out []compensation
	_ = h.srv.core.repo.view(context.Background(), func(tx txn) error {
		var err error
		out, err = tx.owed()
		return err
	})
	return out
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errInjected = errors.New("injected crash")
