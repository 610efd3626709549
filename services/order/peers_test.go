package order

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/reqctx"
)

// The peers as real gRPC servers, each a thin wrapper over its fake.

func toStatus(err error) error {
	var down *PeerUnavailableError
	var pe *PeerError
	switch {
	case errors.As(err, &down):
		return status.Error(codes.Unavailable, err.Error())
	case errors.As(err, &pe):
		return pe.Status.Err()
	}
	return err
}

type pricingServer struct {
	productpricingv1.UnimplementedProductPricingServiceServer
	f *fakePricing
}

func (s *pricingServer) SimulatePrices(_ context.Context, req *productpricingv1.SimulatePricesRequest) (*productpricingv1.SimulatePricesResponse, error) {
	resp, err := s.f.simulate(req)
	return resp, toStatus(err)
}

type fulfillmentServer struct {
	fulfillmentv1.UnimplementedFulfillmentServiceServer
	f *fakeInventory
}

func (s *fulfillmentServer) CheckAvailability(_ context.Context, req *fulfillmentv1.CheckAvailabilityRequest) (*fulfillmentv1.CheckAvailabilityResponse, error) {
	resp, err := s.f.check(req)
	return resp, toStatus(err)
}

func (s *fulfillmentServer) CreateReservation(_ context.Context, req *fulfillmentv1.CreateReservationRequest) (*fulfillmentv1.CreateReservationResponse, error) {
	resp, err := s.f.reserve(req)
	return resp, toStatus(err)
}

func (s *fulfillmentServer) ReleaseReservation(_ context.Context, req *fulfillmentv1.ReleaseReservationRequest) (*fulfillmentv1.ReleaseReservationResponse, error) {
	r, err := s.f.release(req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &fulfillmentv1.ReleaseReservationResponse{Reservation: r}, nil
}

type customerServer struct {
	customerv1.UnimplementedCustomerServiceServer
	f     *fakeCredit
	delay time.Duration

	mu          sync.Mutex
	correlation string
}

func (s *customerServer) ReserveCredit(ctx context.Context, req *customerv1.ReserveCreditRequest) (*customerv1.ReserveCreditResponse, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-correlation-id"); len(v) > 0 {
			s.mu.Lock()
			s.correlation = v[0]
			s.mu.Unlock()
		}
	}
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	resp, err := s.f.reserve(req)
	return resp, toStatus(err)
}

func (s *customerServer) ReleaseCredit(_ context.Context, req *customerv1.ReleaseCreditRequest) (*customerv1.ReleaseCreditResponse, error) {
	ok, err := s.f.release(req.GetOrderId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &customerv1.ReleaseCreditResponse{Released: ok}, nil
}

// peerProc is a peer service running as a gRPC server on a loopback TCP
// port; stop and restart it to take it really down and bring it back on the
// same address.
type peerProc struct {
	t        *testing.T
	register func(*grpc.Server)
	addr     string

	mu  sync.Mutex
	srv *grpc.Server
}

func startPeer(t *testing.T, register func(*grpc.Server)) *peerProc {
	t.Helper()
	p := &peerProc{t: t, register: register}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.stop)
	return p
}

func (p *peerProc) listen(addr string) {
	p.t.Helper()
	var (
		lis net.Listener
		err error
	)
	for range 50 { // the port may take a moment to be free again
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("listen on %s: %v", addr, err)
	}
	srv := grpc.NewServer()
	p.register(srv)
	go func() { _ = srv.Serve(lis) }()
	p.mu.Lock()
	p.addr, p.srv = lis.Addr().String(), srv
	p.mu.Unlock()
}

// stop kills the server: the listener closes and every connection drops.
func (p *peerProc) stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

func (p *peerProc) restart() { p.listen(p.addr) }

// dial connects to a peer with a short reconnect backoff, so a restarted
// peer is found again within the test's patience.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.5, Jitter: 0.1, MaxDelay: 100 * time.Millisecond},
			MinConnectTimeout: 200 * time.Millisecond,
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// realPeers runs the three peers as gRPC servers and returns the harness
// option that wires the order service to them through the adapters.
type realPeers struct {
	pricing, fulfillment, customer *peerProc
}

func startRealPeers(t *testing.T, h *harness) (*realPeers, harnessOption) {
	rp := &realPeers{
		pricing: startPeer(t, func(s *grpc.Server) {
			productpricingv1.RegisterProductPricingServiceServer(s, &pricingServer{f: h.pricing})
		}),
		fulfillment: startPeer(t, func(s *grpc.Server) {
			fulfillmentv1.RegisterFulfillmentServiceServer(s, &fulfillmentServer{f: h.inv})
		}),
		customer: startPeer(t, func(s *grpc.Server) {
			customerv1.RegisterCustomerServiceServer(s, &customerServer{f: h.credit})
		}),
	}
	breaker := WithBreaker(3, 300*time.Millisecond)
	pc := NewPricingClient(dial(t, rp.pricing.addr), WithCallTimeout(time.Second), breaker)
	ic := NewInventoryClient(dial(t, rp.fulfillment.addr), WithCallTimeout(time.Second), breaker)
	cc := NewCreditClient(dial(t, rp.customer.addr), WithCallTimeout(time.Second), breaker)
	return rp, func(o *Options) { o.Pricing, o.Inventory, o.Credit = pc, ic, cc }
}

// TestDegradedModes takes each peer really down (its gRPC server stopped),
// creates an order through the adapters, and brings the peer back on the
// same address: the order must reach ACCEPTED by itself.
func TestDegradedModes(t *testing.T) {
	tests := []struct {
		name   string
		peer   func(*realPeers) *peerProc
		status orderv1.OrderStatus
		hold   orderv1.HoldReason
	}{
		{"customer service down: held for credit", func(p *realPeers) *peerProc { return p.customer }, statusOnHold, holdCreditPending},
		{"fulfillment down: pending", func(p *realPeers) *peerProc { return p.fulfillment }, statusPending, 0},
		{"productpricing down: pending", func(p *realPeers) *peerProc { return p.pricing }, statusPending, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			peers, wire := startRealPeers(t, h)
			h.restart(wire)

			// Warm the connections so the outage is a dropped peer, not a
			// peer never seen.
			warm := h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "1", "EA")))
			if warm.GetStatus() != statusAccepted {
				t.Fatalf("with every peer up the order is %s/%s", warm.GetStatus(), warm.GetHoldReason())
			}

			down := tt.peer(peers)
			down.stop()
			o := h.createOrder(erp, newOrder("cus_ACME", ref("DEGRADED"), line("VALVE-100", "2", "EA")))
			if o.GetStatus() != tt.status || o.GetHoldReason() != tt.hold {
				t.Fatalf("with the peer down the order is %s/%s, want %s/%s", o.GetStatus(), o.GetHoldReason(), tt.status, tt.hold)
			}
			if tt.hold == holdCreditPending {
				_, err := h.client.ReleaseOrder(as("ops"), &orderv1.ReleaseOrderRequest{Id: o.GetId()})
				st := wantCode(t, err, codes.FailedPrecondition, ReasonCreditNotValidated)
				if want := "credit validation has not completed"; !strings.Contains(st.Message(), want) {
					t.Errorf("message %q", st.Message())
				}
			}
			// Let the re-validator fail against the dead peer a few times
			// (opening the breaker), then bring the peer back.
			time.Sleep(300 * time.Millisecond)
			if got := h.getOrder(o.GetId()); got.GetStatus() != tt.status {
				t.Fatalf("while the peer is down the order moved to %s", got.GetStatus())
			}
			down.restart()
			got := h.waitStatus(o.GetId(), statusAccepted, 0, 10*time.Second)
			if got.GetTotal().GetAmount() != "25.00" || got.GetReservationId() == "" {
				t.Errorf("accepted order %v", got)
			}
			if _, created := h.inv.counts(o.GetId()); created != 1 {
				t.Errorf("stock reservations %d, want 1", created)
			}
			if _, created, _ := h.credit.counts(o.GetId()); created != 1 {
				t.Errorf("credit reservations %d, want 1", created)
			}
			if tt.hold == holdCreditPending {
				tl := h.timeline(o.GetId())
				rel := tl[len(tl)-2]
				if rel.GetFromStatus() != statusOnHold || rel.GetActor() != "system" {
					t.Errorf("release by the re-validator %v", rel)
				}
			}
		})
	}
}

func TestPeerAdapters(t *testing.T) {
	amount := &typev1.Money{CurrencyCode: "EUR", Amount: "10.00"}

	t.Run("a stopped peer is unavailable, then the breaker opens", func(t *testing.T) {
		credit := newFakeCredit()
		p := startPeer(t, func(s *grpc.Server) { customerv1.RegisterCustomerServiceServer(s, &customerServer{f: credit}) })
		c := NewCreditClient(dial(t, p.addr), WithCallTimeout(500*time.Millisecond), WithBreaker(2, time.Hour))
		if _, err := c.Reserve(t0ctx, "cus_ACME", "ord_1", amount); err != nil {
			t.Fatal(err)
		}
		p.stop()
		for i := range 2 {
			_, err := c.Reserve(t0ctx, "cus_ACME", "ord_2", amount)
			var down *PeerUnavailableError
			if !errors.Is(err, ErrPeerUnavailable) || !errors.As(err, &down) || down.Peer != "customer" {
				t.Fatalf("call %d: %v, want ErrPeerUnavailable", i, err)
			}
		}
		start := time.Now()
		_, err := c.Reserve(t0ctx, "cus_ACME", "ord_2", amount)
		if !errors.Is(err, ErrPeerUnavailable) || !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("after 2 outages: %v, want the open breaker", err)
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Errorf("an open breaker took %v to answer", d)
		}
	})

	t.Run("a peer too slow for the deadline is unavailable", func(t *testing.T) {
		p := startPeer(t, func(s *grpc.Server) {
			customerv1.RegisterCustomerServiceServer(s, &customerServer{f: newFakeCredit(), delay: time.Second})
		})
		c := NewCreditClient(dial(t, p.addr), WithCallTimeout(50*time.Millisecond))
		start := time.Now()
		_, err := c.Reserve(t0ctx, "cus_ACME", "ord_1", amount)
		if !errors.Is(err, ErrPeerUnavailable) || status.Code(errors.Unwrap(err)) != codes.DeadlineExceeded {
			t.Fatalf("err %v, want ErrPeerUnavailable from DEADLINE_EXCEEDED", err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("the call took %v despite a 50ms deadline", d)
		}
	})

	t.Run("an answer is not an outage and never opens the breaker", func(t *testing.T) {
		pricing := newFakePricing()
		p := startPeer(t, func(s *grpc.Server) {
			productpricingv1.RegisterProductPricingServiceServer(s, &pricingServer{f: pricing})
		})
		c := NewPricingClient(dial(t, p.addr), WithBreaker(1, time.Hour))
		for range 5 {
			_, err := c.Simulate(t0ctx, "cus_UNKNOWN", "EUR", t0, []*orderv1.OrderLine{line("VALVE-100", "1", "EA")})
			var pe *PeerError
			if errors.Is(err, ErrPeerUnavailable) || !errors.As(err, &pe) || !pe.Definitive() || pe.Status.Code() != codes.InvalidArgument {
				t.Fatalf("err %v, want a definitive *PeerError", err)
			}
		}
		if _, err := c.Simulate(t0ctx, "cus_ACME", "EUR", t0, []*orderv1.OrderLine{line("VALVE-100", "1", "EA")}); err != nil {
			t.Fatalf("after answers the breaker refused a call: %v", err)
		}
	})

	t.Run("a decline is an answer", func(t *testing.T) {
		credit := newFakeCredit()
		p := startPeer(t, func(s *grpc.Server) { customerv1.RegisterCustomerServiceServer(s, &customerServer{f: credit}) })
		c := NewCreditClient(dial(t, p.addr))
		dec, err := c.Reserve(t0ctx, "cus_SMALL", "ord_1", &typev1.Money{CurrencyCode: "EUR", Amount: "100.01"})
		if err != nil || dec.Approved || dec.Reason != "CREDIT_LIMIT_EXCEEDED" {
			t.Fatalf("decision %+v, err %v", dec, err)
		}
		dec, err = c.Reserve(t0ctx, "cus_SMALL", "ord_2", &typev1.Money{CurrencyCode: "EUR", Amount: "100.00"})
		if err != nil || !dec.Approved {
			t.Fatalf("decision %+v, err %v", dec, err)
		}
		if err := c.Release(t0ctx, "cus_SMALL", "ord_2"); err != nil || credit.holds("ord_2") {
			t.Fatalf("release: %v, still held %v", err, credit.holds("ord_2"))
		}
	})

	t.Run("releasing what fulfillment does not know is done", func(t *testing.T) {
		inv := newFakeInventory()
		p := startPeer(t, func(s *grpc.Server) { fulfillmentv1.RegisterFulfillmentServiceServer(s, &fulfillmentServer{f: inv}) })
		c := NewInventoryClient(dial(t, p.addr))
		if err := c.Release(t0ctx, "res_NOPE"); err != nil {
			t.Fatalf("Release of an unknown reservation: %v", err)
		}
		res, avail, err := c.Reserve(t0ctx, "ord_1", ReservationHard, "eu", []*orderv1.OrderLine{line("PUMP-200", "11", "EA")}, false, time.Time{})
		if err != nil || res != nil || len(avail) != 1 || avail[0].GetCovered() {
			t.Fatalf("a short basket: %v %v %v, want no reservation, the short line, and no error", res, avail, err)
		}
		avail, err = c.Check(t0ctx, "eu", []*orderv1.OrderLine{line("PUMP-200", "2", "CASE")}, true)
		if err != nil || len(avail) != 1 || avail[0].GetBaseQuantity().GetValue() != "24" {
			t.Fatalf("check: %v %v", avail, err)
		}
		soft, _, err := c.Reserve(t0ctx, "quo_1", ReservationSoft, "eu", []*orderv1.OrderLine{line("PUMP-200", "1", "EA")}, false, t0.Add(time.Hour))
		if err != nil || soft == nil || !soft.GetExpireTime().AsTime().Equal(t0.Add(time.Hour)) {
			t.Fatalf("soft hold %v %v", soft, err)
		}
		if err := c.Release(t0ctx, soft.GetId()); err != nil || inv.releasedCount(soft.GetId()) != 1 {
			t.Fatalf("release: %v", err)
		}
	})

	t.Run("the correlation id travels to the peer", func(t *testing.T) {
		srv := &customerServer{f: newFakeCredit()}
		p := startPeer(t, func(s *grpc.Server) { customerv1.RegisterCustomerServiceServer(s, srv) })
		c := NewCreditClient(dial(t, p.addr))
		if _, err := c.Reserve(reqctx.WithCorrelationID(t0ctx, "corr-77"), "cus_ACME", "ord_1", amount); err != nil {
			t.Fatal(err)
		}
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if srv.correlation != "corr-77" {
			t.Errorf("peer saw correlation id %q", srv.correlation)
		}
	})
}
