package idempotency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.uber.org/goleak"

	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	scope = "key_01JF000000000000000000000/millrace.order.v1.OrderService/CreateOrder"
	ttl   = 24 * time.Hour
	lease = time.Minute
)

var (
	hashA = []byte("sha256:request-a")
	hashB = []byte("sha256:request-b")
	t0    = time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
)

// clock is a settable time source shared by the store and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openDB(t *testing.T, path string) *storage.DB {
	t.Helper()
	db, err := storage.Open(path, storage.Schema{Name: "order", Version: 1}, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newStore(t *testing.T) (*Store, *clock, *storage.DB) {
	t.Helper()
	db := openDB(t, filepath.Join(t.TempDir(), "order.db"))
	c := &clock{t: t0}
	return NewStore(db, Options{TTL: ttl, Lease: lease, Now: c.Now}), c, db
}

func mustBegin(t *testing.T, s *Store, key string, hash []byte) Outcome {
	t.Helper()
	out, err := s.Begin(scope, key, hash)
	if err != nil {
		t.Fatalf("Begin(%q): %v", key, err)
	}
	return out
}

var okRecord = Record{
	Code:     0,
	Response: []byte("\x0a\x07ord_123"),
	Message:  "",
	Details:  [][]byte{[]byte("detail-1"), []byte("detail-2")},
}

// counts returns how many records and expiry index entries the store holds;
// they must always match.
func counts(t *testing.T, db *storage.DB) (records, index int) {
	t.Helper()
	_ = db.View(func(tx *bbolt.Tx) error {
		records = tx.Bucket(storage.BucketIdempotency).Stats().KeyN
		index = tx.Bucket(storage.BucketIdempotencyExpiry).Stats().KeyN
		return nil
	})
	return records, index
}

func TestBeginConcurrentSameKey(t *testing.T) {
	s, c, _ := newStore(t)
	const callers = 50

	race := func(hash []byte) []Outcome {
		outs := make([]Outcome, callers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range callers {
			wg.Go(func() {
				<-start
				out, err := s.Begin(scope, "idem-1", hash)
				if err != nil {
					t.Error(err)
				}
				outs[i] = out
			})
		}
		close(start)
		wg.Wait()
		return outs
	}
	tally := func(outs []Outcome) map[string]int {
		m := map[string]int{}
		for _, o := range outs {
			m[fmt.Sprintf("%T", o)]++
		}
		return m
	}

	t.Run("exactly one Started, the rest InFlight", func(t *testing.T) {
		outs := race(hashA)
		got := tally(outs)
		want := map[string]int{"idempotency.Started": 1, "idempotency.InFlight": callers - 1}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("outcomes %v, want %v", got, want)
		}
		for _, o := range outs {
			if f, ok := o.(InFlight); ok && !f.Until.Equal(t0.Add(lease)) {
				t.Errorf("InFlight.Until = %v, want %v", f.Until, t0.Add(lease))
			}
		}
	})
	t.Run("a different request while running is a mismatch", func(t *testing.T) {
		if out := mustBegin(t, s, "idem-1", hashB); out != (Mismatch{}) {
			t.Errorf("Begin = %#v, want Mismatch", out)
		}
	})
	c.Advance(time.Second)
	if err := s.Complete(scope, "idem-1", okRecord); err != nil {
		t.Fatal(err)
	}
	t.Run("after Complete everyone gets the Replay", func(t *testing.T) {
		outs := race(hashA)
		for i, o := range outs {
			r, ok := o.(Replay)
			if !ok {
				t.Fatalf("caller %d got %#v, want Replay", i, o)
			}
			if !bytes.Equal(r.Response, okRecord.Response) || len(r.Details) != 2 || !r.CompletedAt.Equal(t0.Add(time.Second)) {
				t.Fatalf("caller %d replayed %+v", i, r.Record)
			}
		}
	})
	t.Run("a different request after completion is a mismatch", func(t *testing.T) {
		if got := tally(race(hashB)); got["idempotency.Mismatch"] != callers {
			t.Errorf("outcomes %v, want all Mismatch", got)
		}
	})
}

func TestManyKeysConcurrently(t *testing.T) {
	s, _, db := newStore(t)
	const keys = 200
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			key := fmt.Sprintf("k-%d", i)
			if out, err := s.Begin(scope, key, hashA); err != nil || out != (Started{}) {
				t.Errorf("Begin(%s) = %#v, %v", key, out, err)
				return
			}
			if err := s.Complete(scope, key, Record{Code: uint32(i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if r, i := counts(t, db); r != keys || i != keys {
		t.Errorf("records %d, index entries %d, want %d each", r, i, keys)
	}
	out := mustBegin(t, s, "k-7", hashA)
	if r, ok := out.(Replay); !ok || r.Code != 7 {
		t.Errorf("Begin(k-7) = %#v, want Replay with code 7", out)
	}
}

// TestLifecycle walks one key through every transition, moving the clock.
func TestLifecycle(t *testing.T) {
	s, c, db := newStore(t)
	type step struct {
		name    string
		advance time.Duration
		do      func() (Outcome, error)
		want    Outcome
		wantErr error
	}
	begin := func(scope, key string, hash []byte) func() (Outcome, error) {
		return func() (Outcome, error) { return s.Begin(scope, key, hash) }
	}
	complete := func(key string, rec Record) func() (Outcome, error) {
		return func() (Outcome, error) { return nil, s.Complete(scope, key, rec) }
	}
	abandon := func(key string) func() (Outcome, error) {
		return func() (Outcome, error) { return nil, s.Abandon(scope, key) }
	}
	failed := Record{Code: 9, Message: "order ord_1 cannot be cancelled after shipment"}

	steps := []step{
		{name: "first request starts", do: begin(scope, "k", hashA), want: Started{}},
		{name: "retry while running", advance: 30 * time.Second, do: begin(scope, "k", hashA), want: InFlight{Until: t0.Add(lease)}},
		{name: "same key in another scope is independent", do: begin("other-api-key/Create", "k", hashB), want: Started{}},
		{name: "lease ran out: retry takes over", advance: 31 * time.Second, do: begin(scope, "k", hashA), want: Started{}},
		{name: "the new claim has its own lease", advance: 59 * time.Second, do: begin(scope, "k", hashA), want: InFlight{Until: t0.Add(61*time.Second + lease)}},
		{name: "complete stores the answer", do: complete("k", failed)},
		{name: "complete twice has no claim", do: complete("k", okRecord), wantErr: ErrNoClaim},
		{name: "replay returns the first answer", do: begin(scope, "k", hashA), want: Replay{Record{Code: 9, Message: failed.Message, CompletedAt: t0.Add(120 * time.Second)}}},
		{name: "abandon keeps a completed answer", do: abandon("k")},
		{name: "still replayed after abandon", do: begin(scope, "k", hashA), want: Replay{Record{Code: 9, Message: failed.Message, CompletedAt: t0.Add(120 * time.Second)}}},
		{name: "different request", do: begin(scope, "k", hashB), want: Mismatch{}},
		{name: "replayed until the TTL runs out", advance: ttl - time.Nanosecond, do: begin(scope, "k", hashA), want: Replay{Record{Code: 9, Message: failed.Message, CompletedAt: t0.Add(120 * time.Second)}}},
		{name: "expired record counts as absent", advance: time.Nanosecond, do: begin(scope, "k", hashB), want: Started{}},
		{name: "abandon releases the claim", do: abandon("k")},
		{name: "so a retry starts again", do: begin(scope, "k", hashA), want: Started{}},
		{name: "abandon of an unknown key is harmless", do: abandon("never-used")},
		{name: "complete of an unknown key has no claim", do: complete("never-used", okRecord), wantErr: ErrNoClaim},
	}
	// The steps depend on each other, so the walk stops at the first
	// failure.
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			c.Advance(st.advance)
			out, err := st.do()
			if st.wantErr != nil {
				if !errors.Is(err, st.wantErr) {
					t.Fatalf("error %v, want %v", err, st.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(out, st.want) {
				t.Fatalf("got %#v, want %#v", out, st.want)
			}
			if r, i := counts(t, db); r != i {
				t.Fatalf("%d records but %d index entries", r, i)
			}
		})
		if !ok {
			break
		}
	}
}

func TestCompleteAfterLeaseWithoutTakeover(t *testing.T) {
	s, c, _ := newStore(t)
	mustBegin(t, s, "slow", hashA)
	c.Advance(2 * lease)
	if err := s.Complete(scope, "slow", okRecord); err != nil {
		t.Fatalf("a late owner that nobody replaced should still complete: %v", err)
	}
	if _, ok := mustBegin(t, s, "slow", hashA).(Replay); !ok {
		t.Error("late completion not replayed")
	}
}

func TestSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "order.db")
	db, err := storage.Open(path, storage.Schema{Name: "order", Version: 1}, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(db, Options{})
	mustBegin(t, s, "k", hashA)
	if err := s.Complete(scope, "k", okRecord); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = NewStore(openDB(t, path), Options{})
	out := mustBegin(t, s, "k", hashA)
	if r, ok := out.(Replay); !ok || !bytes.Equal(r.Response, okRecord.Response) {
		t.Errorf("after reopen Begin = %#v, want the stored Replay", out)
	}
}

func TestInvalidInput(t *testing.T) {
	s, _, _ := newStore(t)
	tests := []struct {
		name  string
		scope string
		key   string
		hash  []byte
		isKey bool
	}{
		{"empty scope", "", "k", hashA, true},
		{"empty key", scope, "", hashA, true},
		{"key too long", scope, strings.Repeat("k", MaxKeyLen+1), hashA, true},
		{"empty hash", scope, "k", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Begin(tt.scope, tt.key, tt.hash)
			if err == nil {
				t.Fatal("Begin accepted invalid input")
			}
			if errors.Is(err, ErrInvalidKey) != tt.isKey {
				t.Errorf("error %v: errors.Is(ErrInvalidKey) = %v, want %v", err, !tt.isKey, tt.isKey)
			}
			if tt.isKey {
				if err := s.Complete(tt.scope, tt.key, okRecord); !errors.Is(err, ErrInvalidKey) {
					t.Errorf("Complete error %v", err)
				}
				if err := s.Abandon(tt.scope, tt.key); !errors.Is(err, ErrInvalidKey) {
					t.Errorf("Abandon error %v", err)
				}
			}
		})
	}
	if out := mustBegin(t, s, strings.Repeat("k", MaxKeyLen), hashA); out != (Started{}) {
		t.Errorf("key of MaxKeyLen: %#v", out)
	}
}

func TestSweep(t *testing.T) {
	s, c, db := newStore(t)
	// Keys claimed an hour apart; two of them completed later, which
	// restarts their TTL.
	for i := range 5 {
		mustBegin(t, s, fmt.Sprintf("k%d", i), hashA)
		c.Advance(time.Hour)
	}
	for _, k := range []string{"k0", "k3"} {
		if err := s.Complete(scope, k, okRecord); err != nil {
			t.Fatal(err)
		}
	}
	completedAt := c.Now()

	tests := []struct {
		name    string
		now     time.Time
		removed int
		left    int
	}{
		{"nothing expired yet", t0.Add(ttl - time.Second), 0, 5},
		{"claims k1 and k2 expired", t0.Add(2*time.Hour + ttl), 2, 3},
		{"run again finds nothing new", t0.Add(2*time.Hour + ttl), 0, 3},
		{"k4 expired; completed keys live on", completedAt.Add(ttl - time.Second), 1, 2},
		{"completed keys expired", completedAt.Add(ttl), 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := s.Sweep(tt.now)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.removed {
				t.Errorf("Sweep removed %d, want %d", n, tt.removed)
			}
			if r, i := counts(t, db); r != tt.left || i != tt.left {
				t.Errorf("left %d records and %d index entries, want %d", r, i, tt.left)
			}
		})
	}
}

func TestSweepChunks(t *testing.T) {
	s, c, db := newStore(t)
	const n = sweepChunk*2 + 17
	err := db.Update(func(tx *bbolt.Tx) error {
		for i := range n {
			e := entry{state: stateInFlight, hash: hashA, leaseUntil: t0.Add(lease), expiresAt: t0.Add(ttl)}
			if err := store(tx, storage.KeyStrings(scope, fmt.Sprint(i)), nil, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(ttl)
	got, err := s.Sweep(c.Now())
	if err != nil || got != n {
		t.Fatalf("Sweep = %d, %v, want %d", got, err, n)
	}
	if r, i := counts(t, db); r != 0 || i != 0 {
		t.Errorf("left %d records, %d index entries", r, i)
	}
}

func TestSweepStaleIndexEntry(t *testing.T) {
	s, c, db := newStore(t)
	mustBegin(t, s, "k", hashA)
	rk := storage.KeyStrings(scope, "k")
	// An index entry that no longer matches its record's expiry must go
	// without taking the live record with it.
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(storage.BucketIdempotencyExpiry).Put(expiryKey(t0.Add(-time.Hour), rk), nil)
	}); err != nil {
		t.Fatal(err)
	}
	n, err := s.Sweep(c.Now())
	if err != nil || n != 0 {
		t.Fatalf("Sweep = %d, %v, want 0", n, err)
	}
	if r, i := counts(t, db); r != 1 || i != 1 {
		t.Errorf("left %d records, %d index entries, want 1 and 1", r, i)
	}
	if _, ok := mustBegin(t, s, "k", hashA).(InFlight); !ok {
		t.Error("live claim lost")
	}
}

// syncBuffer lets the sweeper goroutine log while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func TestRunSweeper(t *testing.T) {
	s, c, db := newStore(t)
	mustBegin(t, s, "old", hashA)
	c.Advance(ttl) // "old" is expired before the sweeper starts

	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.RunSweeper(ctx, 10*time.Millisecond, logger)
		close(done)
	}()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("the start-up sweep", func() bool { r, _ := counts(t, db); return r == 0 })

	mustBegin(t, s, "later", hashA)
	c.Advance(ttl)
	waitFor("a periodic sweep", func() bool { r, _ := counts(t, db); return r == 0 })
	waitFor("the log line", func() bool { return strings.Count(logs.String(), "idempotency keys expired") == 2 })
	if !strings.Contains(logs.String(), "store=order") {
		t.Errorf("log does not name the store: %s", logs.String())
	}

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunSweeper did not return after cancel")
	}
}

func TestRunSweeperLogsFailures(t *testing.T) {
	s, _, db := newStore(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.RunSweeper(ctx, time.Hour, slog.New(slog.NewTextHandler(&logs, nil)))
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "idempotency sweep failed") {
		if time.Now().After(deadline) {
			t.Fatal("failure not logged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestReleaseAbandonedAfterRestart: a claim left in flight by a process
// that died is released when the next process opens the store, so the
// client's retry runs at once instead of waiting out the lease; completed
// answers are kept.
func TestReleaseAbandonedAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "svc.db")
	db, err := storage.Open(path, storage.Schema{Name: "order", Version: 1}, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(db, Options{})
	if out, _ := s.Begin("k1|m", "dead", []byte("h")); out != (Started{}) {
		t.Fatalf("begin: %v", out)
	}
	if out, _ := s.Begin("k1|m", "done", []byte("h")); out != (Started{}) {
		t.Fatalf("begin: %v", out)
	}
	if err := s.Complete("k1|m", "done", Record{Code: 0, Response: []byte("r")}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = storage.Open(path, storage.Schema{Name: "order", Version: 1}, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s = NewStore(db, Options{})
	if n, err := s.ReleaseAbandoned(); err != nil || n != 1 {
		t.Fatalf("released %d, %v; want 1", n, err)
	}
	if out, _ := s.Begin("k1|m", "dead", []byte("h")); out != (Started{}) {
		t.Fatalf("retry after restart: %#v, want Started", out)
	}
	if out, _ := s.Begin("k1|m", "done", []byte("h")); out == (Started{}) {
		t.Fatal("a completed answer was dropped")
	}
}

// TestAttachSurvivesACrash covers a request that created something and
// died before its answer was stored: the claim keeps what was attached in
// the creating transaction, survives ReleaseAbandoned, and the retry with
// the same request is Started with the resource; a retry with another
// request is refused as a mismatch, and a claim without a resource is
// released as before.
func TestAttachSurvivesACrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "svc.db")
	db := openDB(t, path)
	s := NewStore(db, Options{})
	for _, key := range []string{"created", "nothing"} {
		if out := mustBegin(t, s, key, hashA); out != (Started{}) {
			t.Fatalf("begin %s: %#v", key, out)
		}
	}
	claimed := func(key string) context.Context {
		return reqctx.WithIdempotency(context.Background(), reqctx.Idempotency{Scope: scope, Key: key})
	}
	// The handler's own transaction stores its record and attaches it.
	if err := db.Update(func(tx *bbolt.Tx) error { return Attach(claimed("created"), tx, "ord_1") }); err != nil {
		t.Fatal(err)
	}
	// Attaching to a key without a running claim, or for a request without
	// a key, does nothing.
	if err := db.Update(func(tx *bbolt.Tx) error { return Attach(claimed("unclaimed"), tx, "ord_2") }); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return Attach(context.Background(), tx, "ord_3") }); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return Attach(claimed("created"), tx, "") }); err == nil {
		t.Error("attaching an empty resource id succeeded")
	}
	if r, i := counts(t, db); r != 2 || i != 2 {
		t.Fatalf("records %d, index entries %d; want 2 and 2", r, i)
	}
	db.Close()

	db = openDB(t, path) // the process died before Complete
	s = NewStore(db, Options{})
	if n, err := s.ReleaseAbandoned(); err != nil || n != 2 {
		t.Fatalf("released %d, %v; want 2", n, err)
	}
	if out := mustBegin(t, s, "created", hashB); out != (Mismatch{}) {
		t.Errorf("another request under the key: %#v, want Mismatch", out)
	}
	if out := mustBegin(t, s, "created", hashA); out != (Started{Resource: "ord_1"}) {
		t.Fatalf("retry: %#v, want Started with the created resource", out)
	}
	if out := mustBegin(t, s, "nothing", hashA); out != (Started{}) {
		t.Errorf("retry of a request that created nothing: %#v, want Started", out)
	}
	if err := s.Complete(scope, "created", okRecord); err != nil {
		t.Fatal(err)
	}
	if out := mustBegin(t, s, "created", hashA); out == (Started{Resource: "ord_1"}) || out == (Started{}) {
		t.Errorf("after Complete: %#v, want the stored answer replayed", out)
	}
	if r, i := counts(t, db); r != 2 || i != 2 {
		t.Errorf("records %d, index entries %d; want 2 and 2", r, i)
	}
}
