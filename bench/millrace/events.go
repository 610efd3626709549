package millrace

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/millrace/millrace/bench/ceilings"
	"github.com/millrace/millrace/bench/harness"
	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"github.com/millrace/millrace/internal/app"
	"github.com/millrace/millrace/internal/edge"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/ids"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/internal/webhooks"
)

// The event one-shots (-events): how long a committed change takes to
// reach a webhook receiver, whether a hanging receiver slows delivery to
// the healthy ones, and what the NATS JetStream bus costs CreateOrder
// against the in-process bus. Each has a fixed shape (a rate, a number of
// events, interleaved rounds) and a target, so it runs on its own and
// prints its own lines, like RunLoads and RunScale.

// Names of the event one-shots, for EventsConfig.Only.
const (
	WebhookLatencyName = "webhook-latency"
	WebhookFanoutName  = "webhook-fanout"
	BusCreateOrderName = "bus-create-order"
)

// Targets of the event one-shots.
const (
	// WebhookLatencyTarget bounds the p99 from commit to webhook receipt at
	// EventsConfig.LatencyRate customers a second on the in-process bus.
	WebhookLatencyTarget = 100 * time.Millisecond
	// WebhookFanoutTargetPct is the least share of the all-healthy delivery
	// throughput the ten healthy endpoints must keep while an eleventh
	// hangs past the dispatcher's timeout.
	WebhookFanoutTargetPct = 90
	// BusTargetPct is the least share of the in-process bus's CreateOrder
	// throughput a node on NATS JetStream must reach.
	BusTargetPct = 80
)

// EventsConfig configures the event one-shots. Zero values mean the
// defaults given with each field.
type EventsConfig struct {
	// Dir is where the data dirs go (the nodes', the dispatcher's store and
	// the NATS server's); empty means the system temp dir. It must be a real
	// disk: every store fsyncs its commits.
	Dir string
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
	// Only is a comma-separated list of the one-shots to run
	// (WebhookLatencyName, WebhookFanoutName, BusCreateOrderName); empty
	// runs all three.
	Only string

	// LatencyRate customers a second are created over gRPC, open loop, for
	// LatencyWarmup (unrecorded) and then LatencyDuration: 200/s, 1 s, 10 s.
	LatencyRate     int
	LatencyWarmup   time.Duration
	LatencyDuration time.Duration

	// FanoutEvents events are queued for a dispatcher with 11 subscriptions, in
	// FanoutRounds rounds of each configuration (all healthy, one
	// hanging), with FanoutTimeout as the dispatcher's attempt timeout:
	// 600 events, 2 rounds, 2 s.
	FanoutEvents  int
	FanoutRounds  int
	FanoutTimeout time.Duration

	// BusConcurrency clients create orders on each node in BusRounds
	// interleaved rounds of BusDuration, each after a 1 s warm-up: 32
	// clients, 2 rounds of 4 s.
	BusConcurrency int
	BusRounds      int
	BusDuration    time.Duration
}

func (c *EventsConfig) defaults() {
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	c.LatencyRate = orDefault(c.LatencyRate, 200)
	c.LatencyWarmup = durOr(c.LatencyWarmup, time.Second)
	c.LatencyDuration = durOr(c.LatencyDuration, 10*time.Second)
	c.FanoutEvents = orDefault(c.FanoutEvents, 600)
	c.FanoutRounds = orDefault(c.FanoutRounds, 2)
	c.FanoutTimeout = durOr(c.FanoutTimeout, 2*time.Second)
	c.BusConcurrency = orDefault(c.BusConcurrency, 32)
	c.BusRounds = orDefault(c.BusRounds, 2)
	c.BusDuration = durOr(c.BusDuration, 4*time.Second)
}

func durOr(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// RunEvents runs the event one-shots cfg.Only names, in the order latency,
// fan-out, bus.
func RunEvents(ctx context.Context, w io.Writer, cfg EventsConfig) error {
	cfg.defaults()
	all := []oneShot{
		{WebhookLatencyName, RunWebhookLatency},
		{WebhookFanoutName, RunWebhookFanout},
		{BusCreateOrderName, RunBusCreateOrder},
	}
	want := map[string]bool{}
	for name := range strings.SplitSeq(cfg.Only, ",") {
		if name = strings.TrimSpace(name); name != "" {
			want[name] = true
		}
	}
	var unknown []string
	for n := range want {
		if !slices.ContainsFunc(all, func(s oneShot) bool { return s.name == n }) {
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("unknown event one-shot %s (known: %s, %s, %s)", strings.Join(unknown, ", "), WebhookLatencyName, WebhookFanoutName, BusCreateOrderName)
	}
	for _, s := range all {
		if len(want) > 0 && !want[s.name] {
			continue
		}
		if err := s.run(ctx, w, cfg); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

type oneShot struct {
	name string
	run  func(context.Context, io.Writer, EventsConfig) error
}

// ---------------------------------------------------------------------------
// Commit to webhook receipt.

// RunWebhookLatency starts a node (in-process bus, webhooks to loopback
// allowed) with one subscription to CustomerCreated at a receiver on
// loopback, creates customers over gRPC at a steady cfg.LatencyRate a
// second, open loop (each call leaves at its scheduled time whether or not
// earlier ones have answered), and measures, for every customer created
// after the warm-up, the time from its event's envelope time (set in the
// committing transaction) to the receiver's arrival time. Both clocks are
// this process's. Every created customer's event must arrive, once. The
// disk's bolt-single-commit ceiling, measured before and after, is printed
// with the result, which follows it.
func RunWebhookLatency(ctx context.Context, w io.Writer, cfg EventsConfig) error {
	cfg.defaults()
	dir, err := os.MkdirTemp(cfg.Dir, "millrace-webhook-latency-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	type arrival struct {
		commit, at time.Time
	}
	var (
		mu       sync.Mutex
		arrivals = map[string][]arrival{} // by subject
		bad      atomic.Int64
	)
	recv, err := startReceiver(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		at := time.Now()
		var ce struct {
			Subject string `json:"subject"`
			Time    string `json:"time"`
		}
		body, err := io.ReadAll(r.Body)
		if err == nil {
			err = json.Unmarshal(body, &ce)
		}
		commit, terr := time.Parse(time.RFC3339Nano, ce.Time)
		if err != nil || terr != nil || ce.Subject == "" {
			bad.Add(1)
		} else {
			mu.Lock()
			arrivals[ce.Subject] = append(arrivals[ce.Subject], arrival{commit, at})
			mu.Unlock()
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	if err != nil {
		return err
	}
	defer recv.close()

	n, err := startNodeWith(ctx, dir, 16, "--allow-private-webhooks")
	if err != nil {
		return err
	}
	defer n.close()
	createdType := events.Type(&eventsv1.CustomerCreated{})
	if _, err := integrationv1.NewSubscriptionServiceClient(n.conn).CreateSubscription(authed(ctx), &integrationv1.CreateSubscriptionRequest{
		Subscription: &integrationv1.Subscription{Url: recv.url, EventTypes: []string{createdType}, Description: "latency benchmark"},
	}); err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}

	// The pipeline commits several fsynced transactions per event, so its
	// latency follows the disk's, and on a shared machine the fsync rate
	// moves several-fold within an hour: the bolt-single-commit ceiling is
	// measured before and after, and printed with the result.
	diskBefore, err := diskCeiling(ctx, cfg.Dir)
	if err != nil {
		return err
	}

	client := customerv1.NewCustomerServiceClient(n.conn)
	interval := time.Second / time.Duration(cfg.LatencyRate)
	warm := int(cfg.LatencyWarmup / interval)
	total := warm + int(cfg.LatencyDuration/interval)
	fmt.Fprintf(cfg.Progress, "%s: %d customers at %d/s (the first %d unrecorded)…\n", WebhookLatencyName, total, cfg.LatencyRate, warm)

	type call struct {
		subject string // empty when the call failed
		latency time.Duration
	}
	calls := make([]call, total)
	var (
		wg      sync.WaitGroup
		callErr atomic.Int64
		first   error
		firstMu sync.Mutex
	)
	start := time.Now()
	var sentLast time.Time
	for i := range total {
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		sentLast = time.Now()
		wg.Go(func() {
			t0 := time.Now()
			resp, err := client.CreateCustomer(authed(ctx), &customerv1.CreateCustomerRequest{Customer: sampleCustomer(i).GetCustomer()})
			if err != nil {
				callErr.Add(1)
				firstMu.Lock()
				first = cmpErr(first, err)
				firstMu.Unlock()
				return
			}
			calls[i] = call{subject: events.Subject("customers", resp.GetCustomer().GetId()), latency: time.Since(t0)}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	// Where the backlog is when the last customer is created: not yet
	// published, published but not yet queued for delivery, or queued.
	snap, err := n.metrics(ctx, "millrace_outbox_pending_events", "millrace_webhook_deliveries_enqueued_total",
		`millrace_webhook_delivery_attempts_total{result="success"}`)
	if err != nil {
		return err
	}
	sendRate := float64(total-1) / sentLast.Sub(start).Seconds()

	// Every created customer's event must arrive; wait for the stragglers.
	missing := func() int {
		mu.Lock()
		defer mu.Unlock()
		k := 0
		for _, c := range calls {
			if c.subject != "" && len(arrivals[c.subject]) == 0 {
				k++
			}
		}
		return k
	}
	deadline := time.Now().Add(30 * time.Second)
	for missing() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// A pipeline that keeps up has the same latency in the last second as
	// in the first; one that does not builds a backlog, and its latency
	// grows through the run.
	perSecond := cfg.LatencyRate
	var lat, api, firstSec, lastSec []time.Duration
	dups := 0
	mu.Lock()
	for i, c := range calls {
		if c.subject == "" {
			continue
		}
		got := arrivals[c.subject]
		dups += max(len(got)-1, 0)
		if i < warm || len(got) == 0 {
			continue
		}
		d := got[0].at.Sub(got[0].commit)
		lat = append(lat, d)
		api = append(api, c.latency)
		switch {
		case i < warm+perSecond:
			firstSec = append(firstSec, d)
		case i >= total-perSecond:
			lastSec = append(lastSec, d)
		}
	}
	mu.Unlock()
	slices.Sort(firstSec)
	slices.Sort(lastSec)
	slices.Sort(lat)
	slices.Sort(api)
	lost := missing()
	diskAfter, err := diskCeiling(ctx, cfg.Dir)
	if err != nil {
		return err
	}

	verdict := harness.VerdictPass
	switch {
	case callErr.Load() > 0 || lost > 0 || bad.Load() > 0 || len(lat) == 0:
		verdict = harness.VerdictErrors
	case quantile(lat, 0.99) > WebhookLatencyTarget:
		verdict = harness.VerdictBelow
	}
	name := fmt.Sprintf("%s-%d", WebhookLatencyName, cfg.LatencyRate)
	fmt.Fprintf(w, "%-24s %7s %7s %9s %9s %9s %9s %8s  %s\n", "one-shot", "events", "rate/s", "p50", "p90", "p99", "max", "target", "verdict")
	fmt.Fprintf(w, "%-24s %7d %7.1f %9s %9s %9s %9s %8s  %s\n", name, len(lat), sendRate,
		round(quantile(lat, 0.5)), round(quantile(lat, 0.9)), round(quantile(lat, 0.99)), round(quantile(lat, 1)),
		"≤"+WebhookLatencyTarget.String(), verdict)
	fmt.Fprintf(w, "  commit (envelope time) → receiver; CreateCustomer over gRPC p50 %s, p99 %s; %d call errors, %d events missing, %d duplicates, %d unreadable\n",
		round(quantile(api, 0.5)), round(quantile(api, 0.99)), callErr.Load(), lost, dups, bad.Load())
	fmt.Fprintf(w, "  p50 in the first recorded second %s, in the last %s; when the last call answered: %.0f events in outboxes, %.0f of %d queued for delivery, %.0f delivered\n",
		orDash(firstSec), orDash(lastSec), snap["millrace_outbox_pending_events"],
		snap["millrace_webhook_deliveries_enqueued_total"], total-int(callErr.Load()), snap[`millrace_webhook_delivery_attempts_total{result="success"}`])
	fmt.Fprintf(w, "  disk: %s %.0f commits/s (p99 %s) before, %.0f/s (p99 %s) after\n", ceilings.BoltSingleCommitName,
		diskBefore.Throughput, round(diskBefore.P99), diskAfter.Throughput, round(diskAfter.P99))
	if first != nil {
		fmt.Fprintf(w, "  first call error: %v\n", first)
	}
	return nil
}

// diskCeiling measures the bolt-single-commit ceiling in dir for 2 s.
func diskCeiling(ctx context.Context, dir string) (harness.Result, error) {
	res, err := ceilings.BoltSingleCommit(ctx, harness.Config{Concurrency: 1, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond}, dir)
	if err != nil {
		return harness.Result{}, fmt.Errorf("disk ceiling: %w", err)
	}
	return res, nil
}

// ---------------------------------------------------------------------------
// Delivery throughput with a hanging endpoint.

// fanoutEndpoints is how many subscriptions the fan-out one-shot has; in
// the second configuration the last of them hangs.
const fanoutEndpoints = 11

// RunWebhookFanout measures the webhook Dispatcher's delivery on its own,
// on a store opened as a node opens it (fsync on), with 11 subscriptions to
// receivers on loopback, each its own server as separate CRMs would be.
// cfg.FanoutEvents CustomerCreated events, each about a different customer
// (so each in its own lane), are queued for all 11 through Consume before
// the clock starts; the throughput is the ten first endpoints' deliveries
// per second, from Run's start to the last of their deliveries. Queueing
// is left out because with 11 subscriptions it costs more than delivery
// (about 5 ms an event with fsync) and would hide what a hanging endpoint
// does to delivery. Two configurations: all 11 healthy, and the 11th
// hanging until the dispatcher gives up (cfg.FanoutTimeout); their rounds
// are interleaved so that outside load hits both alike.
func RunWebhookFanout(ctx context.Context, w io.Writer, cfg EventsConfig) error {
	cfg.defaults()
	configs := []struct {
		name string
		hang bool
		res  []fanoutResult
	}{
		{name: fmt.Sprintf("%s-%d-healthy", WebhookFanoutName, fanoutEndpoints)},
		{name: fmt.Sprintf("%s-%d+1-hanging", WebhookFanoutName, fanoutEndpoints-1), hang: true},
	}
	for round := range cfg.FanoutRounds {
		for i := range configs {
			c := &configs[(i+round)%len(configs)] // ABBA: neither always goes first
			fmt.Fprintf(cfg.Progress, "round %d/%d: %s (%d events)…\n", round+1, cfg.FanoutRounds, c.name, cfg.FanoutEvents)
			res, err := fanoutOnce(ctx, cfg, c.hang)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			c.res = append(c.res, res)
		}
	}

	fmt.Fprintf(w, "%-32s %12s %9s  %s\n", "one-shot", "deliveries/s", "hung", "deliveries/s per round")
	rate := make([]float64, len(configs))
	for i, c := range configs {
		var delivered, hung int
		var secs float64
		var per []string
		for _, r := range c.res {
			delivered += r.delivered
			secs += r.elapsed.Seconds()
			hung += r.hung
			per = append(per, fmt.Sprintf("%.0f", float64(r.delivered)/r.elapsed.Seconds()))
		}
		rate[i] = float64(delivered) / secs
		fmt.Fprintf(w, "%-32s %12.0f %9d  [%s]\n", c.name, rate[i], hung, strings.Join(per, " "))
	}
	ratio := 100 * rate[1] / rate[0]
	verdict := harness.VerdictPass
	if ratio < WebhookFanoutTargetPct {
		verdict = harness.VerdictBelow
	}
	fmt.Fprintf(w, "healthy-%d throughput, hanging / all healthy = %.1f%% (%d events × %d endpoints, timeout %s, rounds %d; target ≥ %d%%): %s\n",
		fanoutEndpoints-1, ratio, cfg.FanoutEvents, fanoutEndpoints-1, cfg.FanoutTimeout, cfg.FanoutRounds, WebhookFanoutTargetPct, verdict)
	return nil
}

// fanoutResult is one round of the fan-out one-shot.
type fanoutResult struct {
	delivered int           // deliveries to the ten first endpoints
	elapsed   time.Duration // Run's start to the last of those deliveries
	hung      int           // requests the hanging endpoint held
}

func fanoutOnce(ctx context.Context, cfg EventsConfig, hang bool) (_ fanoutResult, err error) {
	dir, err := os.MkdirTemp(cfg.Dir, "millrace-webhook-fanout-*")
	if err != nil {
		return fanoutResult{}, err
	}
	defer os.RemoveAll(dir)
	key := make([]byte, webhooks.SecretKeySize)
	_, _ = rand.Read(key)
	opts := webhooks.Options{SecretKey: key, AllowPrivate: true, Timeout: cfg.FanoutTimeout, Log: slog.New(slog.DiscardHandler)}

	// Each healthy endpoint counts its deliveries by webhook-id, so a
	// retried one is not counted twice, and notes when it got its last.
	type endpoint struct {
		mu   sync.Mutex
		seen map[string]bool
		last time.Time
		full chan struct{}
	}
	want := cfg.FanoutEvents
	var hung atomic.Int64
	eps := make([]*endpoint, fanoutEndpoints)
	urls := make([]string, fanoutEndpoints)
	for i := range eps {
		ep := &endpoint{seen: map[string]bool{}, full: make(chan struct{})}
		eps[i] = ep
		var h http.HandlerFunc = func(rw http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			id := r.Header.Get("webhook-id")
			ep.mu.Lock()
			if !ep.seen[id] {
				ep.seen[id] = true
				ep.last = time.Now()
				if len(ep.seen) == want {
					close(ep.full)
				}
			}
			ep.mu.Unlock()
			rw.WriteHeader(http.StatusNoContent)
		}
		if hang && i == fanoutEndpoints-1 {
			// Accepts the request and never answers: the dispatcher's
			// timeout ends each attempt, as a receiver stuck on a lock would.
			h = func(_ http.ResponseWriter, r *http.Request) {
				hung.Add(1)
				<-r.Context().Done()
			}
		}
		recv, err := startReceiver(h)
		if err != nil {
			return fanoutResult{}, err
		}
		defer recv.close()
		urls[i] = recv.url
	}

	path := filepath.Join(dir, "integration.db")
	if err := queueFanout(ctx, path, opts, urls, want); err != nil {
		return fanoutResult{}, err
	}
	db, err := storage.Open(path, edge.Schema, storage.Options{})
	if err != nil {
		return fanoutResult{}, err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	d, err := webhooks.New(db, opts)
	if err != nil {
		return fanoutResult{}, err
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	t0 := time.Now()
	go func() { ran <- d.Run(runCtx) }()
	defer func() {
		stop()
		err = errors.Join(err, <-ran)
	}()
	timeout := time.After(2 * time.Minute)
	for _, ep := range eps[:fanoutEndpoints-1] {
		select {
		case <-ep.full:
		case <-timeout:
			return fanoutResult{}, errors.New("the healthy endpoints did not get every event within 2 minutes")
		case <-ctx.Done():
			return fanoutResult{}, ctx.Err()
		}
	}
	res := fanoutResult{delivered: want * (fanoutEndpoints - 1), hung: int(hung.Load())}
	for _, ep := range eps[:fanoutEndpoints-1] {
		ep.mu.Lock()
		res.elapsed = max(res.elapsed, ep.last.Sub(t0))
		ep.mu.Unlock()
	}
	return res, nil
}

// queueFanout creates the store at path with a subscription to every url
// and events queued for each, through the dispatcher's own Consume but on
// a store opened without fsync: queueing is not what is measured, and with
// fsync it takes ~10 ms an event with 11 subscriptions.
func queueFanout(ctx context.Context, path string, opts webhooks.Options, urls []string, events int) (err error) {
	db, err := storage.Open(path, edge.Schema, storage.Options{NoSync: true})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	d, err := webhooks.New(db, opts)
	if err != nil {
		return err
	}
	for i, u := range urls {
		if _, _, err := d.CreateSubscription(ctx, &integrationv1.Subscription{Url: u, Description: fmt.Sprintf("endpoint %d", i+1)}); err != nil {
			return fmt.Errorf("create subscription: %w", err)
		}
	}
	for i := range events {
		env, err := fanoutEvent(i)
		if err != nil {
			return err
		}
		if err := d.Consume(ctx, env); err != nil {
			return err
		}
	}
	return nil
}

// fanoutEvent is a CustomerCreated event about the i-th sample customer,
// as the customer service would commit it: its own subject, so every event
// is its own lane and the dispatcher may deliver them in parallel.
func fanoutEvent(i int) (*eventsv1.Envelope, error) {
	c := sampleCustomer(i).GetCustomer()
	c.Id = ids.New("cus")
	c.CreateTime = timestamppb.Now()
	data, err := anypb.New(&eventsv1.CustomerCreated{Customer: c})
	if err != nil {
		return nil, err
	}
	return &eventsv1.Envelope{
		Id: ids.New("evt"), Source: events.Source("customer"), Type: events.Type(&eventsv1.CustomerCreated{}),
		Subject: events.Subject("customers", c.GetId()), Time: timestamppb.Now(), SpecVersion: events.SpecVersion,
		Sequence: 1, Region: c.GetRegion(), Data: data,
	}, nil
}

// ---------------------------------------------------------------------------
// CreateOrder on the NATS bus against the in-process bus.

// RunBusCreateOrder starts a NATS server with JetStream inside the bench
// process (file storage in a temporary dir) and two nodes loaded alike for
// orders: one on the in-process bus, one with --nats-url. Both get the
// same CreateOrder load as the create-order scenarios (the 3-line basket,
// every order ACCEPTED) from cfg.BusConcurrency clients, in interleaved
// rounds. After every round but the last the node must settle, every
// committed event published and consumed by the event feed, before the
// next round starts, so that neither node's backlog runs into the other's
// measurement. How long that took, how many events an order made and how
// fast the feed consumed them are reported too: the consumers, not the
// bus, are what falls behind.
func RunBusCreateOrder(ctx context.Context, w io.Writer, cfg EventsConfig) error {
	cfg.defaults()
	natsDir, err := os.MkdirTemp(cfg.Dir, "millrace-nats-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(natsDir)
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: natsDir, NoLog: true, NoSigs: true})
	if err != nil {
		return fmt.Errorf("NATS server: %w", err)
	}
	go ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("the embedded NATS server did not start")
	}

	type bus struct {
		name   string
		args   []string
		n      *node
		feed   *feedCounter
		op     func(context.Context, int) error
		orders atomic.Int64 // accepted, warm-up included
		res    []harness.Result
		drains []busDrain
	}
	buses := []*bus{
		{name: "create-order-local-bus"},
		{name: "create-order-nats-bus", args: []string{"--nats-url", ns.ClientURL()}},
	}
	for _, b := range buses {
		dir, err := os.MkdirTemp(cfg.Dir, "millrace-bus-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if b.n, err = startNodeWith(ctx, dir, cfg.BusConcurrency, b.args...); err != nil {
			return err
		}
		defer b.n.close()
		f := &orderBench{n: b.n}
		if err := f.load(authed(ctx)); err != nil {
			return fmt.Errorf("%s: load: %w", b.name, err)
		}
		create := createOrderOp(orderv1.NewOrderServiceClient(b.n.conn), f.customerID)
		b.op = func(ctx context.Context, worker int) error {
			err := create(ctx, worker)
			if err == nil {
				b.orders.Add(1)
			}
			return err
		}
		if err := b.op(ctx, 0); err != nil {
			return fmt.Errorf("%s: first order: %w", b.name, err)
		}
		b.feed = &feedCounter{client: integrationv1.NewEventServiceClient(b.n.conn)}
		if _, err := b.n.settle(ctx, b.feed); err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
	}

	// Rounds in ABBA order, so that neither bus always goes first; every
	// round but the last is followed by the node settling.
	var plan []*bus
	for round := range cfg.BusRounds {
		for i := range buses {
			plan = append(plan, buses[(i+round)%len(buses)])
		}
	}
	for k, b := range plan {
		fmt.Fprintf(cfg.Progress, "round %d/%d: %s (%d clients, %s)…\n", k/len(buses)+1, cfg.BusRounds, b.name, cfg.BusConcurrency, cfg.BusDuration)
		before := b.orders.Load()
		res := harness.Run(ctx, harness.Config{Name: b.name, Concurrency: cfg.BusConcurrency, Duration: cfg.BusDuration, Warmup: time.Second}, b.op)
		if err := ctx.Err(); err != nil {
			return err
		}
		if res.Errors > 0 || res.Ops == 0 {
			return fmt.Errorf("%s: %d orders, %d errors", b.name, res.Ops, res.Errors)
		}
		b.res = append(b.res, res)
		if k == len(plan)-1 {
			break
		}
		f0 := b.feed.count
		if err := b.feed.catchUp(ctx); err != nil {
			return err
		}
		atEnd := b.feed.count
		drain, err := b.n.settle(ctx, b.feed)
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		b.drains = append(b.drains, busDrain{
			took:     drain,
			perOrder: float64(b.feed.count-f0) / float64(b.orders.Load()-before),
			pace:     float64(b.feed.count-atEnd) / drain.Seconds(),
		})
	}

	fmt.Fprintf(w, "%-24s %9s %9s %9s  %-14s %9s  %s\n", "one-shot", "orders/s", "p50", "p99", "per round", "ev/order", "settling after each round")
	rate := make([]float64, len(buses))
	for i, b := range buses {
		var ops, secs float64
		var p50s, p99s []time.Duration
		var per, drains []string
		perOrder := "-"
		for _, r := range b.res {
			ops += float64(r.Ops)
			secs += r.Elapsed.Seconds()
			p50s, p99s = append(p50s, r.P50), append(p99s, r.P99)
			per = append(per, fmt.Sprintf("%.0f", r.Throughput))
		}
		for _, d := range b.drains {
			drains = append(drains, fmt.Sprintf("%s at %.0f ev/s", round(d.took), d.pace))
			perOrder = fmt.Sprintf("%.1f", d.perOrder)
		}
		slices.Sort(p50s)
		slices.Sort(p99s)
		rate[i] = ops / secs
		fmt.Fprintf(w, "%-24s %9.0f %9s %9s  %-14s %9s  %s\n", b.name, rate[i], round(p50s[len(p50s)/2]), round(p99s[len(p99s)/2]),
			"["+strings.Join(per, " ")+"]", perOrder, strings.Join(drains, ", "))
	}
	ratio := 100 * rate[1] / rate[0]
	verdict := harness.VerdictPass
	if ratio < BusTargetPct {
		verdict = harness.VerdictBelow
	}
	fmt.Fprintf(w, "CreateOrder throughput, NATS / in-process = %.1f%% (%d clients, rounds %d × %s per bus; target ≥ %d%%): %s\n",
		ratio, cfg.BusConcurrency, cfg.BusRounds, cfg.BusDuration, BusTargetPct, verdict)
	return nil
}

// orDash is the median of sorted, rounded, or "-" when there is none.
func orDash(sorted []time.Duration) string {
	if len(sorted) == 0 {
		return "-"
	}
	return round(quantile(sorted, 0.5)).String()
}

// busDrain is how a node settled after a round: how long it took, the
// events each order of the round made, and how fast the feed consumed
// the backlog.
type busDrain struct {
	took     time.Duration
	perOrder float64
	pace     float64
}

// createOrderOp is the create-order scenarios' operation: the 3-line
// basket for customerID, which must come back ACCEPTED.
func createOrderOp(client orderv1.OrderServiceClient, customerID string) func(context.Context, int) error {
	req := &orderv1.CreateOrderRequest{Order: &orderv1.Order{
		CustomerId: customerID, CurrencyCode: "EUR", ShipToRegion: "eu",
		Lines: []*orderv1.OrderLine{
			orderLine("VALVE-BV25", "2", "CASE"),
			orderLine("CABLE-NYM3", "1", "ROLL"),
			orderLine("RESIN-PP", "3", "BAG"),
		},
	}}
	return func(ctx context.Context, _ int) error {
		resp, err := client.CreateOrder(authed(ctx), req)
		if err != nil {
			return err
		}
		if o := resp.GetOrder(); o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED {
			return fmt.Errorf("order %s is %v %v, want ACCEPTED", o.GetId(), o.GetStatus(), o.GetHoldReason())
		}
		return nil
	}
}

// feedCounter follows a node's event feed and counts its events.
type feedCounter struct {
	client integrationv1.EventServiceClient
	cursor string
	count  int
}

// catchUp reads the feed up to its end.
func (f *feedCounter) catchUp(ctx context.Context) error {
	for {
		resp, err := f.client.ListEvents(authed(ctx), &integrationv1.ListEventsRequest{After: f.cursor, PageSize: 1000})
		if err != nil {
			return fmt.Errorf("list events: %w", err)
		}
		f.count += len(resp.GetEvents())
		f.cursor = resp.GetNextCursor()
		if len(resp.GetEvents()) == 0 {
			return nil
		}
	}
}

// settleLimit bounds how long a node may take to settle.
const settleLimit = 2 * time.Minute

// settle waits until the node has published every committed event and its
// event feed holds as many events as were published, and returns how long
// that took. The feed is one of the bus's consumers; the webhook
// dispatcher and the order service consume alongside it.
func (n *node) settle(ctx context.Context, f *feedCounter) (time.Duration, error) {
	t0 := time.Now()
	for {
		pending, published, err := n.outbox(ctx)
		if err != nil {
			return 0, err
		}
		if err := f.catchUp(ctx); err != nil {
			return 0, err
		}
		if pending == 0 && float64(f.count) >= published {
			return time.Since(t0), nil
		}
		if time.Since(t0) > settleLimit {
			return 0, fmt.Errorf("not settled after %s: %.0f events in the outbox, %d of %.0f published events in the feed", settleLimit, pending, f.count, published)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// outbox reads the node's outbox metrics: events waiting in every store's
// outbox, and events published since the node started.
func (n *node) outbox(ctx context.Context) (pending, published float64, err error) {
	m, err := n.metrics(ctx, "millrace_outbox_pending_events", "millrace_outbox_published_events_total")
	return m["millrace_outbox_pending_events"], m["millrace_outbox_published_events_total"], err
}

// metrics reads the node's /metrics and sums each named metric over its
// labels; a name may carry a label selector, as in
// `millrace_webhook_delivery_attempts_total{result="success"}`.
func (n *node) metrics(ctx context.Context, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	sums := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series := line[:sp]
		for _, name := range names {
			metric, labels, _ := strings.Cut(name, "{")
			if series != metric && !strings.HasPrefix(series, metric+"{") {
				continue
			}
			if labels != "" && !strings.Contains(series, strings.TrimSuffix(labels, "}")) {
				continue
			}
			v, err := strconv.ParseFloat(line[sp+1:], 64)
			if err != nil {
				return nil, fmt.Errorf("metrics line %q: %w", line, err)
			}
			sums[name] += v
		}
	}
	return sums, sc.Err()
}

// ---------------------------------------------------------------------------
// Helpers.

// startNodeWith starts a node like startNodeIn with extra serve flags
// (--allow-private-webhooks, --nats-url) after the benchmark's own.
func startNodeWith(ctx context.Context, dir string, concurrency int, extra ...string) (*node, error) {
	args := append([]string{
		"--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--rate-limit", "0", "--log-level", "error",
	}, extra...)
	inst, err := app.Start(ctx, args, map[string]string{"MILLRACE_ADMIN_KEY": adminKey}, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("start millrace: %w", err)
	}
	conn, err := grpc.NewClient(inst.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		inst.Stop()
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = concurrency * 2
	tr.MaxIdleConnsPerHost = concurrency * 2
	return &node{inst: inst, conn: conn, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: "http://" + inst.HTTPAddr}, nil
}

// receiver is a webhook endpoint on loopback, a server of its own.
type receiver struct {
	srv *http.Server
	url string
}

func startReceiver(h http.Handler) (*receiver, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	return &receiver{srv: srv, url: "http://" + lis.Addr().String() + "/hooks"}, nil
}

// close stops the receiver at once, ending requests it holds.
func (r *receiver) close() { _ = r.srv.Close() }
