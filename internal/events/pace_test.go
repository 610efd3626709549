package events_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/events"
)

// pacedCall is one call of a paced handler: when it began and what it got.
type pacedCall struct {
	at  time.Time
	ids []string
}

// recorder is a BatchHandler that records its calls.
type recorder struct {
	mu    sync.Mutex
	calls []pacedCall
	fail  int // calls to fail before succeeding
	seen  chan struct{}
}

func newRecorder() *recorder { return &recorder{seen: make(chan struct{}, 1000)} }

func (r *recorder) handle(_ context.Context, envs []*eventsv1.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return errors.New("disk full")
	}
	c := pacedCall{at: time.Now()}
	for _, e := range envs {
		c.ids = append(c.ids, e.GetId())
	}
	r.calls = append(r.calls, c)
	for range envs {
		r.seen <- struct{}{}
	}
	return nil
}

func (r *recorder) snapshot() []pacedCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pacedCall(nil), r.calls...)
}

// waitFor waits until n events were handled, failing the test after limit.
func (r *recorder) waitFor(t *testing.T, n int, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for i := 0; i < n; i++ {
		select {
		case <-r.seen:
		case <-deadline:
			t.Fatalf("%d of %d events handled after %s", i, n, limit)
		}
	}
}

func publish(t *testing.T, b events.Bus, id string) {
	t.Helper()
	if err := b.Publish(context.Background(), &eventsv1.Envelope{Id: id, Type: "millrace.events.v1.OrderAccepted"}); err != nil {
		t.Fatal(err)
	}
}

func TestPacedSpacesShortBatchesAndLosesNothing(t *testing.T) {
	const interval = 80 * time.Millisecond
	b := events.NewLocalBus()
	defer b.Close()
	r := newRecorder()
	sub, err := b.SubscribeBatch("feed", nil, 0, events.Paced(r.handle, interval, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()

	// A steady trickle: without pacing nearly every event would be a call.
	const n = 60
	began := time.Now()
	for i := range n {
		publish(t, b, fmt.Sprintf("ev-%03d", i))
		time.Sleep(5 * time.Millisecond)
	}
	r.waitFor(t, n, 10*time.Second)
	took := time.Since(began)

	calls := r.snapshot()
	var got []string
	for i, c := range calls {
		got = append(got, c.ids...)
		if i > 0 {
			// Every batch here is short, so each call waits out the
			// interval of the one before it.
			if gap := c.at.Sub(calls[i-1].at); gap < interval-time.Millisecond {
				t.Errorf("call %d began %s after call %d, want at least %s", i, gap, i-1, interval)
			}
		}
	}
	if len(got) != n {
		t.Fatalf("handled %d events, want %d", len(got), n)
	}
	for i, id := range got {
		if want := fmt.Sprintf("ev-%03d", i); id != want {
			t.Fatalf("event %d is %s, want %s (order lost)", i, id, want)
		}
	}
	// 60 events over ~300 ms (more on a slow machine) arrive in a handful
	// of batches: at most one per interval, plus the first.
	if most := int(took/interval) + 2; len(calls) > most || len(calls) >= n/2 {
		t.Errorf("%d calls for %d events in %s: not paced (at most %d)", len(calls), n, took, most)
	}
}

func TestPacedDoesNotWaitAfterFullBatchOrFailure(t *testing.T) {
	// An hour-long interval: any wait where none belongs hangs the test
	// until its deadline.
	const interval = time.Hour
	b := events.NewLocalBus()
	defer b.Close()
	r := newRecorder()
	r.mu.Lock() // hold the first call until a backlog has built up
	r.fail = 1  // and fail it once: the retry must not be paced
	const size = 4
	sub, err := b.SubscribeBatch("feed", nil, size, events.Paced(r.handle, interval, size))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Stop()

	const n = 4 * size
	for i := range n {
		publish(t, b, fmt.Sprintf("ev-%03d", i))
	}
	r.mu.Unlock()
	r.waitFor(t, n, 10*time.Second)
	for i, c := range r.snapshot() {
		if len(c.ids) != size {
			t.Errorf("call %d got %d events, want a full batch of %d", i, len(c.ids), size)
		}
	}
}

func TestPacedHandlesALoneEventAtOnceAndStopsWhileWaiting(t *testing.T) {
	const interval = time.Hour
	b := events.NewLocalBus()
	defer b.Close()
	r := newRecorder()
	sub, err := b.SubscribeBatch("feed", nil, 0, events.Paced(r.handle, interval, 0))
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "ev-1")
	r.waitFor(t, 1, 10*time.Second) // not an hour: nothing came before it
	publish(t, b, "ev-2")           // waits out the interval

	stopped := make(chan struct{})
	go func() { sub.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end the paced wait")
	}
	if calls := r.snapshot(); len(calls) != 1 {
		t.Errorf("%d calls, want 1: the second event came within the interval", len(calls))
	}
}
