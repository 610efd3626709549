// Package bustest is the contract every events.Bus implementation meets,
// written once as a test suite and run against each implementation (the
// in-process LocalBus, the NATS JetStream bus), so that code written against
// events.Bus behaves the same whichever bus the process was started with.
//
// The suite checks what consumers rely on: type filters (exact names and
// prefixes ending in "*"), at-least-once redelivery when a handler fails,
// per-subject order, independent named consumers, durable resumption (for
// durable buses), that Stop and Close end delivery, and that they leave no
// goroutine behind.
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
	if c.durable {
		t.Run("a durable consumer resumes where it stopped", s.durableResume)
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

	// Close must also stop a subscription nobody stopped.
	subscribe(t, b, "leak-check", nil, rec.handle)
	e3 := newEvent(typePing, "pings/leak", 3)
	s.publish(t, b, e3)
	s.waitFor(t, rec, "an event before Close", e3)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}
