// Package bustest is the contract every events.Bus implementation meets,
// written once as a test suite and run against each implementation (the
// in-process LocalBus, the NATS JetStream bus), so that code written against
// events.Bus behaves the same whichever bus the process was started with.
//
// The suite checks what consumers rely on: type filters (exact names and
// prefixes ending in "*"), at-least-once redelivery when a handler fails,
// per-subject order, independent named consumers, durable resumption (for
// durable buses), that Stop and Close end delivery, and that they leave no
// goroutine behind; and for batch consumers (SubscribeBatch) that batches
// keep publish order within and across them, are bounded by the batch
// size, never wait to fill up, are delivered again whole after an error,
// and resume on a durable bus.
package bustest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/ids"
)

// NewBus returns a bus for one subtest. The suite closes it (Close must be
// safe to call twice). Buses made for different subtests must not share
// events or consumers. A durable bus made twice for the same t must share its
// storage, the way a restarted process finds its stream again.
type NewBus func(t *testing.T) events.Bus

// Option adjusts the suite to what an implementation promises.
type Option func(*config)

type config struct {
	durable bool
	wait    time.Duration
}

// Durable declares that the bus keeps consumers beyond their subscriptions
// and processes, and adds the tests that check it.
func Durable() Option { return func(c *config) { c.durable = true } }

// Timeout sets how long the suite waits for a delivery before failing
// (default 15s); a remote server on a slow link may need longer.
func Timeout(d time.Duration) Option { return func(c *config) { c.wait = d } }

// Run runs the contract suite against the buses newBus makes. The subtests
// run one after another: the goroutine leak check needs a quiet process.
//
// Redelivery tests wait for the bus's retry delay a few times, so an
// implementation with a configurable delay should set it short for the run.
func Run(t *testing.T, newBus NewBus, opts ...Option) {
	c := &config{wait: 15 * time.Second}
	for _, o := range opts {
		o(c)
	}
	s := &suite{cfg: c, newBus: func(t *testing.T) events.Bus {
		t.Helper()
		b := newBus(t)
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return b
	}}
	t.Run("type filters select exact names and prefixes", s.typeFilters)
	t.Run("a failed handler gets the event again before later events", s.redelivery)
	t.Run("events of one subject arrive in publish order", s.subjectOrder)
	t.Run("every named consumer gets every event", s.namedConsumers)
	t.Run("a name is subscribed at most once", s.duplicateName)
	t.Run("Stop ends delivery and cancels a running handler", s.stop)
	t.Run("Close ends delivery and refuses further use", s.close)
	t.Run("a lone event is delivered without waiting for a batch to fill", s.batchLone)
	t.Run("batches keep publish order and their size, and come again whole after an error", s.batchOrder)
	t.Run("a batch consumer and an event consumer of one bus get the same events", s.batchFilters)
	if c.durable {
		t.Run("a durable consumer resumes where it stopped", s.durableResume)
		t.Run("a durable batch consumer resumes where it stopped, a stopped batch first", s.durableBatchResume)
	}
	t.Run("Stop and Close leave no goroutine behind", s.noLeaks)
}

type suite struct {
	cfg    *config
	newBus NewBus
}

// Event types of the suite. They are valid proto full names, as real event
// types are, so a bus may map them onto its own routing keys.
const (
	typeOrderAccepted  = "bustest.v1.OrderAccepted"
	typeOrderHeld      = "bustest.v1.OrderHeld"
	typeOrderHeldAgain = "bustest.v1.OrderHeldAgain"
	typeInvoicePosted  = "bustest.v1.InvoicePosted"
	typeOrderReleased  = "bustest.v1.OrderReleased"
	typePing           = "bustest.v2.Ping"
	typeOther          = "bustest.v3.Other"
	typeEnd            = "bustest.End"
)

// newEvent returns an envelope as the relay would publish it.
func newEvent(typ, subject string, seq uint64) *eventsv1.Envelope {
	return &eventsv1.Envelope{
		Id:          ids.New("evt"),
		Source:      "/millrace/bustest",
		Type:        typ,
		Subject:     subject,
		Time:        timestamppb.Now(),
		SpecVersion: events.SpecVersion,
		Sequence:    seq,
	}
}

func (s *suite) publish(t *testing.T, b events.Bus, envs ...*eventsv1.Envelope) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.wait)
	defer cancel()
	for _, env := range envs {
		if err := b.Publish(ctx, env); err != nil {
			t.Fatalf("Publish %s: %v", env.GetType(), err)
		}
	}
}

func subscribe(t *testing.T, b events.Bus, name string, filters []string, h events.Handler) events.Subscription {
	t.Helper()
	sub, err := b.Subscribe(name, filters, h)
	if err != nil {
		t.Fatalf("Subscribe %q: %v", name, err)
	}
	return sub
}

func subscribeBatch(t *testing.T, b events.Bus, name string, filters []string, size int, h events.BatchHandler) events.Subscription {
	t.Helper()
	sub, err := b.SubscribeBatch(name, filters, size, h)
	if err != nil {
		t.Fatalf("SubscribeBatch %q: %v", name, err)
	}
	return sub
}

// recorder is a handler that keeps every delivery, duplicates included.
type recorder struct {
	mu  sync.Mutex
	got []*eventsv1.Envelope
}

func (r *recorder) handle(_ context.Context, env *eventsv1.Envelope) error {
	r.mu.Lock()
	r.got = append(r.got, env)
	r.mu.Unlock()
	return nil
}

func (r *recorder) all() []*eventsv1.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// firsts returns the first delivery of each event, in delivery order: what a
// consumer that de-duplicates by id applies.
func (r *recorder) firsts() []*eventsv1.Envelope {
	seen := map[string]bool{}
	var out []*eventsv1.Envelope
	for _, env := range r.all() {
		if !seen[env.GetId()] {
			seen[env.GetId()] = true
			out = append(out, env)
		}
	}
	return out
}

func (r *recorder) has(id string) bool {
	return slices.ContainsFunc(r.all(), func(e *eventsv1.Envelope) bool { return e.GetId() == id })
}

// batchRecorder is a batch handler that keeps every delivery, duplicates
// included, and the size of every batch.
type batchRecorder struct {
	recorder
	sizes []int
}

func (r *batchRecorder) handleBatch(_ context.Context, envs []*eventsv1.Envelope) error {
	r.mu.Lock()
	r.sizes = append(r.sizes, len(envs))
	r.got = append(r.got, envs...)
	r.mu.Unlock()
	return nil
}

func (r *batchRecorder) batchSizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sizes)
}

// waitFor waits until the recorder has every event in envs.
func (s *suite) waitFor(t *testing.T, r *recorder, what string, envs ...*eventsv1.Envelope) {
	t.Helper()
	s.eventually(t, what, func() bool {
		for _, env := range envs {
			if !r.has(env.GetId()) {
				return false
			}
		}
		return true
	})
}

func (s *suite) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(s.cfg.wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", s.cfg.wait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func idsOf(envs []*eventsv1.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.GetId()
	}
	return out
}

func typesOf(envs []*eventsv1.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.GetType()
	}
	return out
}

func (s *suite) typeFilters(t *testing.T) {
	b := s.newBus(t)
	all := []string{typeOrderAccepted, typeOrderHeld, typeOrderHeldAgain, typeInvoicePosted, typePing, typeOther, typeEnd}
	tests := []struct {
		name    string
		filters []string
		want    []string
	}{
		{"no-filter", nil, all},
		{"star", []string{"*"}, all},
		{"exact", []string{typeOrderHeld, typeEnd}, []string{typeOrderHeld, typeEnd}},
		{"prefix-within-a-word", []string{"bustest.v1.Order*", typeEnd}, []string{typeOrderAccepted, typeOrderHeld, typeOrderHeldAgain, typeEnd}},
		{"prefix-of-whole-words", []string{"bustest.v2.*", typeEnd}, []string{typePing, typeEnd}},
		{"several", []string{typeInvoicePosted, "bustest.v2.*", typeEnd}, []string{typeInvoicePosted, typePing, typeEnd}},
		{"overlapping", []string{"bustest.v1.*", typeOrderHeld, "bustest.v1.OrderHeld*", typeEnd}, []string{typeOrderAccepted, typeOrderHeld, typeOrderHeldAgain, typeInvoicePosted, typeEnd}},
	}
	recs := make([]*recorder, len(tests))
	for i, tt := range tests {
		recs[i] = &recorder{}
		subscribe(t, b, tt.name, tt.filters, recs[i].handle)
	}
	var published []*eventsv1.Envelope
	for i, typ := range all {
		published = append(published, newEvent(typ, "orders/filters", uint64(i+1)))
	}
	s.publish(t, b, published...)
	end := published[len(published)-1]
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The end marker matches every filter and comes last, so once it
			// is in, anything else the consumer was going to get is in too.
			s.waitFor(t, recs[i], "the end marker", end)
			if got := typesOf(recs[i].firsts()); !slices.Equal(got, tt.want) {
				t.Errorf("filters %q delivered %q, want %q", tt.filters, got, tt.want)
			}
		})
	}
}

func (s *suite) redelivery(t *testing.T) {
	b := s.newBus(t)
	var (
		mu       sync.Mutex
		attempts []string // event ids in the order the handler saw them
	)
	first, second := newEvent(typeOrderAccepted, "orders/retry", 1), newEvent(typeOrderHeld, "orders/retry", 2)
	failures := 0
	subscribe(t, b, "retrying", nil, func(_ context.Context, env *eventsv1.Envelope) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, env.GetId())
		if env.GetId() == first.GetId() && failures < 2 {
			failures++
			return errors.New("downstream unavailable")
		}
		return nil
	})
	s.publish(t, b, first, second)
	s.eventually(t, "the second event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(attempts, second.GetId())
	})
	mu.Lock()
	defer mu.Unlock()
	want := []string{first.GetId(), first.GetId(), first.GetId(), second.GetId()}
	if got := attempts[:min(len(attempts), 4)]; !slices.Equal(got, want) {
		t.Errorf("handler attempts = %q, want the first event three times (two failures, one success) and then the second: %q", attempts, want)
	}
}

func (s *suite) subjectOrder(t *testing.T) {
	b := s.newBus(t)
	const perSubject, subjects = 50, 4
	var attempts atomic.Int64
	rec := &recorder{}
	subscribe(t, b, "ordered", nil, func(ctx context.Context, env *eventsv1.Envelope) error {
		// An occasional failure puts redelivery in the middle of the stream:
		// order must hold across it.
		if attempts.Add(1)%37 == 0 {
			return errors.New("transient failure")
		}
		return rec.handle(ctx, env)
	})
	seq := map[string]uint64{}
	var published []*eventsv1.Envelope
	for i := range perSubject * subjects {
		subj := fmt.Sprintf("orders/ord-%d", i%subjects)
		seq[subj]++
		published = append(published, newEvent(typeOrderAccepted, subj, seq[subj]))
	}
	s.publish(t, b, published...)
	s.waitFor(t, rec, "every event", published...)
	last := map[string]uint64{}
	for _, env := range rec.firsts() {
		if env.GetSequence() != last[env.GetSubject()]+1 {
			t.Fatalf("%s: got sequence %d after %d", env.GetSubject(), env.GetSequence(), last[env.GetSubject()])
		}
		last[env.GetSubject()] = env.GetSequence()
	}
}

func (s *suite) namedConsumers(t *testing.T) {
	b := s.newBus(t)
	names := []string{"webhooks", "feed", "analytics"}
	recs := map[string]*recorder{}
	for _, n := range names {
		recs[n] = &recorder{}
		subscribe(t, b, n, nil, recs[n].handle)
	}
	// A consumer that fails on everything must not hold the others back.
	var stuckCalls atomic.Int64
	stuck := subscribe(t, b, "stuck", nil, func(context.Context, *eventsv1.Envelope) error {
		stuckCalls.Add(1)
		return errors.New("receiver down")
	})
	defer stuck.Stop()
	var published []*eventsv1.Envelope
	for i := range 20 {
		published = append(published, newEvent(typeInvoicePosted, fmt.Sprintf("invoices/inv-%d", i), 1))
	}
	s.publish(t, b, published...)
	for _, n := range names {
		s.waitFor(t, recs[n], "every event at consumer "+n, published...)
		if got, want := idsOf(recs[n].firsts()), idsOf(published); !slices.Equal(got, want) {
			t.Errorf("consumer %s got %d events in another order than published", n, len(got))
		}
	}
	if stuckCalls.Load() == 0 {
		t.Error("the failing consumer was never called")
	}
}

func (s *suite) duplicateName(t *testing.T) {
	b := s.newBus(t)
	rec := &recorder{}
	sub := subscribe(t, b, "once", nil, rec.handle)
	if _, err := b.Subscribe("once", nil, rec.handle); !errors.Is(err, events.ErrConsumerExists) {
		t.Fatalf("second Subscribe under one name: err = %v, want ErrConsumerExists", err)
	}
	sub.Stop()
	sub = subscribe(t, b, "once", nil, rec.handle)
	defer sub.Stop()
	e := newEvent(typePing, "pings/1", 1)
	s.publish(t, b, e)
	s.waitFor(t, rec, "an event after subscribing the name again", e)
}

func (s *suite) stop(t *testing.T) {
	b := s.newBus(t)
	var stopped atomic.Bool
	rec := &recorder{}
	sub := subscribe(t, b, "stopping", nil, func(ctx context.Context, env *eventsv1.Envelope) error {
		if stopped.Load() {
			t.Errorf("handler called with %s after Stop returned", env.GetType())
		}
		return rec.handle(ctx, env)
	})
	e1 := newEvent(typePing, "pings/1", 1)
	s.publish(t, b, e1)
	s.waitFor(t, rec, "an event before Stop", e1)
	sub.Stop()
	stopped.Store(true)
	s.publish(t, b, newEvent(typePing, "pings/1", 2))

	// A handler blocked on its context must be let go by Stop.
	started := make(chan struct{})
	var once sync.Once
	blocked := subscribe(t, b, "blocked", nil, func(ctx context.Context, _ *eventsv1.Envelope) error {
		once.Do(func() { close(started) })
		<-ctx.Done()
		return ctx.Err()
	})
	s.publish(t, b, newEvent(typePing, "pings/2", 1))
	select {
	case <-started:
	case <-time.After(s.cfg.wait):
		t.Fatal("the blocking handler never started")
	}
	done := make(chan struct{})
	go func() { blocked.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.wait):
		t.Fatal("Stop did not return while a handler waited on its context")
	}
	time.Sleep(100 * time.Millisecond) // room for a stray late delivery to show
}

func (s *suite) close(t *testing.T) {
	b := s.newBus(t)
	var closed atomic.Bool
	rec := &recorder{}
	for _, name := range []string{"first", "second"} {
		subscribe(t, b, name, nil, func(ctx context.Context, env *eventsv1.Envelope) error {
			if closed.Load() {
				t.Errorf("consumer %s called after Close returned", name)
			}
			return rec.handle(ctx, env)
		})
	}
	e := newEvent(typePing, "pings/1", 1)
	s.publish(t, b, e)
	s.waitFor(t, rec, "an event before Close", e)
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed.Store(true)
	if err := b.Publish(context.Background(), newEvent(typePing, "pings/1", 2)); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Publish after Close: err = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe("third", nil, rec.handle); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Subscribe after Close: err = %v, want ErrClosed", err)
	}
	time.Sleep(100 * time.Millisecond)
}

func (s *suite) durableResume(t *testing.T) {
	b := s.newBus(t)
	rec := &recorder{}
	sub := subscribe(t, b, "resuming", nil, rec.handle)
	e1 := newEvent(typeOrderAccepted, "orders/durable", 1)
	s.publish(t, b, e1)
	s.waitFor(t, rec, "the event before Stop", e1)
	sub.Stop()

	// Events published while the consumer is away wait for it.
	e2, e3 := newEvent(typeOrderHeld, "orders/durable", 2), newEvent(typeOrderReleased, "orders/durable", 3)
	s.publish(t, b, e2, e3)
	sub = subscribe(t, b, "resuming", nil, rec.handle)
	s.waitFor(t, rec, "the events published while stopped", e2, e3)
	sub.Stop()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// A new process finds the consumer where the old one left it.
	b2 := s.newBus(t)
	e4 := newEvent(typeOrderAccepted, "orders/durable", 4)
	s.publish(t, b2, e4)
	sub = subscribe(t, b2, "resuming", nil, rec.handle)
	defer sub.Stop()
	s.waitFor(t, rec, "the event published before the new process subscribed", e4)
	want := idsOf([]*eventsv1.Envelope{e1, e2, e3, e4})
	if got := idsOf(rec.all()); !slices.Equal(got, want) {
		t.Errorf("deliveries = %q, want each event once in order %q: a resumed consumer starts after what it handled", got, want)
	}
}

func (s *suite) batchLone(t *testing.T) {
	b := s.newBus(t)
	rec := &batchRecorder{}
	sub := subscribeBatch(t, b, "lone", nil, 0, rec.handleBatch)
	defer sub.Stop()
	for i := range 3 {
		e := newEvent(typePing, "pings/lone", uint64(i+1))
		s.publish(t, b, e)
		// Nothing follows it: a bus that waited for a batch to fill would
		// never deliver it.
		s.waitFor(t, &rec.recorder, fmt.Sprintf("lone event %d", i+1), e)
	}
	if got := rec.batchSizes(); !slices.Equal(got, []int{1, 1, 1}) {
		t.Errorf("batch sizes = %v, want three batches of one", got)
	}
}

func (s *suite) batchOrder(t *testing.T) {
	b := s.newBus(t)
	const size, perSubject, subjects = 4, 10, 2
	var (
		mu      sync.Mutex
		calls   [][]string // event ids of each call, failed ones included
		failed  []bool
		applied []string // what the consumer committed, de-duplicated by id
		seen    = map[string]bool{}
		out     atomic.Bool // every event published
	)
	subscribeBatch(t, b, "batched", nil, size, func(_ context.Context, envs []*eventsv1.Envelope) error {
		mu.Lock()
		defer mu.Unlock()
		ids := idsOf(envs)
		calls = append(calls, ids)
		// The first call, and every call until all events are out, commits
		// the first half of its batch and then fails: a backlog builds
		// behind the failing batch, and what it committed comes again.
		fail := len(calls) == 1 || !out.Load()
		failed = append(failed, fail)
		n := len(ids)
		if fail {
			n /= 2
		}
		for _, id := range ids[:n] {
			if !seen[id] {
				seen[id] = true
				applied = append(applied, id)
			}
		}
		if fail {
			return errors.New("downstream unavailable")
		}
		return nil
	})
	seq := map[string]uint64{}
	var published []*eventsv1.Envelope
	for i := range perSubject * subjects {
		subj := fmt.Sprintf("orders/batch-%d", i%subjects)
		seq[subj]++
		published = append(published, newEvent(typeOrderAccepted, subj, seq[subj]))
	}
	s.publish(t, b, published...)
	out.Store(true)
	s.eventually(t, "every event committed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(applied) == len(published)
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(applied, idsOf(published)) {
		t.Errorf("the consumer committed the events in another order than published:\n got %q\nwant %q", applied, idsOf(published))
	}
	var handled []string
	sawFailure, sawBatch := false, false
	for i, ids := range calls {
		if len(ids) == 0 || len(ids) > size {
			t.Errorf("call %d got a batch of %d events, want 1 to %d", i, len(ids), size)
		}
		if failed[i] {
			sawFailure = true
			if next := calls[min(i+1, len(calls)-1)]; i+1 == len(calls) || len(next) < len(ids) || !slices.Equal(next[:len(ids)], ids) {
				t.Errorf("after the failed batch %q the handler got %q, want the failed batch again, whole and first", ids, next)
			}
			continue
		}
		sawBatch = sawBatch || len(ids) > 1
		handled = append(handled, ids...)
	}
	if !slices.Equal(handled, idsOf(published)) {
		t.Errorf("the batches handled without error carried %q, want each event once in publish order %q", handled, idsOf(published))
	}
	if !sawFailure {
		t.Error("the handler never failed; the test did not test redelivery")
	}
	if !sawBatch {
		t.Errorf("no batch held more than one event, though a backlog built while the consumer failed (calls: %q)", calls)
	}
}

func (s *suite) batchFilters(t *testing.T) {
	b := s.newBus(t)
	filters := []string{"bustest.v1.Order*", typeEnd}
	each, batched := &recorder{}, &batchRecorder{}
	subscribe(t, b, "each", filters, each.handle)
	subscribeBatch(t, b, "batched", filters, 3, func(ctx context.Context, envs []*eventsv1.Envelope) error {
		if len(envs) == 0 {
			t.Error("the batch handler got an empty batch")
		}
		return batched.handleBatch(ctx, envs)
	})
	var published []*eventsv1.Envelope
	for i, typ := range []string{typeOrderAccepted, typeInvoicePosted, typePing, typeOrderHeld, typeOther, typeOther, typeOrderHeldAgain, typeInvoicePosted, typeEnd} {
		published = append(published, newEvent(typ, "orders/batch-filters", uint64(i+1)))
	}
	s.publish(t, b, published...)
	end := published[len(published)-1]
	s.waitFor(t, each, "the end marker at the event consumer", end)
	s.waitFor(t, &batched.recorder, "the end marker at the batch consumer", end)
	want := []string{typeOrderAccepted, typeOrderHeld, typeOrderHeldAgain, typeEnd}
	if got := typesOf(each.firsts()); !slices.Equal(got, want) {
		t.Errorf("event consumer got %q, want %q", got, want)
	}
	if got := typesOf(batched.firsts()); !slices.Equal(got, want) {
		t.Errorf("batch consumer got %q, want %q", got, want)
	}
}

func (s *suite) durableBatchResume(t *testing.T) {
	const size = 3
	b := s.newBus(t)
	rec := &batchRecorder{}
	var e []*eventsv1.Envelope
	for i := range 12 {
		e = append(e, newEvent(typeOrderAccepted, "orders/durable-batch", uint64(i+1)))
	}
	// An event consumer first: a durable consumer may change how it takes
	// its events from one subscription to the next.
	sub := subscribe(t, b, "resuming-batches", nil, rec.handle)
	s.publish(t, b, e[0])
	s.waitFor(t, &rec.recorder, "the event before Stop", e[0])
	sub.Stop()

	// Events published while it is away wait for it and come in batches.
	s.publish(t, b, e[1:6]...)
	sub = subscribeBatch(t, b, "resuming-batches", nil, size, rec.handleBatch)
	s.waitFor(t, &rec.recorder, "the events published while stopped", e[1:6]...)
	sub.Stop()

	// A batch that Stop takes from its handler goes first to the next
	// subscription, ahead of later events.
	s.publish(t, b, e[6:9]...)
	held := make(chan []string, 1)
	sub = subscribeBatch(t, b, "resuming-batches", nil, size, func(ctx context.Context, envs []*eventsv1.Envelope) error {
		select {
		case held <- idsOf(envs):
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	})
	select {
	case ids := <-held:
		if want := idsOf(e[6:9]); len(ids) == 0 || !slices.Equal(ids, want[:min(len(ids), len(want))]) {
			t.Errorf("the first batch after resuming was %q, want it to start the events not yet handled %q", ids, want)
		}
	case <-time.After(s.cfg.wait):
		t.Fatal("the blocking handler never got a batch")
	}
	sub.Stop()
	s.publish(t, b, e[9])
	sub = subscribeBatch(t, b, "resuming-batches", nil, size, rec.handleBatch)
	s.waitFor(t, &rec.recorder, "the interrupted batch and the event after it", e[6:10]...)
	sub.Stop()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// A new process finds the consumer where the old one left it.
	b2 := s.newBus(t)
	s.publish(t, b2, e[10:]...)
	sub = subscribeBatch(t, b2, "resuming-batches", nil, size, rec.handleBatch)
	defer sub.Stop()
	s.waitFor(t, &rec.recorder, "the events published before the new process subscribed", e[10:]...)
	if got, want := idsOf(rec.all()), idsOf(e); !slices.Equal(got, want) {
		t.Errorf("deliveries = %q, want each event once in order %q: a resumed consumer starts after what it handled", got, want)
	}
	for _, n := range rec.batchSizes() {
		if n > size {
			t.Errorf("batch sizes %v: want none above %d", rec.batchSizes(), size)
			break
		}
	}
}

func (s *suite) noLeaks(t *testing.T) {
	b := s.newBus(t)
	rec := &recorder{}
	// Warm up first: a durable bus creates its consumer and connection-wide
	// machinery once, and those outlive a subscription by design.
	sub := subscribe(t, b, "leak-check", nil, rec.handle)
	e1 := newEvent(typePing, "pings/leak", 1)
	s.publish(t, b, e1)
	s.waitFor(t, rec, "the warm-up event", e1)
	sub.Stop()
	before := goleak.IgnoreCurrent()

	sub = subscribe(t, b, "leak-check", nil, rec.handle)
	e2 := newEvent(typePing, "pings/leak", 2)
	s.publish(t, b, e2)
	s.waitFor(t, rec, "an event after Stop and Subscribe", e2)
	sub.Stop()

	brec := &batchRecorder{}
	sub = subscribeBatch(t, b, "leak-check", nil, 0, brec.handleBatch)
	e3 := newEvent(typePing, "pings/leak", 3)
	s.publish(t, b, e3)
	s.waitFor(t, &brec.recorder, "an event after SubscribeBatch", e3)
	sub.Stop()

	// Close must also stop a subscription nobody stopped.
	subscribe(t, b, "leak-check", nil, rec.handle)
	e4 := newEvent(typePing, "pings/leak", 4)
	s.publish(t, b, e4)
	s.waitFor(t, rec, "an event before Close", e4)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}
