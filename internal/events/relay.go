package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/storage"
)

// Relay publishes a store's committed outbox events to a bus in commit
// order and marks them published. After a crash it resumes from the first
// unpublished event: an event may be published twice (at least once), never
// skipped or reordered.
//
// Order holds because a round publishes its events strictly in order (one
// after another, or as one run to a bus that is a BatchPublisher) and stops
// at the first failure, so an event is never published while an earlier
// one of the same store is still unpublished. At most one round runs
// per store at a time, even across Relay values: a relay restarted while its
// predecessor's round is still finishing waits for it instead of publishing
// the same events a second time alongside it.
type Relay struct {
	db       *storage.DB
	bus      Bus
	log      *slog.Logger
	batch    int
	idle     time.Duration
	wake     chan struct{}
	now      func() time.Time
	backoff  [2]time.Duration // first and longest pause after a failed round
	observer func(published int, lag time.Duration)
	stats    func(RelayStats)
}

// RelayStats is what a relay reports after every round, for the outbox lag
// metrics of its service.
type RelayStats struct {
	// Store is the name of the store whose outbox the relay drains.
	Store string
	// Published is how many events the round published.
	Published int
	// Pending is how many events still wait in the outbox after the round,
	// -1 when the round could not read the store.
	Pending int
	// Lag is the age of the oldest event still waiting, zero when the
	// outbox is empty. It keeps growing while the bus is down, which is
	// when an operator needs to see it.
	Lag time.Duration
	// Err is why the round stopped early, nil when it did not.
	Err error
}

// RelayOption configures a Relay.
type RelayOption func(*Relay)

// WithBatchSize sets how many events one publish round reads (default 256).
func WithBatchSize(n int) RelayOption {
	return func(r *Relay) {
		if n > 0 {
			r.batch = n
		}
	}
}

// WithIdlePoll sets how often an idle relay looks at the outbox when nobody
// calls Notify (default 250ms).
func WithIdlePoll(d time.Duration) RelayOption {
	return func(r *Relay) {
		if d > 0 {
			r.idle = d
		}
	}
}

// WithObserver registers a function told, after each round that published
// something, how many events were published and how old the oldest of them
// was: the delay between commit and publish.
func WithObserver(fn func(published int, lag time.Duration)) RelayOption {
	return func(r *Relay) { r.observer = fn }
}

// WithStats registers a function told the outcome of every round, idle ones
// included, with the outbox's backlog and lag; it is the hook for the
// per-service outbox lag gauges. It runs on the relay's goroutine, so it
// must be quick.
func WithStats(fn func(RelayStats)) RelayOption {
	return func(r *Relay) { r.stats = fn }
}

// WithBackoff sets the pause after a failed round, doubling from first up
// to longest while failures go on (default 100ms to 5s). Short pauses drain
// a recovered bus sooner; long ones spare a bus that is down.
func WithBackoff(first, longest time.Duration) RelayOption {
	return func(r *Relay) {
		if first > 0 && longest >= first {
			r.backoff = [2]time.Duration{first, longest}
		}
	}
}

// WithClock sets the relay's time source for lag (default time.Now).
func WithClock(now func() time.Time) RelayOption {
	return func(r *Relay) {
		if now != nil {
			r.now = now
		}
	}
}

// NewRelay returns a relay from db's outbox to bus.
func NewRelay(db *storage.DB, bus Bus, log *slog.Logger, opts ...RelayOption) *Relay {
	r := &Relay{db: db, bus: bus, log: log, batch: 256, idle: 250 * time.Millisecond, wake: make(chan struct{}, 1), now: time.Now,
		backoff: [2]time.Duration{100 * time.Millisecond, 5 * time.Second}}
	for _, o := range opts {
		o(r)
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r
}

// Notify tells the relay that a transaction with events has committed, so
// it publishes now instead of at its next poll.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends. Publishing errors are logged and retried
// with backoff; they never drop an event.
func (r *Relay) Run(ctx context.Context) error {
	minBackoff, maxBackoff := r.backoff[0], r.backoff[1]
	backoff := minBackoff
	idle := time.NewTimer(r.idle)
	defer idle.Stop()
	for {
		n, err := r.Flush(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			r.log.Warn("outbox relay could not publish; will retry", "store", r.db.Name(), "err", err, "retry_in", backoff)
			if !sleepCtx(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff = minBackoff
		if n == r.batch {
			continue // more waiting
		}
		idle.Reset(r.idle)
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-idle.C:
		}
	}
}

// Flush publishes one batch of unpublished events, in commit order, and
// reports how many it took out of the outbox. It stops at the first event
// the bus refuses, and between events once ctx ends, so that nothing after
// an unpublished event goes out ahead of it; the published ones are marked
// either way.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	defer lockStore(r.db)()
	var recs []storage.OutboxRecord
	if err := r.db.View(func(tx *bbolt.Tx) error {
		var err error
		recs, err = storage.ReadOutbox(tx, r.batch)
		return err
	}); err != nil {
		err = fmt.Errorf("read outbox of %s: %w", r.db.Name(), err)
		r.report(RelayStats{Pending: -1, Err: err}, nil)
		return 0, err
	}
	if len(recs) == 0 {
		r.report(RelayStats{}, nil)
		return 0, nil
	}
	envs := make([]*eventsv1.Envelope, len(recs)) // nil: not an event
	decoded := make([]*eventsv1.Envelope, 0, len(recs))
	for i, rec := range recs {
		env := &eventsv1.Envelope{}
		if err := storage.UnmarshalProto(rec.Data, env); err != nil {
			// A record that cannot be decoded would block the outbox forever;
			// it is logged with its sequence and skipped.
			r.log.Error("outbox record is not an event envelope; skipping it", "store", r.db.Name(), "seq", rec.Seq, "err", err)
			continue
		}
		envs[i] = env
		decoded = append(decoded, env)
	}
	sent, pubErr := r.publish(ctx, decoded)
	// Out of the outbox go the records before the first event not published.
	removed := make([]uint64, 0, len(recs))
	for i, n := 0, 0; i < len(recs); i++ {
		if envs[i] != nil {
			if n == sent {
				break
			}
			n++
		}
		removed = append(removed, recs[i].Seq)
	}
	pending, head, markErr := r.markPublished(removed)
	if markErr != nil {
		// The events stay in the outbox and go out again: a duplicate, never
		// a loss.
		err := errors.Join(pubErr, markErr)
		r.report(RelayStats{Pending: -1, Err: err}, nil)
		return 0, err
	}
	r.report(RelayStats{Published: sent, Pending: pending, Err: pubErr}, head)
	if r.observer != nil && sent > 0 {
		r.observer(sent, r.now().Sub(decoded[0].GetTime().AsTime()))
	}
	return len(removed), pubErr
}

// publish hands envs to the bus in order and reports how many of them,
// from the first, it took: all, or those before the first one it refused
// or before ctx ended. A bus that takes a run of events at once
// (BatchPublisher) gets them all in one call.
func (r *Relay) publish(ctx context.Context, envs []*eventsv1.Envelope) (int, error) {
	if bp, ok := r.bus.(BatchPublisher); ok && len(envs) > 0 {
		n, err := bp.PublishBatch(ctx, envs)
		if err != nil && n < len(envs) {
			err = fmt.Errorf("publish %s %s: %w", envs[n].GetType(), envs[n].GetId(), err)
		}
		return n, err
	}
	for i, env := range envs {
		if err := ctx.Err(); err != nil {
			return i, err
		}
		if err := r.bus.Publish(ctx, env); err != nil {
			return i, fmt.Errorf("publish %s %s: %w", env.GetType(), env.GetId(), err)
		}
	}
	return len(envs), nil
}

// markPublished removes published records and, in the same transaction,
// reads what is left: the backlog and its oldest record, for the lag. It
// joins the store's group commit: a transaction of its own would hold the
// store's writer for a whole fsync while the service's writers queue.
func (r *Relay) markPublished(seqs []uint64) (pending int, head []byte, err error) {
	peek := func(tx *bbolt.Tx) error {
		pending = storage.OutboxLen(tx)
		recs, err := storage.ReadOutbox(tx, 1)
		if err != nil {
			return err
		}
		if len(recs) == 1 {
			head = recs[0].Data
		}
		return nil
	}
	if len(seqs) == 0 {
		err = r.db.View(peek)
	} else {
		err = r.db.Batch(func(tx *bbolt.Tx) error {
			if err := storage.MarkPublished(tx, seqs...); err != nil {
				return err
			}
			return peek(tx)
		})
	}
	if err != nil {
		return 0, nil, fmt.Errorf("mark published in %s: %w", r.db.Name(), err)
	}
	return pending, head, nil
}

// report hands a round's outcome to the stats hook. head is the encoded
// oldest waiting event, whose commit time gives the lag.
func (r *Relay) report(s RelayStats, head []byte) {
	if r.stats == nil {
		return
	}
	s.Store = r.db.Name()
	if head != nil {
		env := &eventsv1.Envelope{}
		if storage.UnmarshalProto(head, env) == nil && env.GetTime() != nil {
			s.Lag = max(r.now().Sub(env.GetTime().AsTime()), 0)
		}
	}
	r.stats(s)
}

// storeLocks serialises relay rounds per store. A store file belongs to one
// process (bbolt's file lock), so this in-process lock is enough to keep two
// relays of one store, say an old one still finishing its round after a
// restart and its replacement, from racing each other through the same
// events: each would still publish in order, but every event the two rounds
// share would go out twice.
var storeLocks = struct {
	sync.Mutex
	m map[*storage.DB]*storeLock
}{m: map[*storage.DB]*storeLock{}}

type storeLock struct {
	sync.Mutex
	refs int
}

// lockStore takes db's relay lock and returns its release. Entries are
// reference counted so the map forgets stores nobody relays any more.
func lockStore(db *storage.DB) (unlock func()) {
	storeLocks.Lock()
	l := storeLocks.m[db]
	if l == nil {
		l = &storeLock{}
		storeLocks.m[db] = l
	}
	l.refs++
	storeLocks.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		storeLocks.Lock()
		l.refs--
		if l.refs == 0 {
			delete(storeLocks.m, db)
		}
		storeLocks.Unlock()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
