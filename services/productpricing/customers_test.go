package productpricing

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
)

// fakeCustomerServer is a tiny customer service: a map of customers, or a
// forced failure.
type fakeCustomerServer struct {
	customerv1.UnimplementedCustomerServiceServer
	customers map[string]*customerv1.Customer
	fail      atomic.Int32 // a codes.Code to answer with; 0 answers normally
	delay     time.Duration
	calls     atomic.Int64
}

func (f *fakeCustomerServer) GetCustomer(ctx context.Context, req *customerv1.GetCustomerRequest) (*customerv1.GetCustomerResponse, error) {
	f.calls.Add(1)
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if c := codes.Code(f.fail.Load()); c != codes.OK {
		return nil, status.Error(c, "forced failure")
	}
	cu, ok := f.customers[req.GetId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "customer %q not found", req.GetId())
	}
	return &customerv1.GetCustomerResponse{Customer: cu}, nil
}

// dialBufconn serves register on an in-memory listener and returns a client
// connection to it; both stop when the test ends.
func dialBufconn(t testing.TB, register func(*grpc.Server), opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(opts...)
	register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return conn
}

func startCustomers(t testing.TB, f *fakeCustomerServer) CustomerDirectory {
	t.Helper()
	conn := dialBufconn(t, func(s *grpc.Server) { customerv1.RegisterCustomerServiceServer(s, f) })
	return NewCustomerClient(conn)
}

func newFakeCustomers() *fakeCustomerServer {
	return &fakeCustomerServer{customers: map[string]*customerv1.Customer{
		"cus_ACME": {Id: "cus_ACME", DisplayName: "Acme GmbH", Region: "eu", Tier: "gold"},
		"cus_BOLT": {Id: "cus_BOLT", DisplayName: "Bolt Inc", Region: "na"},
	}}
}

func TestCustomerClient(t *testing.T) {
	f := newFakeCustomers()
	dir := startCustomers(t, f)
	slow := &fakeCustomerServer{delay: time.Minute}
	slowDir := startCustomers(t, slow)

	tests := []struct {
		name    string
		dir     CustomerDirectory
		fail    codes.Code
		id      string
		timeout time.Duration
		want    CustomerFacts
		check   func(error) bool
	}{
		{"known customer", dir, 0, "cus_ACME", 0, acmeEU, nil},
		{"customer without a tier", dir, 0, "cus_BOLT", 0, CustomerFacts{ID: "cus_BOLT", Region: "na"}, nil},
		{"unknown customer", dir, 0, "cus_NOPE", 0, CustomerFacts{}, func(err error) bool { return errors.Is(err, ErrCustomerNotFound) }},
		{"malformed id", dir, codes.InvalidArgument, "x", 0, CustomerFacts{}, func(err error) bool { return errors.Is(err, ErrCustomerNotFound) }},
		{"service unavailable", dir, codes.Unavailable, "cus_ACME", 0, CustomerFacts{}, isPeerUnavailable},
		{"deadline exceeded", slowDir, 0, "cus_ACME", 50 * time.Millisecond, CustomerFacts{}, isPeerUnavailable},
		{"overloaded", dir, codes.ResourceExhausted, "cus_ACME", 0, CustomerFacts{}, isPeerUnavailable},
		{"internal failure is not the caller's problem", dir, codes.Internal, "cus_ACME", 0, CustomerFacts{}, func(err error) bool {
			return err != nil && !isPeerUnavailable(err) && !errors.Is(err, ErrCustomerNotFound)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.fail.Store(int32(tt.fail))
			defer f.fail.Store(0)
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			got, err := tt.dir.Lookup(ctx, tt.id)
			if tt.check != nil {
				if !tt.check(err) {
					t.Fatalf("error %v (%T) does not match", err, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Lookup = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}

	t.Run("service gone", func(t *testing.T) {
		conn, err := grpc.NewClient("passthrough:///gone",
			grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return nil, errors.New("connection refused") }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = NewCustomerClient(conn).Lookup(context.Background(), "cus_ACME")
		if !isPeerUnavailable(err) {
			t.Fatalf("error %v, want a PeerUnavailableError", err)
		}
	})
}

func isPeerUnavailable(err error) bool {
	var p *PeerUnavailableError
	return errors.As(err, &p) && p.Peer == "customer"
}

func TestCachedDirectory(t *testing.T) {
	inner := newDirectory(acmeEU)
	current := now
	d := NewCachedDirectory(inner, 5*time.Second, 2, func() time.Time { return current })
	ctx := context.Background()

	lookup := func(id string) (CustomerFacts, error) { return d.Lookup(ctx, id) }
	steps := []struct {
		name      string
		advance   time.Duration
		id        string
		mutate    func()
		wantTier  string
		wantErr   error
		wantCalls int
	}{
		{"first lookup asks", 0, acmeEU.ID, nil, "gold", nil, 1},
		{"second is cached", time.Second, acmeEU.ID, func() { inner.customers[acmeEU.ID] = CustomerFacts{ID: acmeEU.ID, Region: "eu", Tier: "silver"} }, "gold", nil, 1},
		{"expired entry asks again", 5 * time.Second, acmeEU.ID, nil, "silver", nil, 2},
		{"unknown customers are not cached", 0, "cus_X", nil, "", ErrCustomerNotFound, 3},
		{"…and asked again", 0, "cus_X", nil, "", ErrCustomerNotFound, 4},
		{"failures are not cached", 0, "cus_Y", func() { inner.err = &PeerUnavailableError{Peer: "customer", Err: errors.New("down")} }, "", nil, 5},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			current = current.Add(st.advance)
			if st.mutate != nil {
				st.mutate()
			}
			got, err := lookup(st.id)
			if st.wantErr != nil && !errors.Is(err, st.wantErr) {
				t.Errorf("error %v, want %v", err, st.wantErr)
			}
			if st.wantErr == nil && st.wantTier != "" && (err != nil || got.Tier != st.wantTier) {
				t.Errorf("got %+v, %v; want tier %s", got, err, st.wantTier)
			}
			if inner.calls != st.wantCalls {
				t.Errorf("inner lookups %d, want %d", inner.calls, st.wantCalls)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		inner.err = nil
		for i := range 10 {
			id := string(rune('a' + i))
			inner.customers[id] = CustomerFacts{ID: id}
			if _, err := lookup(id); err != nil {
				t.Fatal(err)
			}
		}
		d.mu.Lock()
		n := len(d.entries)
		d.mu.Unlock()
		if n > 2 {
			t.Errorf("cache holds %d entries, max 2", n)
		}
	})
}
