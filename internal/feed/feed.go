// Package feed is the durable event feed for CRMs that poll
// (GET /v1/events?after=CURSOR) or stream (WatchEvents).
//
// The feed is a log in the integration store: it consumes every event from
// the bus once (de-duplicated by event id), gives it the next position, and
// serves positions back as opaque cursors. Events stay for a retention
// window (30 days by default); a cursor from before the oldest retained
// event is refused with the oldest cursor still available, so a client that
// fell behind learns it missed events instead of silently skipping them.
package feed

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/storage"
)

// The feed's buckets in the integration store.
var (
	// bucketEvents holds the log: Uint64Key(position) → record. Positions
	// come from the bucket's own sequence, so they only ever grow, even
	// across sweeps and restarts.
	bucketEvents = []byte("feed_events")
	// bucketEventIDs maps an event id to its position, to append each
	// event once however often the bus delivers it.
	bucketEventIDs = []byte("feed_event_ids")
	// bucketMeta holds the cursor key and the sweep watermark.
	bucketMeta = []byte("feed_meta")
)

// Buckets are the buckets the feed keeps in the integration store; the
// store's schema must declare them.
var Buckets = [][]byte{bucketEvents, bucketEventIDs, bucketMeta}

// Appended are the feed's buckets whose keys only grow (positions and
// time-ordered event ids), for the schema's Appended.
var Appended = [][]byte{bucketEvents, bucketEventIDs}

// Keys in bucketMeta.
var (
	metaCursorKey = []byte("cursor_key") // HMAC key of cursors, made once
	metaSwept     = []byte("swept")      // highest position deleted by the sweep
)

// Defaults and limits.
const (
	DefaultRetention = 30 * 24 * time.Hour
	DefaultPageSize  = 100
	MaxPageSize      = 1000

	// maxScan bounds the entries one read walks past when type filters or
	// region scope skip most of them, so one request never walks the whole
	// log; the page then comes back short with a cursor past what was
	// scanned, and the client goes on from there.
	maxScan = 10_000
	// sweepBatch bounds the deletes of one sweep transaction, so a large
	// backlog of expired events never holds the write lock for long.
	sweepBatch = 1_000
	// watchPage is how many events Watch reads from the store at a time.
	watchPage = 100
)

// Pace is how often, at most, the process commits to the feed while events
// arrive one after another (events.Paced): an event reaches the feed at
// most this much later, and a busy node syncs the integration store a
// hundred times a second rather than once per few events, leaving the disk
// to the services' own commits. A backlog is not paced.
//
// It is short because it is felt elsewhere too: in the all-in-one process
// an outbox relay waits until every consumer has handled what it published
// before it publishes more (app.handledBus), so each relay round may wait
// up to Pace for the feed, and webhooks see their events that much later.
// At 50 ms the webhook p99 at 200 events/s went from ~25 ms to ~100 ms
// (bench/README.md).
const Pace = 10 * time.Millisecond

// Options configure a Log.
type Options struct {
	// Retention is how long the feed keeps an event (default 30 days).
	Retention time.Duration
	// Now is the clock (default time.Now); tests pin it.
	Now func() time.Time
	// Log receives events the feed cannot take (default slog.Default()).
	Log *slog.Logger
}

// Log is the feed's event log. Its methods are safe for concurrent use.
type Log struct {
	db        *storage.DB
	retention time.Duration
	now       func() time.Time
	log       *slog.Logger
	key       []byte

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every append: wakes watchers
}

// CursorExpiredError reports a cursor that points before the oldest event
// the feed still holds: events after it were deleted by retention, so
// continuing from it would skip them unnoticed.
type CursorExpiredError struct {
	// Oldest is the oldest cursor still available: passing it as "after"
	// returns the oldest retained event first.
	Oldest string
	// Retention is the feed's retention window.
	Retention time.Duration
}

// Error names the cursor to continue from.
func (e *CursorExpiredError) Error() string {
	return fmt.Sprintf("feed: the cursor is older than the retention of %s and the events after it were deleted; the oldest cursor still available is %s", retentionText(e.Retention), e.Oldest)
}

// InvalidCursorError reports an "after" value that is not a cursor this
// feed issued.
type InvalidCursorError struct{ Reason string }

// Error gives the reason.
func (e *InvalidCursorError) Error() string { return "feed: invalid cursor: " + e.Reason }

// InvalidTypeError reports a type filter that is neither an event type nor
// a prefix ending in "*".
type InvalidTypeError struct {
	Index int
	Type  string
}

// Error names the filter.
func (e *InvalidTypeError) Error() string {
	return fmt.Sprintf("feed: type filter %d (%q) is not an event type or a prefix ending in '*'", e.Index, e.Type)
}

// NewLog opens the feed in db, whose schema declares Buckets. The first
// call on a store makes the key that signs its cursors.
func NewLog(db *storage.DB, opts Options) (*Log, error) {
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	l := &Log{db: db, retention: opts.Retention, now: opts.Now, log: opts.Log, changed: make(chan struct{})}
	err := db.Update(func(tx *bbolt.Tx) error {
		for _, name := range Buckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("feed: bucket %s is missing: declare feed.Buckets in the schema of store %s", name, db.Name())
			}
		}
		meta := tx.Bucket(bucketMeta)
		if k := meta.Get(metaCursorKey); k != nil {
			l.key = bytes.Clone(k)
			return nil
		}
		l.key = make([]byte, 32)
		if _, err := rand.Read(l.key); err != nil {
			return err
		}
		return meta.Put(metaCursorKey, l.key)
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Consume appends env to the feed unless it is already there. It is an
// events.Handler, for tests and callers that have one event; the process
// subscribes ConsumeBatch.
func (l *Log) Consume(ctx context.Context, env *eventsv1.Envelope) error {
	return l.ConsumeBatch(ctx, []*eventsv1.Envelope{env})
}

var _ events.Handler = (*Log)(nil).Consume

// ConsumeBatch appends the events of envs that are not in the feed yet, in
// order and in one transaction, so a backlog costs one disk sync per batch
// rather than one per event. It is an events.BatchHandler: subscribe it to
// the bus as the consumer "feed" with SubscribeBatch. An envelope without
// an id or type cannot be de-duplicated or filtered; it is logged and
// dropped rather than retried, since retrying would hold back every later
// event forever.
func (l *Log) ConsumeBatch(_ context.Context, envs []*eventsv1.Envelope) error {
	type entry struct {
		env  *eventsv1.Envelope
		data []byte
	}
	entries := make([]entry, 0, len(envs))
	for _, env := range envs {
		if env.GetId() == "" || env.GetType() == "" {
			l.log.Error("feed: dropping an event without id or type", "id", env.GetId(), "type", env.GetType())
			continue
		}
		data, err := storage.MarshalProto(env)
		if err != nil {
			return fmt.Errorf("feed: encode event %s: %w", env.GetId(), err)
		}
		entries = append(entries, entry{env, data})
	}
	if len(entries) == 0 {
		return nil
	}
	var appended bool
	err := l.db.Update(func(tx *bbolt.Tx) error {
		appended = false
		for _, e := range entries {
			ok, err := l.appendTx(tx, e.env, e.data)
			if err != nil {
				return fmt.Errorf("event %s: %w", e.env.GetId(), err)
			}
			appended = appended || ok
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("feed: append %d events: %w", len(entries), err)
	}
	if appended {
		l.mu.Lock()
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}
	return nil
}

var _ events.BatchHandler = (*Log)(nil).ConsumeBatch

// appendTx appends the encoded env in tx unless its id is already in the
// log, and reports whether it did.
func (l *Log) appendTx(tx *bbolt.Tx, env *eventsv1.Envelope, data []byte) (bool, error) {
	id := []byte(env.GetId())
	ids := tx.Bucket(bucketEventIDs)
	if ids.Get(id) != nil {
		return false, nil // a redelivery
	}
	evs := tx.Bucket(bucketEvents)
	pos, err := evs.NextSequence()
	if err != nil {
		return false, err
	}
	rec := record{At: l.now().UTC(), ID: env.GetId(), Type: env.GetType(), Region: env.GetRegion(), Env: data}
	if err := evs.Put(storage.Uint64Key(pos), encodeRecord(rec)); err != nil {
		return false, err
	}
	return true, ids.Put(id, storage.Uint64Key(pos))
}

// List returns up to pageSize events after the cursor after (empty: from
// the oldest retained event) whose type matches types (exact names or
// prefixes ending in "*"; none: every type), oldest first, and the cursor
// to continue from: the request's own when nothing newer exists. A caller
// whose API key is scoped to a region sees only that region's events and
// events that belong to no region.
//
// A page may hold fewer than pageSize events, even none, while more exist:
// one call walks past at most 10,000 events that do not match. Keep
// following the returned cursor until it stops changing.
func (l *Log) List(ctx context.Context, after string, types []string, pageSize int) ([]*integrationv1.FeedEvent, string, error) {
	if err := checkTypes(types); err != nil {
		return nil, "", err
	}
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	pageSize = min(pageSize, MaxPageSize)
	var (
		out  []*integrationv1.FeedEvent
		last uint64
	)
	err := l.db.View(func(tx *bbolt.Tx) error {
		start, err := l.start(tx, after)
		if err != nil {
			return err
		}
		out, last, err = l.read(tx, start, types, pageSize, visibleTo(ctx))
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := after
	if last != 0 {
		next = encodeCursor(l.key, last)
	}
	return out, next, nil
}

// Watch sends the events after the cursor after that match types, then
// each new one as it is consumed, until ctx ends or send fails. An empty
// after starts with events consumed from now on. A watcher never polls: it
// sleeps until Consume appends. If the watcher falls so far behind that
// retention deletes events it has not sent, Watch ends with a
// *CursorExpiredError rather than skip them.
func (l *Log) Watch(ctx context.Context, after string, types []string, send func(*integrationv1.FeedEvent) error) error {
	if err := checkTypes(types); err != nil {
		return err
	}
	visible := visibleTo(ctx)
	var pos uint64
	err := l.db.View(func(tx *bbolt.Tx) error {
		if after == "" {
			pos = tx.Bucket(bucketEvents).Sequence()
			return nil
		}
		var err error
		pos, err = l.start(tx, after)
		return err
	})
	if err != nil {
		return err
	}
	for {
		// Take the channel before reading: an append that commits after
		// the read has then closed the channel we wait on.
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		var (
			page []*integrationv1.FeedEvent
			last uint64
		)
		err := l.db.View(func(tx *bbolt.Tx) error {
			if swept := sweptPosition(tx); pos < swept {
				return l.expired(swept)
			}
			var err error
			page, last, err = l.read(tx, pos, types, watchPage, visible)
			return err
		})
		if err != nil {
			return err
		}
		for _, fe := range page {
			if err := send(fe); err != nil {
				return err
			}
		}
		if last > pos {
			pos = last
			continue // there may be more right behind
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// start validates the cursor after and returns the position to read after.
func (l *Log) start(tx *bbolt.Tx, after string) (uint64, error) {
	swept := sweptPosition(tx)
	if after == "" {
		return swept, nil
	}
	pos, err := decodeCursor(l.key, after)
	if err != nil {
		return 0, err
	}
	if pos > tx.Bucket(bucketEvents).Sequence() {
		// Only a store restored from an older backup gets here: the cursor
		// names an event this store has not got, and continuing would
		// silently skip the events that will take its position.
		return 0, &InvalidCursorError{Reason: "it points past the newest event of this feed"}
	}
	if pos < swept {
		return 0, l.expired(swept)
	}
	return pos, nil
}

func (l *Log) expired(swept uint64) error {
	return &CursorExpiredError{Oldest: encodeCursor(l.key, swept), Retention: l.retention}
}

// read returns up to limit visible events after position pos matching
// types, and the last position it looked at (0 when none).
func (l *Log) read(tx *bbolt.Tx, pos uint64, types []string, limit int, visible func(string) bool) ([]*integrationv1.FeedEvent, uint64, error) {
	var (
		out     []*integrationv1.FeedEvent
		last    uint64
		scanned int
	)
	c := tx.Bucket(bucketEvents).Cursor()
	for k, v := c.Seek(storage.Uint64Key(pos + 1)); k != nil && len(out) < limit && scanned < maxScan; k, v = c.Next() {
		scanned++
		p, err := position(k)
		if err != nil {
			return nil, 0, err
		}
		last = p
		rec, err := decodeRecord(v)
		if err != nil {
			return nil, 0, fmt.Errorf("feed: position %d: %w", p, err)
		}
		if !events.Matches(types, rec.Type) || !visible(rec.Region) {
			continue
		}
		env := &eventsv1.Envelope{}
		if err := storage.UnmarshalProto(rec.Env, env); err != nil {
			return nil, 0, fmt.Errorf("feed: position %d: %w", p, err)
		}
		out = append(out, &integrationv1.FeedEvent{Cursor: encodeCursor(l.key, p), Event: env})
	}
	return out, last, nil
}

// Sweep deletes the events appended before now minus the retention and
// reports how many it deleted. It walks from the oldest position and stops
// at the first event to keep, so it touches only what it deletes; and since
// it only ever removes the oldest end of the log, what remains has no gaps.
// The highest deleted position is remembered: cursors before it are
// expired from then on.
func (l *Log) Sweep(now time.Time) (int, error) {
	cutoff := now.Add(-l.retention)
	total := 0
	for {
		n, more := 0, false
		err := l.db.Update(func(tx *bbolt.Tx) error {
			n, more = 0, false
			evs, ids := tx.Bucket(bucketEvents), tx.Bucket(bucketEventIDs)
			swept := sweptPosition(tx)
			c := evs.Cursor()
			for k, v := c.First(); k != nil; k, v = c.First() {
				if n == sweepBatch {
					more = true
					break
				}
				p, err := position(k)
				if err != nil {
					return err
				}
				rec, err := decodeRecord(v)
				if err != nil {
					return fmt.Errorf("feed: position %d: %w", p, err)
				}
				if !rec.At.Before(cutoff) {
					break
				}
				if bytes.Equal(ids.Get([]byte(rec.ID)), k) {
					if err := ids.Delete([]byte(rec.ID)); err != nil {
						return err
					}
				}
				if err := c.Delete(); err != nil {
					return err
				}
				swept = max(swept, p)
				n++
			}
			if n == 0 {
				return nil
			}
			return tx.Bucket(bucketMeta).Put(metaSwept, storage.Uint64Key(swept))
		})
		if err != nil {
			return total, fmt.Errorf("feed: sweep: %w", err)
		}
		total += n
		if !more {
			return total, nil
		}
	}
}

// RunSweeper sweeps every interval until ctx ends; failures are logged and
// the next round tries again.
func (l *Log) RunSweeper(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := l.Sweep(l.now()); err != nil {
			l.log.Error("feed: sweep failed", "err", err)
		} else if n > 0 {
			l.log.Info("feed: deleted events past retention", "count", n, "retention", l.retention)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func sweptPosition(tx *bbolt.Tx) uint64 {
	p, _ := position(tx.Bucket(bucketMeta).Get(metaSwept))
	return p
}

func position(k []byte) (uint64, error) {
	if k == nil {
		return 0, nil
	}
	if len(k) != 8 {
		return 0, fmt.Errorf("feed: corrupt position key %x", k)
	}
	return binary.BigEndian.Uint64(k), nil
}

// checkTypes rejects filters the edge's validation would too, for callers
// that reach the feed without it.
func checkTypes(types []string) error {
	for i, t := range types {
		name := strings.TrimSuffix(t, "*")
		if t == "" || strings.ContainsAny(name, "* \t\r\n") {
			return &InvalidTypeError{Index: i, Type: t}
		}
	}
	return nil
}

// visibleTo returns which regions' events the caller may see: a key scoped
// to a region sees that region and events of no region (master data such as
// products); other callers see everything.
func visibleTo(ctx context.Context) func(region string) bool {
	p, ok := auth.FromContext(ctx)
	if !ok || p.Region == "" {
		return func(string) bool { return true }
	}
	return func(region string) bool { return region == "" || p.SeesRegion(region) }
}

func retentionText(d time.Duration) string {
	switch days := d / (24 * time.Hour); {
	case d%(24*time.Hour) != 0:
		return d.String()
	case days == 1:
		return "1 day"
	default:
		return fmt.Sprintf("%d days", days)
	}
}

// rangeSlack is how far past the end of a replay range Range keeps reading:
// events from different services reach the feed in commit order per
// service, so one committed just before the end may be appended a little
// after a later one.
const rangeSlack = time.Minute

// Range visits the retained events committed in [start, end), oldest first.
// It implements the webhooks' EventSource for replays of a time range. It
// reads in pages, each in its own read transaction, so a long replay never
// holds one transaction open.
func (l *Log) Range(ctx context.Context, start, end time.Time, visit func(*eventsv1.Envelope) error) error {
	var pos uint64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var page []*eventsv1.Envelope
		done := false
		err := l.db.View(func(tx *bbolt.Tx) error {
			c := tx.Bucket(bucketEvents).Cursor()
			k, v := c.Seek(storage.Uint64Key(pos + 1))
			for n := 0; k != nil && n < watchPage*10; k, v = c.Next() {
				p, err := position(k)
				if err != nil {
					return err
				}
				pos = p
				n++
				rec, err := decodeRecord(v)
				if err != nil {
					return fmt.Errorf("feed: position %d: %w", p, err)
				}
				env := &eventsv1.Envelope{}
				if err := storage.UnmarshalProto(rec.Env, env); err != nil {
					return fmt.Errorf("feed: position %d: %w", p, err)
				}
				t := env.GetTime().AsTime()
				if t.After(end.Add(rangeSlack)) {
					done = true
					return nil
				}
				if !t.Before(start) && t.Before(end) {
					page = append(page, env)
				}
			}
			if k == nil {
				done = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, env := range page {
			if err := visit(env); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}
