package webhooks

import (
	"container/heap"
	"context"
	"crypto/cipher"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/storage"
)

// DefaultSchedule is the wait before each retry after a failed first
// attempt: eight attempts spread over up to about 28 hours. Each wait is
// drawn uniformly from [0, step] (full jitter) so receivers recovering from
// an outage are not hit in lockstep.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// Defaults of Options.
const (
	DefaultTimeout         = 15 * time.Second
	DefaultDisableAfter    = 24 * time.Hour
	DefaultSecretOverlap   = 24 * time.Hour
	DefaultMaxRetryAfter   = 10 * time.Hour
	DefaultWorkers         = 128
	DefaultPerSubscription = 4
	DefaultRetention       = 7 * 24 * time.Hour
)

// ConsumerName is the name the Dispatcher subscribes to the bus under.
const ConsumerName = "webhooks"

// TestEventType is the type of the event SendTestEvent sends. No proto
// message has this name: its data is a google.protobuf.Struct.
const TestEventType = "millrace.webhook.test"

// EventSource reads committed events of a time range, in commit order; the
// event feed implements it. ReplaySubscription needs one.
type EventSource interface {
	Range(ctx context.Context, start, end time.Time, visit func(*eventsv1.Envelope) error) error
}

// Options configure a Dispatcher. Only SecretKey is required.
type Options struct {
	// SecretKey seals signing secrets at rest with AES-256-GCM; 32 bytes.
	// See LoadOrCreateKey. Changing it makes existing secrets unusable.
	SecretKey []byte
	// AllowPrivate allows endpoints on private, loopback and link-local
	// addresses (--allow-private-webhooks, and --demo).
	AllowPrivate bool
	// Timeout bounds one attempt, response included; default 15s.
	Timeout time.Duration
	// Schedule is the wait before each retry; default DefaultSchedule. Its
	// length is the number of retries.
	Schedule []time.Duration
	// ScheduleScale multiplies every step of Schedule; 0 means 1. Tests use
	// a small value (0.0001) so the whole schedule takes seconds.
	ScheduleScale float64
	// MaxRetryAfter caps how long a receiver's Retry-After can defer a
	// retry; default 10h. It is not scaled.
	MaxRetryAfter time.Duration
	// DisableAfter is how long a subscription may fail without any success
	// before it is disabled; default 24h.
	DisableAfter time.Duration
	// SecretOverlap is how long a rotated-out secret keeps signing; default 24h.
	SecretOverlap time.Duration
	// Workers bounds attempts in flight in the process; default 128.
	Workers int
	// PerSubscription bounds attempts in flight per subscription; default 4.
	// A subscription that failed since its last success gets one.
	PerSubscription int
	// Retention is how long finished deliveries stay listable (and how long
	// a redelivered event is recognised as a duplicate); default 7 days.
	// Pending deliveries and dead letters are kept until they are resolved.
	Retention time.Duration
	// Events serves ReplaySubscription; without it that RPC fails with
	// FAILED_PRECONDITION.
	Events EventSource
	// Registerer, when set, receives the webhook metrics.
	Registerer prometheus.Registerer
	// Log receives delivery problems; secrets are never logged.
	Log *slog.Logger
	// Resolver resolves endpoint hosts; default net.DefaultResolver.
	Resolver Resolver
	// TLSConfig, when set, is used for https endpoints, for example to trust
	// an internal CA.
	TLSConfig *tls.Config
}

// Dispatcher queues, delivers and retries webhooks. Create one per process
// with New, subscribe ConsumeBatch to the bus, and call Run.
type Dispatcher struct {
	db        *storage.DB
	opts      Options
	log       *slog.Logger
	aead      cipher.AEAD
	resolver  Resolver
	transport *http.Transport
	client    *http.Client
	metrics   *metrics
	schedule  []time.Duration // scaled
	maxDelay  time.Duration   // cap of Retry-After
	jitter    func(max time.Duration) time.Duration
	ran       atomic.Bool

	// The scheduler. Its state is a cache of the store's queue: which lanes
	// (subscription, subject) have pending deliveries, their heads and when
	// each head is due. Never hold mu inside a store transaction; a short
	// read transaction under mu is fine.
	mu       sync.Mutex
	loaded   bool
	runCtx   context.Context
	subs     map[string]*subState
	timers   laneHeap
	runnable []*subState // round robin of subscriptions with ready lanes
	inflight int
	wake     chan struct{}
	wg       sync.WaitGroup
}

type laneState int

const (
	laneWaiting laneState = iota // in timers until due
	laneReady                    // due, waiting for a slot
	laneRunning                  // an attempt is in flight
)

// lane is the queue of one subject within one subscription: only its head
// is ever attempted.
type lane struct {
	sub   *subState
	key   string
	head  string
	due   time.Time
	state laneState
	index int // position in timers while waiting
}

type subState struct {
	id       string
	active   bool
	failing  bool // failed since its last success: one attempt at a time
	inflight int
	lanes    map[string]*lane
	ready    []*lane
	queued   bool // in runnable
}

type laneKey struct{ sub, lane string }

// New returns a dispatcher over db, whose schema must include Buckets.
func New(db *storage.DB, opts Options) (*Dispatcher, error) {
	aead, err := newAEAD(opts.SecretKey)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if len(opts.Schedule) == 0 {
		opts.Schedule = DefaultSchedule
	}
	if opts.ScheduleScale <= 0 {
		opts.ScheduleScale = 1
	}
	if opts.MaxRetryAfter <= 0 {
		opts.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if opts.DisableAfter <= 0 {
		opts.DisableAfter = DefaultDisableAfter
	}
	if opts.SecretOverlap <= 0 {
		opts.SecretOverlap = DefaultSecretOverlap
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.PerSubscription <= 0 {
		opts.PerSubscription = DefaultPerSubscription
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	m, err := newMetrics(opts.Registerer, db, func() time.Time { return time.Now().UTC() })
	if err != nil {
		return nil, fmt.Errorf("webhooks: register metrics: %w", err)
	}
	d := &Dispatcher{
		db:       db,
		opts:     opts,
		log:      opts.Log,
		aead:     aead,
		resolver: opts.Resolver,
		metrics:  m,
		maxDelay: opts.MaxRetryAfter,
		jitter: func(max time.Duration) time.Duration {
			if max <= 0 {
				return 0
			}
			return rand.N(max + 1)
		},
		subs: map[string]*subState{},
		wake: make(chan struct{}, 1),
	}
	for _, s := range opts.Schedule {
		d.schedule = append(d.schedule, time.Duration(float64(s)*opts.ScheduleScale))
	}
	dl := &dialer{resolver: opts.Resolver, net: net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}}
	if !opts.AllowPrivate {
		dl.net.Control = dialControl
	}
	d.transport = &http.Transport{
		Proxy:                 nil, // a proxy would dial for us and bypass the address check
		DialContext:           dl.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   opts.PerSubscription,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	if opts.TLSConfig != nil {
		d.transport.TLSClientConfig = opts.TLSConfig.Clone()
	}
	d.client = &http.Client{
		Transport: d.transport,
		// A redirect is a failure: following it could lead to an address
		// the policy refuses, and the receiver must fix its URL anyway.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return d, nil
}

// Run delivers pending deliveries until ctx ends, then waits for attempts
// in flight (they are cancelled and retried after the next start). It
// resumes the deliveries the store holds, so it is how deliveries survive a
// restart. Call it once.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.ran.CompareAndSwap(false, true) {
		return errors.New("webhooks: Run called twice")
	}
	defer d.transport.CloseIdleConnections()
	d.mu.Lock()
	d.runCtx = ctx
	err := d.loadLocked()
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("webhooks: resume pending deliveries: %w", err)
	}
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		d.runSweeper(ctx)
	}()
	defer func() { <-sweepDone }()
	defer d.wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		next := d.promoteLocked(time.Now())
		d.pumpLocked()
		d.mu.Unlock()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-timer.C:
		}
	}
}

func (d *Dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// loadLocked rebuilds the scheduler from the store: every subscription and
// the head of every lane with pending deliveries.
func (d *Dispatcher) loadLocked() error {
	err := d.db.View(func(tx *bbolt.Tx) error {
		err := tx.Bucket(bucketSubs).ForEach(func(k, v []byte) error {
			s, err := decodeSub(v)
			if err != nil {
				return err
			}
			d.subs[string(k)] = &subState{id: string(k), active: s.pb.GetStatus() == integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_ACTIVE, failing: s.pb.GetConsecutiveFailures() > 0, lanes: map[string]*lane{}}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketQueue).ForEach(func(k, v []byte) error {
			parts, err := storage.SplitKey(k)
			if err != nil || len(parts) != 3 {
				return fmt.Errorf("corrupt queue entry %q", k)
			}
			s := d.subs[string(parts[0])]
			if s == nil || s.lanes[string(parts[1])] != nil {
				return nil
			}
			return d.addLaneLocked(tx, s, string(parts[1]), string(v))
		})
	})
	if err != nil {
		return err
	}
	d.loaded = true
	for _, s := range d.subs {
		d.readyLocked(s)
	}
	return nil
}

// addLaneLocked starts tracking a lane whose head is id.
func (d *Dispatcher) addLaneLocked(tx *bbolt.Tx, s *subState, key, id string) error {
	l := &lane{sub: s, key: key, head: id, due: time.Now()}
	dl, err := getDelivery(tx, id)
	if err != nil {
		return err
	}
	if dl != nil && dl.pb.GetNextAttemptTime() != nil {
		l.due = dl.pb.GetNextAttemptTime().AsTime()
	}
	s.lanes[key] = l
	d.waitLocked(l)
	return nil
}

func (d *Dispatcher) waitLocked(l *lane) {
	l.state = laneWaiting
	heap.Push(&d.timers, l)
}

// promoteLocked moves lanes that are due to their subscription's ready
// list, and returns when the next waiting lane is due (zero if none).
func (d *Dispatcher) promoteLocked(now time.Time) time.Time {
	for len(d.timers) > 0 {
		l := d.timers[0]
		if l.due.After(now) {
			return l.due
		}
		heap.Pop(&d.timers)
		l.state = laneReady
		l.sub.ready = append(l.sub.ready, l)
		d.readyLocked(l.sub)
	}
	return time.Time{}
}

// limit is how many attempts a subscription may have in flight: while it
// is failing, one, so a dead endpoint holds a single worker while it is
// probed; otherwise Options.PerSubscription.
func (d *Dispatcher) limit(s *subState) int {
	if s.failing {
		return 1
	}
	return d.opts.PerSubscription
}

// readyLocked puts a subscription in the round robin when it can start an
// attempt.
func (d *Dispatcher) readyLocked(s *subState) {
	if s.active && !s.queued && len(s.ready) > 0 && s.inflight < d.limit(s) && d.subs[s.id] == s {
		s.queued = true
		d.runnable = append(d.runnable, s)
	}
}

// pumpLocked starts attempts while there are free workers, one lane per
// subscription per turn, so every subscription gets its share of workers.
func (d *Dispatcher) pumpLocked() {
	if d.runCtx == nil || d.runCtx.Err() != nil {
		return
	}
	for d.inflight < d.opts.Workers && len(d.runnable) > 0 {
		s := d.runnable[0]
		d.runnable[0] = nil
		d.runnable = d.runnable[1:]
		s.queued = false
		if !s.active || len(s.ready) == 0 || s.inflight >= d.limit(s) || d.subs[s.id] != s {
			continue
		}
		l := s.ready[0]
		s.ready[0] = nil
		s.ready = s.ready[1:]
		d.startLocked(l)
		d.readyLocked(s)
	}
}

func (d *Dispatcher) startLocked(l *lane) {
	l.state = laneRunning
	l.sub.inflight++
	d.inflight++
	d.wg.Add(1)
	ctx, id := d.runCtx, l.head
	go func() {
		defer d.wg.Done()
		out := d.attempt(ctx, id)
		d.finish(l, out)
	}()
}

// finish puts a lane back after an attempt: at its next attempt time, or
// with its next head when the delivery is done.
func (d *Dispatcher) finish(l *lane, out outcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.signal()
	s := l.sub
	s.inflight--
	d.inflight--
	if d.subs[s.id] != s {
		return // deleted meanwhile
	}
	err := d.db.View(func(tx *bbolt.Tx) error {
		sub, err := getSub(tx, s.id)
		if err != nil || sub == nil {
			return err
		}
		s.active = sub.pb.GetStatus() == integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_ACTIVE
		s.failing = sub.pb.GetConsecutiveFailures() > 0
		switch {
		case out.done:
			delete(s.lanes, l.key)
			if head := laneHead(tx, s.id, l.key); head != "" {
				return d.addLaneLocked(tx, s, l.key, head)
			}
		case out.aborted:
			l.due = time.Now()
			d.waitLocked(l)
		default:
			l.due = out.next
			d.waitLocked(l)
		}
		return nil
	})
	if err != nil {
		// The lane is lost from memory until the next start; its
		// deliveries are safe in the store.
		d.log.Error("webhook scheduler could not read the store", "subscription", s.id, "err", err)
		delete(s.lanes, l.key)
	}
	d.readyLocked(s)
}

// ensureLanes makes the scheduler aware of lanes that just got a pending
// delivery. A lane already tracked needs nothing: its head advances through
// the store's queue.
func (d *Dispatcher) ensureLanes(keys []laneKey) {
	if len(keys) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.loaded {
		return // Run's load will find them in the store
	}
	err := d.db.View(func(tx *bbolt.Tx) error {
		for _, k := range keys {
			s := d.subs[k.sub]
			if s == nil {
				sub, err := getSub(tx, k.sub)
				if err != nil {
					return err
				}
				if sub == nil {
					continue
				}
				s = &subState{id: k.sub, active: sub.pb.GetStatus() == integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_ACTIVE, failing: sub.pb.GetConsecutiveFailures() > 0, lanes: map[string]*lane{}}
				d.subs[k.sub] = s
			}
			if s.lanes[k.lane] != nil {
				continue
			}
			if head := laneHead(tx, k.sub, k.lane); head != "" {
				if err := d.addLaneLocked(tx, s, k.lane, head); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		d.log.Error("webhook scheduler could not read the store", "err", err)
	}
	d.signal()
}

// syncSub refreshes a subscription's state after it changed in the store.
// Re-activation makes every waiting lane due now.
func (d *Dispatcher) syncSub(id string, reactivated bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.loaded {
		return
	}
	defer d.signal()
	err := d.db.View(func(tx *bbolt.Tx) error {
		sub, err := getSub(tx, id)
		if err != nil {
			return err
		}
		s := d.subs[id]
		if sub == nil {
			if s != nil {
				d.dropSubLocked(s)
			}
			return nil
		}
		if s == nil {
			s = &subState{id: id, lanes: map[string]*lane{}}
			d.subs[id] = s
		}
		s.active = sub.pb.GetStatus() == integrationv1.SubscriptionStatus_SUBSCRIPTION_STATUS_ACTIVE
		s.failing = sub.pb.GetConsecutiveFailures() > 0
		if reactivated {
			now := time.Now()
			for _, l := range s.lanes {
				if l.state == laneWaiting && l.due.After(now) {
					l.due = now
					heap.Fix(&d.timers, l.index)
				}
			}
		}
		d.readyLocked(s)
		return nil
	})
	if err != nil {
		d.log.Error("webhook scheduler could not read the store", "subscription", id, "err", err)
	}
}

// headsOf returns the heads of a subscription's lanes that are not being
// attempted.
func (d *Dispatcher) headsOf(id string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.subs[id]
	if s == nil {
		return nil
	}
	var out []string
	for _, l := range s.lanes {
		if l.state != laneRunning {
			out = append(out, l.head)
		}
	}
	return out
}

func (d *Dispatcher) dropSubLocked(s *subState) {
	for _, l := range s.lanes {
		if l.state == laneWaiting {
			heap.Remove(&d.timers, l.index)
		}
	}
	s.lanes = map[string]*lane{}
	s.ready = nil
	delete(d.subs, s.id)
}

// laneHeap orders waiting lanes by due time.
type laneHeap []*lane

func (h laneHeap) Len() int           { return len(h) }
func (h laneHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h laneHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *laneHeap) Push(x any) {
	l := x.(*lane)
	l.index = len(*h)
	*h = append(*h, l)
}
func (h *laneHeap) Pop() any {
	old := *h
	n := len(old)
	l := old[n-1]
	old[n-1] = nil
	l.index = -1
	*h = old[:n-1]
	return l
}
