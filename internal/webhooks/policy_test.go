package webhooks

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
)

// fakeResolver answers from a table; a host with several answers gives them
// in turn (the last one repeats), which is how DNS rebinding looks.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func newFakeResolver(answers map[string][]string) *fakeResolver {
	r := &fakeResolver{answers: map[string][][]netip.Addr{}, calls: map[string]int{}}
	for host, seq := range answers {
		for _, a := range seq {
			var addrs []netip.Addr
			for _, s := range strings.Split(a, ",") {
				addrs = append(addrs, netip.MustParseAddr(s))
			}
			r.answers[host] = append(r.answers[host], addrs)
		}
	}
	return r
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq := r.answers[host]
	if len(seq) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	n := r.calls[host]
	r.calls[host]++
	return seq[min(n, len(seq)-1)], nil
}

func TestPublicAddr(t *testing.T) {
	tests := []struct {
		addr   string
		public bool
	}{
		{"93.184.216.34", true},
		{"8.8.8.8", true},
		{"2606:4700:4700::1111", true},
		{"127.0.0.1", false},
		{"127.8.9.10", false},
		{"10.0.0.1", false},
		{"10.255.255.255", false},
		{"172.16.0.1", false},
		{"172.31.255.254", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"100.64.0.1", false},
		{"255.255.255.255", false},
		{"224.0.0.1", false},
		{"::1", false},
		{"::", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fe80::1", false},
		{"ff02::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:93.184.216.34", true},
		{"64:ff9b::a00:1", false},      // NAT64 of 10.0.0.1
		{"64:ff9b::5db8:d822", true},   // NAT64 of 93.184.216.34
		{"2002:7f00:1::1", false},      // 6to4 of 127.0.0.1
		{"2002:5db8:d822::1", true},    // 6to4 of 93.184.216.34
		{"2001:0:4136:e378::1", false}, // Teredo
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := publicAddr(netip.MustParseAddr(tt.addr)); got != tt.public {
				t.Errorf("publicAddr(%s) = %v, want %v", tt.addr, got, tt.public)
			}
		})
	}
}

func TestCreateRefusesPrivateURLs(t *testing.T) {
	res := newFakeResolver(map[string][]string{
		"crm.example":     {"93.184.216.34"},
		"intranet.test":   {"10.1.2.3"},
		"mixed.test":      {"93.184.216.34,192.168.0.10"},
		"v6private.test":  {"fd00::5"},
		"metadata.test":   {"169.254.169.254"},
		"public6.example": {"2606:4700:4700::1111"},
	})
	db, _ := tempStore(t)
	opts := testOptions()
	opts.AllowPrivate = false
	opts.Resolver = res
	d := newDispatcher(t, db, opts)
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://crm.example/hooks", true},
		{"http://crm.example:8443/hooks?x=1", true},
		{"https://public6.example/", true},
		{"https://93.184.216.34/hooks", true},
		{"http://127.0.0.1/hooks", false},
		{"http://127.1.2.3:8080/", false},
		{"http://localhost:8080/", false},
		{"http://api.localhost/", false},
		{"http://[::1]/", false},
		{"http://10.0.0.1/", false},
		{"http://172.16.5.4/", false},
		{"http://192.168.1.1/", false},
		{"http://169.254.169.254/latest/meta-data", false},
		{"http://[fe80::1]/", false},
		{"http://[fc00::1]/", false},
		{"http://0.0.0.0/", false},
		{"http://[::ffff:127.0.0.1]/", false},
		{"https://intranet.test/", false},
		{"https://mixed.test/", false},
		{"https://v6private.test/", false},
		{"https://metadata.test/", false},
		{"https://nxdomain.test/", false},
		{"ftp://crm.example/", false},
		{"https://user:secret@crm.example/", false},
		{"https://crm.example:0/", false},
		{"https://crm.example:70000/", false},
		{"crm.example/hooks", false},
		{"https://", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, _, err := d.CreateSubscription(context.Background(), &integrationv1.Subscription{Url: tt.url})
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "subscription.url" {
				t.Fatalf("err = %v, want a FieldError on subscription.url", err)
			}
		})
	}

	t.Run("update is checked too", func(t *testing.T) {
		sub, _, err := d.CreateSubscription(context.Background(), &integrationv1.Subscription{Url: "https://crm.example/a"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.UpdateSubscription(context.Background(), &integrationv1.Subscription{Id: sub.GetId(), Url: "http://10.0.0.1/"})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "subscription.url" {
			t.Fatalf("err = %v, want a FieldError on subscription.url", err)
		}
	})

	t.Run("AllowPrivate", func(t *testing.T) {
		opts := testOptions()
		opts.AllowPrivate = true
		d := newDispatcher(t, db, opts)
		for _, u := range []string{"http://127.0.0.1:9/x", "http://localhost/", "http://[::1]/", "http://10.0.0.1/"} {
			if _, _, err := d.CreateSubscription(context.Background(), &integrationv1.Subscription{Url: u}); err != nil {
				t.Errorf("%s refused with AllowPrivate: %v", u, err)
			}
		}
	})
}

// A name that resolved to a public address when the subscription was made
// and to loopback when delivering is stopped at dial time.
func TestDialTimeCheckStopsDNSRebinding(t *testing.T) {
	rc := newReceiver(t, nil)
	u, _ := url.Parse(rc.srv.URL)
	res := newFakeResolver(map[string][]string{"rebind.test": {"93.184.216.34", "127.0.0.1"}})
	db, _ := tempStore(t)
	opts := testOptions()
	opts.AllowPrivate = false
	opts.Resolver = res
	d := newDispatcher(t, db, opts)
	sub, secret, err := d.CreateSubscription(context.Background(), &integrationv1.Subscription{Url: "http://rebind.test:" + u.Port() + "/hooks"})
	if err != nil {
		t.Fatal(err)
	}
	rc.setSecrets(secret)
	dl, err := d.SendTestEvent(context.Background(), sub.GetId())
	if err != nil {
		t.Fatal(err)
	}
	a := dl.GetAttempts()[0]
	if dl.GetStatus() != integrationv1.DeliveryStatus_DELIVERY_STATUS_DEAD || a.GetStatusCode() != 0 || !strings.Contains(a.GetError(), "address not allowed: 127.0.0.1") {
		t.Fatalf("delivery to a rebound name: %v", dl)
	}
	if n := rc.requestCount(); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}

	// A subscription made while private URLs were allowed is stopped too
	// once the operator turns that off.
	allow := testOptions()
	dAllow := newDispatcher(t, db, allow)
	sub2, _, err := dAllow.CreateSubscription(context.Background(), &integrationv1.Subscription{Url: rc.url()})
	if err != nil {
		t.Fatal(err)
	}
	dl, err = d.SendTestEvent(context.Background(), sub2.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if a := dl.GetAttempts()[0]; !strings.Contains(a.GetError(), "address not allowed") {
		t.Fatalf("delivery to a loopback URL with private URLs refused: %v", dl)
	}
	if n := rc.requestCount(); n != 0 {
		t.Fatalf("the loopback receiver got %d requests", n)
	}
}

func TestClassifyConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	db, _ := tempStore(t)
	d := newDispatcher(t, db, testOptions())
	sub, _ := createSub(t, d, "http://"+addr+"/hooks")
	dl, err := d.SendTestEvent(context.Background(), sub.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if a := dl.GetAttempts()[0]; a.GetError() != "connection refused" || a.GetStatusCode() != 0 {
		t.Fatalf("attempt = %v, want connection refused", a)
	}
	if got := deadLetters(t, d, ""); len(got) != 0 {
		t.Fatalf("a failed test event made %d dead letters", len(got))
	}
}
