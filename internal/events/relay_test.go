package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/storage"
)

var discard = slog.New(slog.DiscardHandler)

func openStore(t *testing.T) *storage.DB {
	t.Helper()
	db, err := storage.Open(filepath.Join(t.TempDir(), "order.db"), storage.Schema{Name: "order", Version: 1}, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// appendEvents commits n events about subject in one transaction and
// returns them.
func appendEvents(t *testing.T, db *storage.DB, subject string, n int) []*eventsv1.Envelope {
	var out []*eventsv1.Envelope
	err := db.Batch(func(tx *bbolt.Tx) error {
		out = out[:0] // Batch may run fn again
		for range n {
			env, err := events.Append(context.Background(), tx, events.Draft{
				Service: "order",
				Subject: subject,
				Data:    &eventsv1.OrderStatusChanged{OrderId: subject},
			})
			if err != nil {
				return err
			}
			out = append(out, env)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	return out
}

// flakyBus fails some publishes: every failEvery-th before the event reaches
// the bus, every loseAckEvery-th after, as when the bus took the event but
// its acknowledgement was lost. The second kind is what a crash between
// publish and marking published looks like to the outbox.
type flakyBus struct {
	events.Bus
	failEvery, loseAckEvery int64
	n, failed, lostAcks     atomic.Int64
}

func (f *flakyBus) Publish(ctx context.Context, env *eventsv1.Envelope) error {
	n := f.n.Add(1)
	if n%f.failEvery == 0 {
		f.failed.Add(1)
		return errors.New("bus unavailable")
	}
	if err := f.Bus.Publish(ctx, env); err != nil {
		return err
	}
	if n%f.loseAckEvery == 0 {
		f.lostAcks.Add(1)
		return errors.New("acknowledgement lost")
	}
	return nil
}

// receiver applies events as a consumer does: it de-duplicates by id and
// checks that each subject's events arrive gap-free in sequence order.
type receiver struct {
	mu       sync.Mutex
	seen     map[string]bool
	last     map[string]uint64
	dups     int
	problems []string
}

func (r *receiver) handle(_ context.Context, env *eventsv1.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	subj, seq := env.GetSubject(), env.GetSequence()
	if r.seen[env.GetId()] {
		r.dups++
		if seq > r.last[subj] {
			r.problems = append(r.problems, fmt.Sprintf("%s: duplicate of sequence %d arrived before it was applied (last %d)", subj, seq, r.last[subj]))
		}
		return nil
	}
	if seq != r.last[subj]+1 {
		r.problems = append(r.problems, fmt.Sprintf("%s: sequence %d arrived after %d", subj, seq, r.last[subj]))
	}
	r.seen[env.GetId()] = true
	r.last[subj] = max(r.last[subj], seq)
	return nil
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func TestRelaySurvivesFailuresAndCrash(t *testing.T) {
	db := openStore(t)
	bus := events.NewLocalBus()
	defer bus.Close()
	rcv := &receiver{seen: map[string]bool{}, last: map[string]uint64{}}
	if _, err := bus.Subscribe("receiver", nil, rcv.handle); err != nil {
		t.Fatal(err)
	}
	flaky := &flakyBus{Bus: bus, failEvery: 7, loseAckEvery: 11}

	var runs sync.WaitGroup
	startRelay := func(ctx context.Context) {
		r := events.NewRelay(db, flaky, discard,
			events.WithBatchSize(16), events.WithIdlePoll(2*time.Millisecond), events.WithBackoff(time.Millisecond, 5*time.Millisecond))
		runs.Go(func() {
			if err := r.Run(ctx); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	ctx1, crash := context.WithCancel(t.Context())
	startRelay(ctx1)

	// Concurrent writers share the aggregates, so each subject's sequence
	// interleaves across writers and group-commit batches.
	const writers, txPerWriter, subjects = 8, 25, 5
	var (
		mu       sync.Mutex
		appended []*eventsv1.Envelope
		writes   sync.WaitGroup
	)
	for w := range writers {
		writes.Go(func() {
			for i := range txPerWriter {
				envs := appendEvents(t, db, fmt.Sprintf("orders/ord-%d", (w+i)%subjects), 1+i%3)
				mu.Lock()
				appended = append(appended, envs...)
				mu.Unlock()
			}
		})
	}

	// Crash the relay mid-way and start a new one on the same store at once,
	// while the old one may still be in the middle of a round.
	deadline := time.Now().Add(20 * time.Second)
	for rcv.count() < 100 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	crash()
	startRelay(t.Context())

	writes.Wait()
	for rcv.count() < len(appended) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ctx2Done := make(chan struct{})
	go func() { runs.Wait(); close(ctx2Done) }()

	rcv.mu.Lock()
	for _, env := range appended {
		if !rcv.seen[env.GetId()] {
			t.Errorf("event %s (%s #%d) never arrived", env.GetId(), env.GetSubject(), env.GetSequence())
		}
	}
	for _, p := range rcv.problems {
		t.Error(p)
	}
	t.Logf("%d events, %d duplicates; bus refused %d publishes and lost %d acknowledgements",
		len(appended), rcv.dups, flaky.failed.Load(), flaky.lostAcks.Load())
	if flaky.failed.Load() == 0 || flaky.lostAcks.Load() == 0 || rcv.dups == 0 {
		t.Error("the test did not exercise failed publishes and redelivery")
	}
	rcv.mu.Unlock()
	if err := db.View(func(tx *bbolt.Tx) error {
		if n := storage.OutboxLen(tx); n != 0 {
			t.Errorf("outbox still holds %d events", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The test context ends when the test returns; the relays stop then.
	t.Cleanup(func() { <-ctx2Done })
}

func TestRelayReportsOutboxLag(t *testing.T) {
	db := openStore(t)
	appendEvents(t, db, "orders/ord-1", 3)
	down := &switchBus{Bus: events.NewLocalBus()}
	defer down.Close()
	down.down.Store(true)

	var (
		stats    []events.RelayStats
		observed []int
	)
	later := func() time.Time { return time.Now().Add(time.Minute) }
	r := events.NewRelay(db, down, discard, events.WithBatchSize(2), events.WithClock(later),
		events.WithStats(func(s events.RelayStats) { stats = append(stats, s) }),
		events.WithObserver(func(n int, lag time.Duration) { observed = append(observed, n) }))

	flush := func() events.RelayStats {
		t.Helper()
		_, _ = r.Flush(t.Context())
		return stats[len(stats)-1]
	}
	tests := []struct {
		name          string
		down          bool
		wantPublished int
		wantPending   int
		wantErr       bool
		wantLag       bool
	}{
		{"bus down: the backlog and its age show", true, 0, 3, true, true},
		{"bus back: one batch goes out", false, 2, 1, false, true},
		{"the rest goes out", false, 1, 0, false, false},
		{"idle", false, 0, 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			down.down.Store(tt.down)
			s := flush()
			if s.Store != "order" || s.Published != tt.wantPublished || s.Pending != tt.wantPending || (s.Err != nil) != tt.wantErr {
				t.Errorf("stats = %+v, want published %d, pending %d, error %v", s, tt.wantPublished, tt.wantPending, tt.wantErr)
			}
			if tt.wantLag && s.Lag < time.Minute || !tt.wantLag && s.Lag != 0 {
				t.Errorf("lag = %s, want at least a minute: %v", s.Lag, tt.wantLag)
			}
		})
	}
	if want := []int{2, 1}; fmt.Sprint(observed) != fmt.Sprint(want) {
		t.Errorf("observer saw rounds of %v, want %v", observed, want)
	}
}

func TestRelayStopsBetweenEventsWhenCancelled(t *testing.T) {
	db := openStore(t)
	appendEvents(t, db, "orders/ord-1", 5)
	ctx, cancel := context.WithCancel(t.Context())
	var calls atomic.Int64
	bus := &switchBus{Bus: events.NewLocalBus(), onPublish: func() {
		if calls.Add(1) == 2 {
			cancel()
		}
	}}
	defer bus.Close()
	r := events.NewRelay(db, bus, discard)
	n, err := r.Flush(ctx)
	if n != 2 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Flush = %d, %v; want 2 published and the cancellation", n, err)
	}
	n, err = r.Flush(t.Context())
	if n != 3 || err != nil {
		t.Fatalf("second Flush = %d, %v; want the remaining 3", n, err)
	}
}

// switchBus is a bus that can be taken down, and tells about each publish.
type switchBus struct {
	events.Bus
	down      atomic.Bool
	onPublish func()
}

func (b *switchBus) Publish(ctx context.Context, env *eventsv1.Envelope) error {
	if b.down.Load() {
		return errors.New("bus down")
	}
	if b.onPublish != nil {
		b.onPublish()
	}
	return b.Bus.Publish(ctx, env)
}

// TestRelayHandsABatchPublisherTheRound checks the relay with a bus that
// takes a run of events at once: one call per round, and only the events
// the bus accepted, from the first, leave the outbox.
func TestRelayHandsABatchPublisherTheRound(t *testing.T) {
	db := openStore(t)
	want := appendEvents(t, db, "orders/ord-1", 10)
	bus := &batchBus{Bus: events.NewLocalBus(), accept: []int{3, 10}}
	defer bus.Close()
	var (
		mu  sync.Mutex
		got []string
	)
	if _, err := bus.Subscribe("receiver", nil, func(_ context.Context, env *eventsv1.Envelope) error {
		mu.Lock()
		got = append(got, env.GetId())
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r := events.NewRelay(db, bus, discard, events.WithBatchSize(8))
	if n, err := r.Flush(t.Context()); n != 3 || err == nil {
		t.Fatalf("Flush = %d, %v; want the 3 events the bus accepted and its refusal", n, err)
	}
	if n, err := r.Flush(t.Context()); n != 7 || err != nil {
		t.Fatalf("second Flush = %d, %v; want the remaining 7", n, err)
	}
	if fmt.Sprint(bus.calls) != "[8 7]" {
		t.Errorf("PublishBatch calls of %v events, want one per round: [8 7]", bus.calls)
	}
	var wantIDs []string
	for _, env := range want {
		wantIDs = append(wantIDs, env.GetId())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		done := fmt.Sprint(got) == fmt.Sprint(wantIDs)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %q, want each event once in commit order %q", got, wantIDs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// batchBus is a BatchPublisher that accepts, on its n-th call, the first
// accept[n] events and refuses the rest.
type batchBus struct {
	events.Bus
	accept []int
	calls  []int
}

func (b *batchBus) PublishBatch(ctx context.Context, envs []*eventsv1.Envelope) (int, error) {
	k := b.accept[len(b.calls)]
	b.calls = append(b.calls, len(envs))
	for i, env := range envs {
		if i == k {
			return i, errors.New("bus refused the event")
		}
		if err := b.Bus.Publish(ctx, env); err != nil {
			return i, err
		}
	}
	return len(envs), nil
}
