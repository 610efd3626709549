package fulfillment

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/money"
)

// fakePricing is a tiny ProductPricingService: GetProduct over
// testProducts, or the code in fail.
type fakePricing struct {
	productpricingv1.UnimplementedProductPricingServiceServer
	calls atomic.Int32
	fail  atomic.Int32 // a codes.Code; 0 answers
}

func (p *fakePricing) GetProduct(_ context.Context, req *productpricingv1.GetProductRequest) (*productpricingv1.GetProductResponse, error) {
	p.calls.Add(1)
	if c := codes.Code(p.fail.Load()); c != codes.OK {
		return nil, status.Error(c, "failing on purpose")
	}
	for _, pr := range testProducts() {
		if pr.GetSku() == req.GetSku() {
			return &productpricingv1.GetProductResponse{Product: pr}, nil
		}
	}
	if req.GetSku() == "BROKEN-1" {
		return &productpricingv1.GetProductResponse{Product: &productpricingv1.Product{Sku: "BROKEN-1"}}, nil
	}
	return nil, status.Error(codes.NotFound, "no such product")
}

// fakeOrderService is a tiny OrderService answering GetOrder.
type fakeOrderService struct {
	orderv1.UnimplementedOrderServiceServer
	mu     sync.Mutex
	orders map[string]*orderv1.Order
	fail   atomic.Int32
}

func (o *fakeOrderService) GetOrder(_ context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	if c := codes.Code(o.fail.Load()); c != codes.OK {
		return nil, status.Error(c, "failing on purpose")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ord, ok := o.orders[req.GetId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such order")
	}
	return &orderv1.GetOrderResponse{Order: ord}, nil
}

// serve runs a gRPC server with register on a bufconn and returns a
// client connection to it.
func serve(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	register(gs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		gs.Stop()
		<-done
	})
	return conn
}

func TestProductClient(t *testing.T) {
	pricing := &fakePricing{}
	conn := serve(t, func(s *grpc.Server) { productpricingv1.RegisterProductPricingServiceServer(s, pricing) })
	clk := &clock{t: t0}
	c := newProductClient(conn, ProductCacheTTL, clk.Now)
	ctx := context.Background()

	steps := []struct {
		name      string
		sku       string
		at        time.Time
		fail      codes.Code
		wantErr   error
		wantCode  codes.Code
		wantCalls int32 // calls to productpricing so far
	}{
		{"a product is read", "VALVE-100", t0, codes.OK, nil, codes.OK, 1},
		{"and then answered from the cache", "VALVE-100", t0.Add(29 * time.Second), codes.OK, nil, codes.OK, 1},
		{"even while productpricing is down", "VALVE-100", t0.Add(29 * time.Second), codes.Unavailable, nil, codes.OK, 1},
		{"an expired entry is read again", "VALVE-100", t0.Add(31 * time.Second), codes.OK, nil, codes.OK, 2},
		{"an unknown SKU", "NOPE-1", t0.Add(31 * time.Second), codes.OK, ErrUnknownProduct, codes.Unknown, 3},
		{"is never cached", "NOPE-1", t0.Add(31 * time.Second), codes.OK, ErrUnknownProduct, codes.Unknown, 4},
		{"productpricing unavailable", "RESIN-5", t0, codes.Unavailable, nil, codes.Unavailable, 5},
		{"productpricing too slow", "RESIN-5", t0, codes.DeadlineExceeded, nil, codes.Unavailable, 6},
		{"a failure is not cached", "RESIN-5", t0, codes.OK, nil, codes.OK, 7},
		{"a product fulfillment cannot use", "BROKEN-1", t0, codes.OK, nil, codes.Unknown, 8},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clk.Set(st.at)
			pricing.fail.Store(int32(st.fail))
			facts, err := c.Product(ctx, st.sku)
			switch {
			case st.wantErr != nil:
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("err %v, want %v", err, st.wantErr)
				}
			case st.wantCode == codes.Unavailable:
				var pe *PeerUnavailableError
				if !errors.As(err, &pe) || pe.Peer != "productpricing" || status.Code(err) != codes.Unavailable || apierr.Reason(err) != apierr.ReasonUnavailable {
					t.Fatalf("err %v (code %s), want productpricing unavailable", err, status.Code(err))
				}
			case st.wantCode == codes.Unknown:
				if err == nil {
					t.Fatal("no error")
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if facts.SKU != st.sku || facts.BaseUnit == "" {
					t.Errorf("facts %+v", facts)
				}
			}
			if got := pricing.calls.Load(); got != st.wantCalls {
				t.Errorf("%d calls to productpricing, want %d", got, st.wantCalls)
			}
		})
	}
	t.Run("conversions come through", func(t *testing.T) {
		pricing.fail.Store(0)
		facts, err := NewProductClient(conn).Product(ctx, "VALVE-100")
		if err != nil {
			t.Fatal(err)
		}
		if base, err := facts.ToBase(money.MustParse("1"), "PALLET"); err != nil || money.Format(base) != "480" {
			t.Errorf("1 PALLET = %v, %v; want 480 EA", base, err)
		}
	})
}

func TestOrderClient(t *testing.T) {
	orders := &fakeOrderService{orders: map[string]*orderv1.Order{
		"ord_1": {Id: "ord_1", CustomerId: "cus_1", CurrencyCode: "EUR", ShipToRegion: "eu", Lines: []*orderv1.OrderLine{
			{Sku: "VALVE-100", Quantity: &typev1.Quantity{Value: "2", Unit: "CASE"}, UnitPrice: &typev1.Money{CurrencyCode: "EUR", Amount: "99.95"}},
			{Sku: "RESIN-5", Quantity: &typev1.Quantity{Value: "1", Unit: "KG"}}, // not priced yet
		}},
		"ord_bad": {Id: "ord_bad", CurrencyCode: "EUR", Lines: []*orderv1.OrderLine{
			{Sku: "VALVE-100", Quantity: &typev1.Quantity{Value: "2", Unit: "CASE"}, UnitPrice: &typev1.Money{CurrencyCode: "USD", Amount: "1"}},
		}},
	}}
	c := NewOrderClient(serve(t, func(s *grpc.Server) { orderv1.RegisterOrderServiceServer(s, orders) }))
	ctx := context.Background()

	lines, err := c.OrderLines(ctx, "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 {
		t.Fatalf("lines %+v", lines)
	}
	l0, l1 := lines[0], lines[1]
	if l0.Index != 0 || l0.SKU != "VALVE-100" || l0.Unit != "CASE" || money.Format(l0.UnitPrice) != "99.95" ||
		l0.Currency != "EUR" || l0.CustomerID != "cus_1" || l0.ShipToRegion != "eu" {
		t.Errorf("line 0 %+v", l0)
	}
	if l1.Index != 1 || l1.UnitPrice != nil {
		t.Errorf("line 1 %+v, want no price", l1)
	}

	tests := []struct {
		name    string
		id      string
		fail    codes.Code
		check   func(error) bool
		explain string
	}{
		{"unknown order", "ord_x", codes.OK, func(err error) bool { return errors.Is(err, ErrUnknownOrder) }, "ErrUnknownOrder"},
		{"order service unavailable", "ord_1", codes.Unavailable, func(err error) bool {
			var pe *PeerUnavailableError
			return errors.As(err, &pe) && pe.Peer == "order" && status.Code(err) == codes.Unavailable
		}, "order unavailable"},
		{"a line priced in another currency", "ord_bad", codes.OK, func(err error) bool { return err != nil && !errors.Is(err, ErrUnknownOrder) }, "an internal error"},
		{"any other failure", "ord_1", codes.Internal, func(err error) bool {
			var pe *PeerUnavailableError
			return err != nil && !errors.As(err, &pe) && !errors.Is(err, ErrUnknownOrder)
		}, "an internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orders.fail.Store(int32(tt.fail))
			_, err := c.OrderLines(ctx, tt.id)
			if !tt.check(err) {
				t.Errorf("err %v, want %s", err, tt.explain)
			}
		})
	}
}
