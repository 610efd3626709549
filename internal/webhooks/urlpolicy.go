package webhooks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Webhook URLs are checked twice. At create (and update) the host is
// resolved and every address must be public, so an operator learns of a
// mistake at once. At dial time every connection's actual address is checked
// again in the dialer's Control hook, after DNS: a name that resolved to a
// public address at create and to 127.0.0.1 later (DNS rebinding) is refused
// on the wire. Redirects are not followed, so a public endpoint cannot send
// Millrace to an internal one either. Options.AllowPrivate turns both checks
// off, for demos and for receivers inside the operator's own network.

// Resolver looks up a host's addresses; *net.Resolver implements it. Tests
// use it to simulate DNS rebinding.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// blockedError reports a connection to an address the policy refuses.
type blockedError struct{ addr string }

func (e *blockedError) Error() string {
	return "address not allowed: " + e.addr + " is private, loopback or link-local"
}

// blockedPrefixes are refused. netip's classification (loopback, private,
// link-local, multicast, unspecified) covers most of them too; they are
// listed so the policy reads in one place.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network", including 0.0.0.0
	netip.MustParsePrefix("10.0.0.0/8"),     // private
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT, usually internal
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, including cloud metadata
	netip.MustParsePrefix("172.16.0.0/12"),  // private
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("192.168.0.0/16"), // private
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and 255.255.255.255
	netip.MustParsePrefix("::/128"),         // unspecified
	netip.MustParsePrefix("::1/128"),        // loopback
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("2001::/32"),      // Teredo: tunnels to any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("fc00::/7"),       // unique local
	netip.MustParsePrefix("fe80::/10"),      // link-local
	netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
	netip.MustParsePrefix("ff00::/8"),       // multicast
}

// IPv6 ranges that embed an IPv4 address a gateway then connects to: the
// embedded address is judged instead.
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// publicAddr reports whether a webhook may connect to a.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap() // ::ffff:10.0.0.1 is 10.0.0.1
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range blockedPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	// NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4 address that
	// the gateway connects to: judge that one.
	if a.Is6() {
		b := a.As16()
		if nat64Prefix.Contains(a) {
			return publicAddr(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		}
		if sixToFour.Contains(a) {
			return publicAddr(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		}
	}
	return true
}

// urlError explains why a URL is refused; it becomes a field violation of
// subscription.url.
type urlError struct{ reason string }

func (e *urlError) Error() string { return e.reason }

// checkURL applies the URL policy at create and update. It returns the URL
// in canonical form.
func checkURL(ctx context.Context, raw string, allowPrivate bool, r Resolver) (string, error) {
	if raw == "" {
		return "", &urlError{"is required"}
	}
	if len(raw) > 2048 {
		return "", &urlError{"must be at most 2048 characters"}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", &urlError{"is not a valid URL"}
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", &urlError{"must be an http or https URL"}
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return "", &urlError{"must name a host"}
	}
	if u.User != nil {
		// Returned by GetSubscription to every reader: no place for a
		// password. The signature authenticates Millrace to the receiver.
		return "", &urlError{"must not contain credentials; receivers authenticate Millrace by the webhook signature"}
	}
	if p := u.Port(); p != "" {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 {
			return "", &urlError{"has an invalid port"}
		}
	}
	u.Fragment = ""
	if allowPrivate {
		return u.String(), nil
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if !publicAddr(a) {
			return "", &urlError{fmt.Sprintf("points to a private, loopback or link-local address (%s); the operator has not allowed private webhook URLs", a)}
		}
		return u.String(), nil
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return "", &urlError{"points to localhost; the operator has not allowed private webhook URLs"}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return "", &urlError{fmt.Sprintf("host %q does not resolve", host)}
	}
	for _, a := range addrs {
		if !publicAddr(a) {
			return "", &urlError{fmt.Sprintf("host %q resolves to a private, loopback or link-local address (%s); the operator has not allowed private webhook URLs", host, a.Unmap())}
		}
	}
	return u.String(), nil
}

// dialControl refuses connections to non-public addresses. It runs after
// DNS resolution, on the address actually dialed.
func dialControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &blockedError{addr: address}
	}
	if !publicAddr(ap.Addr()) {
		return &blockedError{addr: ap.Addr().Unmap().String()}
	}
	return nil
}

// dialer connects to webhook endpoints, resolving names with its Resolver
// so tests can simulate DNS, and checking each address when Control is set.
type dialer struct {
	resolver Resolver
	net      net.Dialer
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = d.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
	}
	var first error
	for _, a := range addrs {
		conn, err := d.net.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if first == nil {
		first = &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	return nil, first
}
