package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	millrace "github.com/millrace/millrace"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/edge"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/feed"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/natsbus"
	"github.com/millrace/millrace/internal/platform"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/internal/webhooks"
)

// domain is one service the binary can run: its store and how it registers
// its gRPC server.
type domain struct {
	name     string
	schema   storage.Schema
	register func(s grpc.ServiceRegistrar, db *storage.DB, w *wiring) (runner, error)
}

// wiring is what a service gets from the process it runs in.
type wiring struct {
	notify func()                                // tell the service's outbox relay to publish now
	peer   func(string) grpc.ClientConnInterface // connection to another service, with the mesh credential
	bus    events.Bus                            // the event bus services consume from
	log    *slog.Logger
	// subscribe registers a service's consumer registration, run before
	// the outbox relays start so that no event passes a consumer by.
	subscribe func(func() error)
	// failpoint is the order saga's crash failpoint (MILLRACE_FAILPOINT);
	// nil unless armed.
	failpoint func(step string) error
	// metrics receives a service's own KPIs, beside the platform's.
	metrics prometheus.Registerer
}

// node is one running Millrace process: its stores, servers and background
// work.
type node struct {
	cfg     *serveConfig
	log     *slog.Logger
	stdout  io.Writer
	stores  map[string]*storage.DB
	order   []string // store names in open order
	bus     events.Bus
	relays  map[string]*events.Relay
	grpc    *grpc.Server
	health  *health.Server
	metrics *platform.Metrics
	keys    *auth.KeyStore
	mesh    string // mesh token
	inproc  *bufconn.Listener
	channel *platform.Channel
	conns   []*grpc.ClientConn
	http    *http.Server
	idem    map[string]*idempotency.Store
	runners []runner

	webhooks    *webhooks.Dispatcher
	feed        *feed.Log
	subs        []events.Subscription
	subscribers []func() error

	runsEdge    bool
	adminKey    string
	serverTLS   *tls.Config
	clientCreds credentials.TransportCredentials
	addrs       [2]string     // gRPC and HTTP listen addresses, once running
	started     chan struct{} // closed once serving, when non-nil (tests)
}

func serve(ctx context.Context, cfg *serveConfig, specs []flagSpec, gc string, stdout, stderr io.Writer) error {
	printConfig(stdout, specs)
	fmt.Fprintf(stdout, "  %-24s %s\n", "garbage collector", gc)
	n, err := newNode(cfg, newLogger(cfg.LogLevel, stderr), stdout)
	if err != nil {
		return err
	}
	defer n.closeStores()
	return n.run(ctx)
}

// newNode opens the stores of the selected services and builds the gRPC
// server with every service registered. Nothing listens yet.
func newNode(cfg *serveConfig, log *slog.Logger, stdout io.Writer) (_ *node, err error) {
	n := &node{cfg: cfg, log: log, stdout: stdout, stores: map[string]*storage.DB{}, relays: map[string]*events.Relay{}, metrics: platform.NewMetrics(), idem: map[string]*idempotency.Store{}}
	defer func() {
		if err != nil {
			n.closeStores()
		}
	}()
	n.mesh = cfg.MeshToken
	if n.mesh == "" {
		n.mesh = randomHex(24) // all-in-one: services call each other in process
	}
	domains := selectDomains(cfg.Service)
	n.runsEdge = cfg.Service == "all" || cfg.Service == "edge"

	for _, d := range domains {
		if err := n.open(d.name, d.schema); err != nil {
			return nil, err
		}
	}
	if n.runsEdge {
		if err := n.open("integration", edge.Schema); err != nil {
			return nil, err
		}
		n.keys = auth.NewKeyStore(n.stores["integration"])
	}

	if cfg.NATSURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		bus, err := natsbus.Connect(ctx, cfg.NATSURL, natsbus.Options{Log: log.With("component", "natsbus")})
		cancel()
		if err != nil {
			return nil, usagef("cannot use NATS at --nats-url %s: %v", cfg.NATSURL, err)
		}
		n.bus = bus
	} else {
		if cfg.Service != "all" {
			log.Warn("running one service without --nats-url: its events stay in this process and other services never see them")
		}
		// The relays delete an event from the outbox once Publish returns:
		// on the in-process bus that must wait until the consumers have it.
		n.bus = newHandledBus(events.NewLocalBus(), slowConsumer)
	}
	for name, db := range n.stores {
		n.relays[name] = events.NewRelay(db, n.bus, log.With("store", name), events.WithStats(n.metrics.ObserveOutbox))
	}

	n.serverTLS, n.clientCreds, err = tlsSetup(cfg)
	if err != nil {
		return nil, err
	}
	var verifier platform.Verifier
	if n.runsEdge {
		verifier = n.keys
	} else {
		conn, err := n.dial(cfg.Peers["edge"], n.clientCreds, false)
		if err != nil {
			return nil, err
		}
		verifier = edge.NewRemoteVerifier(conn, n.mesh)
	}
	for name, db := range n.stores {
		st := idempotency.NewStore(db, idempotency.Options{TTL: cfg.IdemTTL})
		released, err := st.ReleaseAbandoned()
		if err != nil {
			return nil, err
		}
		if released > 0 {
			log.Warn("released idempotency keys left in flight by a previous run; a retry runs again, or answers with what the first run created", "store", name, "keys", released)
		}
		n.idem[name] = st
	}
	chain := &platform.Chain{
		Log:      log,
		Auth:     &platform.Authenticator{Keys: verifier, MeshToken: n.mesh},
		Limiter:  platform.NewRateLimiter(cfg.RateLimit, cfg.RateBurst),
		Validate: true,
		Metrics:  n.metrics,
		Idempotency: &platform.Idempotency{Log: log, StoreFor: func(method string) *idempotency.Store {
			return n.idem[platform.StoreOf(method)]
		}},
	}
	n.grpc, n.health = platform.NewGRPCServer(chain, n.serverTLS)
	n.inproc = bufconn.Listen(1 << 20)
	mem, err := n.dialMemory()
	if err != nil {
		return nil, err
	}
	n.channel = platform.NewChannel(chain.Unary()[0], mem)
	reg := platform.Registrars{n.grpc, n.channel}

	w := &wiring{log: log, peer: n.peerConn(n.clientCreds), bus: n.bus, subscribe: func(f func() error) { n.subscribers = append(n.subscribers, f) },
		failpoint: orderFailpoint(cfg.Failpoint, log), metrics: n.metrics.Registry}
	for _, d := range domains {
		dw := *w
		dw.notify = n.relays[d.name].Notify
		r, err := d.register(reg, n.stores[d.name], &dw)
		if err != nil {
			return nil, fmt.Errorf("start the %s service: %w", d.name, err)
		}
		if r != nil {
			n.runners = append(n.runners, r)
		}
	}
	if n.runsEdge {
		integrationv1.RegisterApiKeyServiceServer(reg, &edge.APIKeyServer{Keys: n.keys})
		key, err := webhookKey(cfg)
		if err != nil {
			return nil, err
		}
		n.feed, err = feed.NewLog(n.stores["integration"], feed.Options{Retention: cfg.FeedRetention, Log: log.With("component", "feed")})
		if err != nil {
			return nil, fmt.Errorf("open the event feed: %w", err)
		}
		n.webhooks, err = webhooks.New(n.stores["integration"], webhooks.Options{
			SecretKey:    key,
			AllowPrivate: cfg.AllowPrivate || cfg.Demo,
			Registerer:   n.metrics.Registry,
			Log:          log.With("component", "webhooks"),
			Events:       n.feed,
		})
		if err != nil {
			return nil, fmt.Errorf("start webhook delivery: %w", err)
		}
		integrationv1.RegisterSubscriptionServiceServer(reg, webhooks.NewServer(n.webhooks))
		integrationv1.RegisterEventServiceServer(reg, feed.NewServer(n.feed))
	}
	stores := make([]*storage.DB, 0, len(n.order))
	for _, name := range n.order {
		stores = append(stores, n.stores[name])
	}
	integrationv1.RegisterOperationsServiceServer(reg, &edge.OperationsServer{Stores: stores})
	platform.MarkServing(n.grpc, n.health)
	return n, nil
}

// run listens, serves until ctx ends, then shuts down gracefully.
func (n *node) run(ctx context.Context) error {
	cfg, log := n.cfg, n.log
	defer n.bus.Close()
	var adminKey string
	var err error
	if n.runsEdge {
		if adminKey, err = n.bootstrapAdmin(); err != nil {
			return err
		}
		n.adminKey = adminKey
	}
	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return usagef("cannot listen on --grpc-addr %s: %v", cfg.GRPCAddr, unwrapNet(err))
	}
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return usagef("cannot listen on --http-addr %s: %v", cfg.HTTPAddr, unwrapNet(err))
	}
	handler, err := n.httpHandler(ctx, n.runsEdge, n.clientCreds)
	if err != nil {
		grpcLis.Close()
		httpLis.Close()
		return err
	}
	n.http = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if n.serverTLS != nil {
		n.http.TLSConfig = &tls.Config{Certificates: n.serverTLS.Certificates, MinVersion: tls.VersionTLS12}
	}

	if err := n.subscribe(); err != nil {
		grpcLis.Close()
		httpLis.Close()
		return err
	}
	bgCtx, stopBG := context.WithCancel(context.Background())
	var bg errgroup.Group
	for _, r := range n.relays {
		bg.Go(func() error { return r.Run(bgCtx) })
	}
	for _, st := range n.idem {
		bg.Go(func() error { st.RunSweeper(bgCtx, time.Hour, log); return nil })
	}
	if n.webhooks != nil {
		bg.Go(func() error { return n.webhooks.Run(bgCtx) })
	}
	if n.feed != nil {
		bg.Go(func() error { _ = n.feed.RunSweeper(bgCtx, time.Hour); return nil })
	}
	for _, r := range n.runners {
		bg.Go(func() error {
			if err := r(bgCtx); err != nil && bgCtx.Err() == nil {
				log.Error("background work stopped", "err", err)
			}
			return nil
		})
	}

	srv, srvCtx := errgroup.WithContext(ctx)
	srv.Go(func() error { return n.grpc.Serve(grpcLis) })
	srv.Go(func() error { return n.grpc.Serve(n.inproc) })
	srv.Go(func() error {
		var err error
		if n.serverTLS != nil {
			err = n.http.ServeTLS(httpLis, "", "")
		} else {
			err = n.http.Serve(httpLis)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	n.addrs = [2]string{grpcLis.Addr().String(), httpLis.Addr().String()}
	log.Info("millrace started", "service", cfg.Service, "grpc_addr", n.addrs[0], "http_addr", n.addrs[1], "data_dir", cfg.DataDir)
	if cfg.Failpoint != "" {
		log.Warn("failpoint armed: this process kills itself when an order saga reaches it; start it again without "+failpointEnv+" to recover", "failpoint", cfg.Failpoint)
	}

	if cfg.Demo && cfg.Service == "all" {
		if err := n.loadDemo(ctx, adminKey, n.addrs[1], n.addrs[0]); err != nil {
			log.Error("demo data could not be loaded", "err", err)
		}
	}
	if n.started != nil {
		close(n.started)
	}

	<-srvCtx.Done()
	log.Info("shutting down: refusing new calls, finishing those in flight")
	n.shutdown()
	// The relays stop before the consumers: on the in-process bus a relay
	// waits for the consumers to handle what it publishes.
	stopBG()
	for _, sub := range n.subs {
		sub.Stop()
	}
	_ = bg.Wait()
	if err := srv.Wait(); err != nil && !errors.Is(err, grpc.ErrServerStopped) && ctx.Err() == nil {
		return err
	}
	log.Info("millrace stopped")
	return nil
}

// shutdown stops accepting work and drains in-flight calls within the
// grace period; stores are closed last, by the caller's defer.
func (n *node) shutdown() {
	n.health.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), platform.ShutdownGrace)
	defer cancel()
	_ = n.http.Shutdown(ctx)
	done := make(chan struct{})
	go func() { n.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		n.log.Warn("calls still running after the grace period; stopping them")
		n.grpc.Stop()
	}
	for _, c := range n.conns {
		c.Close()
	}
}

func (n *node) open(name string, schema storage.Schema) error {
	path := filepath.Join(n.cfg.DataDir, name+".db")
	db, err := storage.Open(path, schema, storage.Options{})
	if err != nil {
		return usagef("cannot open the %s store: %v", name, err)
	}
	db.SetObserver(n.metrics)
	n.stores[name] = db
	n.order = append(n.order, name)
	return nil
}

func (n *node) closeStores() {
	for _, name := range n.order {
		if err := n.stores[name].Close(); err != nil {
			n.log.Error("closing store", "store", name, "err", err)
		}
	}
}

// dial connects to a peer's gRPC address; withMesh adds the mesh token as
// the call credential (service-to-service calls), otherwise the caller's
// own credentials travel in the metadata (the gateway).
func (n *node) dial(addr string, creds credentials.TransportCredentials, withMesh bool) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if withMesh {
		opts = append(opts, grpc.WithPerRPCCredentials(meshCreds{token: n.mesh, secure: creds.Info().SecurityProtocol != "insecure"}))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, usagef("invalid peer address %q: %v", addr, err)
	}
	n.conns = append(n.conns, conn)
	return conn, nil
}

// dialInProcess returns a connection to this process's own services: the
// in-process channel (the same interceptor chain as the gRPC server,
// without HTTP/2 framing). withMesh adds the mesh credential, as services
// calling each other present it.
func (n *node) dialInProcess(withMesh bool) (grpc.ClientConnInterface, error) {
	if withMesh {
		return platform.WithToken(n.channel, n.mesh), nil
	}
	return n.channel, nil
}

// dialMemory connects to this process's gRPC server over an in-memory
// listener; the channel sends streaming calls through it.
func (n *node) dialMemory() (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("passthrough:///millrace-inprocess",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return n.inproc.DialContext(ctx) }))
	if err != nil {
		return nil, err
	}
	n.conns = append(n.conns, conn)
	return conn, nil
}

// peerConn returns connections to other services: in process when this
// process runs them, over the network otherwise.
func (n *node) peerConn(creds credentials.TransportCredentials) func(string) grpc.ClientConnInterface {
	cache := map[string]grpc.ClientConnInterface{}
	return func(service string) grpc.ClientConnInterface {
		if c := cache[service]; c != nil {
			return c
		}
		var conn grpc.ClientConnInterface
		var err error
		if addr := n.cfg.Peers[service]; addr != "" && n.cfg.Service != "all" {
			conn, err = n.dial(addr, creds, true)
		} else {
			conn, err = n.dialInProcess(true)
		}
		if err != nil {
			panic(fmt.Sprintf("connect to %s: %v", service, err)) // only on a malformed address, checked at start
		}
		cache[service] = conn
		return conn
	}
}

type meshCreds struct {
	token  string
	secure bool
}

func (m meshCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + m.token}, nil
}

func (m meshCreds) RequireTransportSecurity() bool { return m.secure }

// httpHandler is the REST edge in the all-in-one and edge processes, and
// just health and metrics in a domain service of a mesh.
func (n *node) httpHandler(ctx context.Context, runsEdge bool, creds credentials.TransportCredentials) (http.Handler, error) {
	if !runsEdge {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"status":"ok"}`) })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			if err := n.ready(r.Context()); err != nil {
				http.Error(w, `{"status":"not ready"}`, http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, `{"status":"ready"}`)
		})
		mux.Handle("GET /metrics", platform.MetricsHandler(n.metrics))
		return mux, nil
	}
	conns := map[string]grpc.ClientConnInterface{}
	// The gateway's messages live for one HTTP request: it hands them to the
	// services in process without a copy each way.
	local := n.channel.Handoff()
	conns["integration"] = local
	for _, s := range []string{"customer", "productpricing", "fulfillment", "order"} {
		if n.cfg.Service == "all" {
			conns[s] = local
			continue
		}
		c, err := n.dial(n.cfg.Peers[s], creds, false)
		if err != nil {
			return nil, err
		}
		conns[s] = c
	}
	return platform.NewGateway(ctx, platform.GatewayConfig{
		Conns: conns, Metrics: n.metrics, OpenAPI: millrace.OpenAPI, Ready: n.ready, Log: n.log,
	})
}

// ready reports whether every store is open and every service serving, and
// in the edge of a mesh whether every peer answers its health check.
func (n *node) ready(ctx context.Context) error {
	for name, db := range n.stores {
		if err := db.View(func(*bbolt.Tx) error { return nil }); err != nil {
			return fmt.Errorf("store %s: %v", name, err)
		}
	}
	resp, err := n.health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return errors.New("not serving")
	}
	if n.cfg.Service == "edge" {
		for _, s := range []string{"customer", "productpricing", "fulfillment", "order"} {
			hc := healthpb.NewHealthClient(n.peerConn(insecure.NewCredentials())(s))
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("peer %s is not serving", s)
			}
		}
	}
	return nil
}

// bootstrapAdmin makes sure an admin key exists: MILLRACE_ADMIN_KEY is
// imported; otherwise, when the store has no key, one is generated and
// printed once (in --demo, kept in the data dir so restarts can show it).
func (n *node) bootstrapAdmin() (string, error) {
	if n.cfg.AdminKey != "" {
		if _, err := n.keys.Import(n.cfg.AdminKey, &integrationv1.ApiKey{DisplayName: "bootstrap admin", Role: auth.RoleAdmin}); err != nil {
			return "", usagef("cannot use the admin key from MILLRACE_ADMIN_KEY: %v", err)
		}
		return n.cfg.AdminKey, nil
	}
	demoFile := filepath.Join(n.cfg.DataDir, "demo-admin-key")
	if n.cfg.Demo {
		if b, err := os.ReadFile(demoFile); err == nil {
			key := strings.TrimSpace(string(b))
			if _, err := n.keys.Verify(context.Background(), key); err == nil {
				return key, nil
			}
		}
	}
	count, err := n.keys.Count()
	if err != nil {
		return "", err
	}
	if count > 0 && !n.cfg.Demo {
		return "", nil
	}
	_, secret, err := n.keys.Create(context.Background(), &integrationv1.ApiKey{DisplayName: "bootstrap admin", Role: auth.RoleAdmin})
	if err != nil {
		return "", fmt.Errorf("create the admin key: %w", err)
	}
	if n.cfg.Demo {
		if err := os.WriteFile(demoFile, []byte(secret+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("write %s: %w", demoFile, err)
		}
	}
	fmt.Fprintf(n.stdout, "\nGenerated the first admin API key. It is shown only now; store it safely:\n\n    %s\n\n", secret)
	return secret, nil
}

func selectDomains(service string) []domain {
	var out []domain
	for _, d := range allDomains() {
		if service == "all" || service == d.name {
			out = append(out, d)
		}
	}
	return out
}

func tlsSetup(cfg *serveConfig) (*tls.Config, credentials.TransportCredentials, error) {
	if cfg.TLSCert == "" {
		return nil, insecure.NewCredentials(), nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, nil, usagef("cannot load --tls-cert/--tls-key: %v", err)
	}
	server := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	client := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSCA != "" {
		pem, err := os.ReadFile(cfg.TLSCA)
		if err != nil {
			return nil, nil, usagef("cannot read --tls-ca: %v", unwrapPath(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, usagef("--tls-ca %s holds no PEM certificate", cfg.TLSCA)
		}
		server.ClientCAs = pool
		server.ClientAuth = tls.RequireAndVerifyClientCert
		client.RootCAs = pool
	}
	return server, credentials.NewTLS(client), nil
}

func newLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func unwrapNet(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// webhookKey returns the key that encrypts webhook signing secrets at rest:
// MILLRACE_WEBHOOK_KEY (64 hex characters) when set, else a key file in the
// data dir created on first start. Back the file up with the stores: the
// copies of integration.db are useless without it.
func webhookKey(cfg *serveConfig) ([]byte, error) {
	if cfg.WebhookKey != "" {
		key, err := hex.DecodeString(cfg.WebhookKey)
		if err != nil || len(key) != webhooks.SecretKeySize {
			return nil, usagef("MILLRACE_WEBHOOK_KEY must be %d hex characters", 2*webhooks.SecretKeySize)
		}
		return key, nil
	}
	key, err := webhooks.LoadOrCreateKey(filepath.Join(cfg.DataDir, "webhook-secret.key"))
	if err != nil {
		return nil, usagef("webhook key: %v", err)
	}
	return key, nil
}

// subscribe registers the process's event consumers on the bus. It runs
// before the outbox relays start: the in-process bus is not durable, so a
// consumer that subscribed later would miss what the relays publish first.
// The feed and webhook delivery take their events in batches, each
// committed in one transaction of the integration store, so that a backlog
// drains at a batch per disk sync; the feed is paced (feed.Pace) so that
// it also syncs seldom when it keeps up. Webhook delivery is not: a
// subscriber waits for its events.
func (n *node) subscribe() error {
	if n.feed != nil {
		sub, err := n.bus.SubscribeBatch("feed", nil, 0, events.Paced(n.feed.ConsumeBatch, feed.Pace, 0))
		if err != nil {
			return fmt.Errorf("subscribe the event feed: %w", err)
		}
		n.subs = append(n.subs, sub)
	}
	for _, f := range n.subscribers {
		if err := f(); err != nil {
			return err
		}
	}
	if n.webhooks != nil {
		sub, err := n.bus.SubscribeBatch(webhooks.ConsumerName, nil, 0, n.webhooks.ConsumeBatch)
		if err != nil {
			return fmt.Errorf("subscribe webhook delivery: %w", err)
		}
		n.subs = append(n.subs, sub)
	}
	return nil
}
