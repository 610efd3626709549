package events

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/storage"
)

// Relay publishes a store's committed outbox events to a bus in commit
// order and marks them published. After a crash it resumes from the first
// unpublished event: an event may be published twice (at least once), never
// skipped or reordered.
type Relay struct {
	db       *storage.DB
	bus      Bus
	log      *slog.Logger
	batch    int
	idle     time.Duration
	wake     chan struct{}
	observer func(published int, lag time.Duration)
}

// RelayOption configures a Relay.
type RelayOption func(*Relay)

// WithBatchSize sets how many events one publish round reads (default 256).
func WithBatchSize(n int) RelayOption { return func(r *Relay) { r.batch = n } }

// WithIdlePoll sets how often an idle relay looks at the outbox when nobody
// calls Notify (default 250ms).
func WithIdlePoll(d time.Duration) RelayOption { return func(r *Relay) { r.idle = d } }

// WithObserver registers a function told, after each round, how many events
// were published and how old the oldest of them was (outbox lag).
func WithObserver(fn func(published int, lag time.Duration)) RelayOption {
	return func(r *Relay) { r.observer = fn }
}

// NewRelay returns a relay from db's outbox to bus.
func NewRelay(db *storage.DB, bus Bus, log *slog.Logger, opts ...RelayOption) *Relay {
	r := &Relay{db: db, bus: bus, log: log, batch: 256, idle: 250 * time.Millisecond, wake: make(chan struct{}, 1)}
	for _, o := range opts {
		o(r)
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
	backoff := 100 * time.Millisecond
	for {
		n, err := r.Flush(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Warn("outbox relay could not publish; will retry", "store", r.db.Name(), "err", err, "retry_in", backoff)
			if !sleepCtx(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		case ctx.Err() != nil:
			return nil
		}
		backoff = 100 * time.Millisecond
		if n == r.batch {
			continue // more waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-time.After(r.idle):
		}
	}
}

// Flush publishes one batch of unpublished events and reports how many it
// published.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	var recs []storage.OutboxRecord
	if err := r.db.View(func(tx *bbolt.Tx) error {
		var err error
		recs, err = storage.ReadOutbox(tx, r.batch)
		return err
	}); err != nil {
		return 0, fmt.Errorf("read outbox of %s: %w", r.db.Name(), err)
	}
	if len(recs) == 0 {
		return 0, nil
	}
	var oldest time.Time
	published := make([]uint64, 0, len(recs))
	for _, rec := range recs {
		env := &eventsv1.Envelope{}
		if err := proto.Unmarshal(rec.Data, env); err != nil {
			// A record that cannot be decoded would block the outbox forever;
			// it is logged with its sequence and skipped.
			r.log.Error("outbox record is not an event envelope; skipping it", "store", r.db.Name(), "seq", rec.Seq, "err", err)
			published = append(published, rec.Seq)
			continue
		}
		if oldest.IsZero() {
			oldest = env.GetTime().AsTime()
		}
		if err := r.bus.Publish(ctx, env); err != nil {
			r.markPublished(published)
			return len(published), fmt.Errorf("publish %s %s: %w", env.GetType(), env.GetId(), err)
		}
		published = append(published, rec.Seq)
	}
	if err := r.markPublished(published); err != nil {
		return 0, err
	}
	if r.observer != nil && !oldest.IsZero() {
		r.observer(len(published), time.Since(oldest))
	}
	return len(published), nil
}

func (r *Relay) markPublished(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	if err := r.db.Update(func(tx *bbolt.Tx) error { return storage.MarkPublished(tx, seqs...) }); err != nil {
		return fmt.Errorf("mark published in %s: %w", r.db.Name(), err)
	}
	return nil
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
