package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// usageError is a configuration mistake: the binary prints it on one line
// and exits with code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// Services a process can run with --service.
var serviceNames = []string{"all", "customer", "productpricing", "fulfillment", "order", "edge"}

// serveConfig is the configuration of `millrace serve`, from flags and
// MILLRACE_* environment variables (flags win).
type serveConfig struct {
	Service       string
	DataDir       string
	HTTPAddr      string
	GRPCAddr      string
	Demo          bool
	LogLevel      string
	RateLimit     float64
	RateBurst     int
	IdemTTL       time.Duration
	FeedRetention time.Duration
	AdminKey      string // secret
	MeshToken     string // secret
	WebhookKey    string // secret
	NATSURL       string
	AllowPrivate  bool
	TLSCert       string
	TLSKey        string
	TLSCA         string
	Peers         map[string]string // service → gRPC address, in mesh mode
	Failpoint     string            // MILLRACE_FAILPOINT, for recovery drills (failpoint.go)
}

type flagSpec struct {
	name, env, help string
	secret          bool
	isBool          bool
	set             func(string) error
	get             func() string
}

func parseServe(args []string, getenv func(string) string, stderr io.Writer) (*serveConfig, []flagSpec, error) {
	c := &serveConfig{Peers: map[string]string{}}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var specs []flagSpec
	str := func(p *string, name, def, help string, secret bool) {
		*p = def
		specs = append(specs, flagSpec{name: name, env: envName(name), help: help, secret: secret,
			set: func(v string) error { *p = v; return nil }, get: func() string { return *p }})
	}
	str(&c.Service, "service", "all", "which service to run: "+strings.Join(serviceNames, ", "), false)
	str(&c.DataDir, "data-dir", "./data", "directory of the bbolt stores, one file per service", false)
	str(&c.HTTPAddr, "http-addr", ":8080", "REST, health, metrics and console address", false)
	str(&c.GRPCAddr, "grpc-addr", ":9090", "gRPC address", false)
	str(&c.LogLevel, "log-level", "info", "debug, info, warn or error", false)
	str(&c.AdminKey, "admin-key", "", "bootstrap admin API key (prefer MILLRACE_ADMIN_KEY); generated and printed once when empty and no key exists", true)
	str(&c.MeshToken, "mesh-token", "", "shared secret services present to each other in a mesh (prefer MILLRACE_MESH_TOKEN)", true)
	str(&c.WebhookKey, "webhook-key", "", "64 hex characters encrypting webhook signing secrets at rest (prefer MILLRACE_WEBHOOK_KEY); a key file in the data dir when empty", true)
	str(&c.NATSURL, "nats-url", "", "NATS JetStream URL for events in mesh mode", false)
	str(&c.TLSCert, "tls-cert", "", "TLS certificate file for HTTP and gRPC", false)
	str(&c.TLSKey, "tls-key", "", "TLS key file", false)
	str(&c.TLSCA, "tls-ca", "", "CA file: verify peers and require client certificates (mTLS between mesh services)", false)
	for _, svc := range []string{"customer", "productpricing", "fulfillment", "order", "edge"} {
		svc := svc
		var v string
		specs = append(specs, flagSpec{name: svc + "-addr", env: envName(svc + "-addr"), help: "gRPC address of the " + svc + " service (mesh mode)",
			set: func(s string) error { v = s; c.Peers[svc] = s; return nil }, get: func() string { return v }})
	}
	boolean := func(p *bool, name string, def bool, help string) {
		*p = def
		specs = append(specs, flagSpec{name: name, env: envName(name), help: help, isBool: true,
			set: func(v string) error {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("want true or false")
				}
				*p = b
				return nil
			}, get: func() string { return strconv.FormatBool(*p) }})
	}
	boolean(&c.Demo, "demo", false, "load demo data on first start and allow private webhook URLs")
	boolean(&c.AllowPrivate, "allow-private-webhooks", false, "allow webhook URLs on private, loopback and link-local addresses")
	specs = append(specs,
		flagSpec{name: "rate-limit", env: envName("rate-limit"), help: "default requests per second per API key (0 disables)",
			set: func(v string) error {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil || f < 0 {
					return fmt.Errorf("want a number >= 0")
				}
				c.RateLimit = f
				return nil
			}, get: func() string { return strconv.FormatFloat(c.RateLimit, 'g', -1, 64) }},
		flagSpec{name: "rate-burst", env: envName("rate-burst"), help: "default burst per API key",
			set: func(v string) error {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					return fmt.Errorf("want an integer >= 1")
				}
				c.RateBurst = n
				return nil
			}, get: func() string { return strconv.Itoa(c.RateBurst) }},
		flagSpec{name: "idempotency-ttl", env: envName("idempotency-ttl"), help: "how long Idempotency-Key responses are kept",
			set: func(v string) error {
				d, err := time.ParseDuration(v)
				if err != nil || d < time.Minute {
					return fmt.Errorf("want a duration of at least 1m, like 168h")
				}
				c.IdemTTL = d
				return nil
			}, get: func() string { return c.IdemTTL.String() }},
	)
	specs = append(specs, flagSpec{name: "feed-retention", env: envName("feed-retention"), help: "how long the event feed (GET /v1/events) keeps events",
		set: func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < time.Hour {
				return fmt.Errorf("want a duration of at least 1h, like 720h")
			}
			c.FeedRetention = d
			return nil
		}, get: func() string { return c.FeedRetention.String() }})
	c.RateLimit, c.RateBurst, c.IdemTTL, c.FeedRetention = 200, 400, 7*24*time.Hour, 30*24*time.Hour
	c.Failpoint = getenv(failpointEnv)

	// Environment first, flags override.
	for _, s := range specs {
		if v := getenv(s.env); v != "" {
			if err := s.set(v); err != nil {
				return nil, nil, usagef("invalid %s=%q: %v", s.env, maskIf(s.secret, v), err)
			}
		}
	}
	for _, s := range specs {
		s := s
		if s.isBool {
			fs.BoolFunc(s.name, s.help, func(v string) error { return s.set(v) })
		} else {
			fs.Func(s.name, s.help, func(v string) error { return s.set(v) })
		}
	}
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printServeHelp(stderr, specs)
			return nil, nil, flag.ErrHelp
		}
		return nil, nil, usagef("%v (see millrace serve -h)", err)
	}
	if fs.NArg() > 0 {
		return nil, nil, usagef("unexpected argument %q (see millrace serve -h)", fs.Arg(0))
	}
	return c, specs, c.validate()
}

func (c *serveConfig) validate() error {
	if !contains(serviceNames, c.Service) {
		return usagef("invalid --service %q: want one of %s", c.Service, strings.Join(serviceNames, ", "))
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return usagef("invalid --log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	if c.Service != "all" && c.MeshToken == "" {
		return usagef("--service %s needs a mesh token (MILLRACE_MESH_TOKEN) shared by every service of the mesh", c.Service)
	}
	if c.MeshToken != "" && len(c.MeshToken) < 16 {
		return usagef("the mesh token must be at least 16 characters")
	}
	if c.Service != "all" && c.Service != "edge" && c.Peers["edge"] == "" {
		return usagef("--service %s needs --edge-addr (the edge authenticates API keys)", c.Service)
	}
	if c.Service == "edge" {
		for _, s := range []string{"customer", "productpricing", "fulfillment", "order"} {
			if c.Peers[s] == "" {
				return usagef("--service edge needs --%s-addr", s)
			}
		}
	}
	if err := checkFailpoint(c.Failpoint, c.Service); err != nil {
		return err
	}
	return checkDataDir(c.DataDir)
}

// checkDataDir makes sure the data directory exists (creating it) and is
// writable, so a bad directory fails at start with one clear line.
func checkDataDir(dir string) error {
	if dir == "" {
		return usagef("--data-dir must not be empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return usagef("data dir %s is unusable: %v", dir, unwrapPath(err))
	}
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return usagef("data dir %s is not a directory", dir)
	}
	probe := filepath.Join(dir, ".millrace-write-test")
	f, err := os.OpenFile(probe, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return usagef("data dir %s is not writable: %v", dir, unwrapPath(err))
	}
	f.Close()
	os.Remove(probe)
	return nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func envName(flagName string) string {
	return "MILLRACE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func maskIf(secret bool, v string) string {
	if secret {
		return mask(v)
	}
	return v
}

// mask hides a secret but its first characters, so an operator can tell
// which key is configured without it reaching a log.
func mask(v string) string {
	if v == "" {
		return ""
	}
	if len(v) <= 8 {
		return "****"
	}
	return v[:4] + "****"
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// printConfig writes the effective configuration, secrets masked.
func printConfig(w io.Writer, specs []flagSpec) {
	sorted := append([]flagSpec(nil), specs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	fmt.Fprintln(w, "millrace configuration:")
	for _, s := range sorted {
		v := s.get()
		if v == "" {
			continue
		}
		fmt.Fprintf(w, "  %-24s %s\n", "--"+s.name, maskIf(s.secret, v))
	}
}

func printServeHelp(w io.Writer, specs []flagSpec) {
	fmt.Fprintln(w, "usage: millrace serve [flags]")
	fmt.Fprintln(w, "\nEvery flag can also be set with the MILLRACE_* variable shown.")
	for _, s := range specs {
		fmt.Fprintf(w, "  --%-24s %s (%s)\n", s.name, s.help, s.env)
	}
}
