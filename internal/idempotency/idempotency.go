// Package idempotency is the durable store behind Millrace's Idempotency-Key
// capability: a client that retries a create or custom method with the same
// key gets the first response back instead of a second order, reservation or
// payment.
//
// Records live in the calling service's own store (the platform idempotency
// buckets of package storage), so a key survives restarts and backups exactly
// like the data it protects. The flow for one request is:
//
//	out, err := store.Begin(scope, key, hash)
//	switch out := out.(type) {
//	case idempotency.Started:  // run the handler, then Complete (or Abandon on a retryable failure)
//	case idempotency.Replay:   // answer with out.Record
//	case idempotency.InFlight: // 409: the first request is still running
//	case idempotency.Mismatch: // 422: the key was used for a different request
//	}
//
// Every write goes through storage.DB.Batch: concurrent requests share one
// commit, and because each claim is decided inside the serialised write
// transaction, any number of racing requests with one key yield exactly one
// Started.
package idempotency

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/bbolt"

	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

// Defaults for Options.
const (
	// DefaultTTL keeps keys for a week: at least as long as a dead-lettered
	// webhook or a stalled CRM sync can take to be retried by an operator.
	DefaultTTL = 7 * 24 * time.Hour
	// DefaultLease bounds how long an unfinished claim blocks retries. It is
	// longer than any request deadline at the edge, so a claim is only
	// taken over when its owner is surely gone (crashed or disconnected).
	DefaultLease = 60 * time.Second
)

// MaxKeyLen caps an idempotency key so a client cannot store arbitrary
// payloads under the key itself; a UUID or ULID needs far less.
const MaxKeyLen = 255

// sweepChunk bounds one sweep transaction so a large backlog of expired keys
// never holds the write lock for long.
const sweepChunk = 1000

var (
	// ErrInvalidKey reports an empty scope or key, or a key longer than
	// MaxKeyLen; the edge answers it as invalid input.
	ErrInvalidKey = errors.New("idempotency: invalid key")
	// ErrNoClaim reports Complete on a key with no running claim: it was
	// never begun, was abandoned, expired, or was already completed (after
	// a lease takeover the first completion wins).
	ErrNoClaim = errors.New("idempotency: no running claim for key")
)

// Options tune a Store. The zero value gives the defaults.
type Options struct {
	// TTL is how long a key is remembered, counted from its claim and again
	// from its completion. Zero means DefaultTTL.
	TTL time.Duration
	// Lease is how long an in-flight claim blocks other requests with the
	// same key before it is considered abandoned and may be taken over.
	// Zero means DefaultLease.
	Lease time.Duration
	// Now is the clock; nil means time.Now. Tests set it to move time.
	Now func() time.Time
}

// Store keeps idempotency records in one service's storage.DB.
type Store struct {
	db    *storage.DB
	ttl   time.Duration
	lease time.Duration
	now   func() time.Time
}

// NewStore returns a Store over db, which must have been opened with
// storage.Open so that the idempotency buckets exist.
func NewStore(db *storage.DB, opts Options) *Store {
	s := &Store{db: db, ttl: opts.TTL, lease: opts.Lease, now: opts.Now}
	if s.ttl <= 0 {
		s.ttl = DefaultTTL
	}
	if s.lease <= 0 {
		s.lease = DefaultLease
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Record is the stored outcome of a completed request. The fields are opaque
// to the store: the caller decides how to encode its response and status.
type Record struct {
	// Code is the status code the first call ended with.
	Code uint32
	// Response is the encoded response message.
	Response []byte
	// Message is the status message.
	Message string
	// Details are the encoded status details.
	Details [][]byte
	// CompletedAt is when the first call finished; Complete sets it when
	// zero.
	CompletedAt time.Time
}

// Outcome is the result of Begin: Started, Replay, InFlight or Mismatch.
type Outcome interface{ outcome() }

// Started means the caller now owns the key: it must run the request and
// then call Complete, or Abandon if the request failed in a way the client
// may retry.
//
// Resource is set when an earlier attempt with this key and request created
// something (see Attach) and then died before its answer was stored: the
// request must answer with that resource instead of creating another.
type Started struct{ Resource string }

// Replay means the same request already completed under this key; answer
// with the stored Record instead of running it again.
type Replay struct{ Record }

// InFlight means the first request with this key is still running. Until is
// when its lease ends, the earliest moment a retry could take it over, which
// the edge can offer as Retry-After.
type InFlight struct{ Until time.Time }

// Mismatch means the key was already used for a request with a different
// hash; the client reused a key by mistake.
type Mismatch struct{}

func (Started) outcome()  {}
func (Replay) outcome()   {}
func (InFlight) outcome() {}
func (Mismatch) outcome() {}

// Begin claims key within scope (the API key id and method) for a request
// whose canonical encoding hashes to requestHash, or reports why it cannot.
// A record past its TTL is treated as absent, and so is an in-flight claim
// past its lease, whose owner is presumed gone.
func (s *Store) Begin(scope, key string, requestHash []byte) (Outcome, error) {
	if err := checkKey(scope, key); err != nil {
		return nil, err
	}
	if len(requestHash) == 0 {
		return nil, errors.New("idempotency: empty request hash")
	}
	rk := storage.KeyStrings(scope, key)
	var out Outcome
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		// Batch may run this more than once: decide afresh every time.
		out = nil
		now := s.now()
		cur, found, err := load(tx, rk)
		if err != nil {
			return err
		}
		var old *entry
		if found {
			old = &cur
		}
		// A claim whose owner is gone (lease over) is taken over; what that
		// owner created, if it said so, is handed to the new owner.
		// A claim that created something stays bound to its request: only
		// the same request takes it over.
		var resource string
		if found && (cur.expired(now) || (cur.state == stateInFlight && !now.Before(cur.leaseUntil))) {
			switch {
			case cur.expired(now) || cur.resource == "":
				found = false
			case bytes.Equal(cur.hash, requestHash):
				resource, found = cur.resource, false
			default:
				out = Mismatch{}
				return nil
			}
		}
		if found {
			switch {
			case !bytes.Equal(cur.hash, requestHash):
				out = Mismatch{}
			case cur.state == stateCompleted:
				out = Replay{cur.rec}
			default:
				out = InFlight{Until: cur.leaseUntil}
			}
			return nil
		}
		claim := entry{
			state:      stateInFlight,
			hash:       bytes.Clone(requestHash),
			leaseUntil: now.Add(s.lease),
			expiresAt:  now.Add(s.ttl),
			resource:   resource,
		}
		if err := store(tx, rk, old, claim); err != nil {
			return err
		}
		out = Started{Resource: resource}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("idempotency: begin: %w", err)
	}
	return out, nil
}

// Complete stores rec as the answer for key within scope, to be replayed to
// every later request with the same key and hash until the TTL, counted from
// now, runs out. The key must hold a running claim, else ErrNoClaim.
func (s *Store) Complete(scope, key string, rec Record) error {
	if err := checkKey(scope, key); err != nil {
		return err
	}
	rk := storage.KeyStrings(scope, key)
	var claimed bool
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		claimed = false
		now := s.now()
		cur, found, err := load(tx, rk)
		if err != nil {
			return err
		}
		// A claim past its lease that nobody took over still belongs to
		// this caller: storing its answer beats forgetting it.
		if !found || cur.expired(now) || cur.state != stateInFlight {
			return nil
		}
		done := entry{
			state:     stateCompleted,
			hash:      cur.hash,
			expiresAt: now.Add(s.ttl),
			rec:       rec,
		}
		if done.rec.CompletedAt.IsZero() {
			done.rec.CompletedAt = now.UTC()
		}
		claimed = true
		return store(tx, rk, &cur, done)
	})
	if err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	if !claimed {
		return fmt.Errorf("%w %q", ErrNoClaim, key)
	}
	return nil
}

// Attach records, in the caller's own transaction tx, that the keyed
// request ctx carries (reqctx.Idempotency) created resourceID; for a
// request without an Idempotency-Key it does nothing. Call it in the
// transaction that stores the resource, on a store whose idempotency
// records share the resource's file: should the process die before
// Complete, the claim survives ReleaseAbandoned and the client's retry is
// Started with Resource set (reqctx.CreatedBefore), so it answers with what
// was created instead of creating it again. Without a running claim it does
// nothing either.
func Attach(ctx context.Context, tx *bbolt.Tx, resourceID string) error {
	claim, ok := reqctx.IdempotencyOf(ctx)
	if !ok {
		return nil
	}
	if err := checkKey(claim.Scope, claim.Key); err != nil {
		return err
	}
	if resourceID == "" {
		return errors.New("idempotency: attach: empty resource id")
	}
	rk := storage.KeyStrings(claim.Scope, claim.Key)
	cur, found, err := load(tx, rk)
	if err != nil || !found || cur.state != stateInFlight {
		return err
	}
	next := cur
	next.resource = resourceID
	return store(tx, rk, &cur, next)
}

// Abandon releases a running claim on key within scope so the client may
// retry, used when the request failed with a retryable error. A completed
// record is kept, since its answer is final; abandoning an absent key does
// nothing.
func (s *Store) Abandon(scope, key string) error {
	if err := checkKey(scope, key); err != nil {
		return err
	}
	rk := storage.KeyStrings(scope, key)
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		cur, found, err := load(tx, rk)
		if err != nil || !found || cur.state != stateInFlight {
			return err
		}
		return remove(tx, rk, cur)
	})
	if err != nil {
		return fmt.Errorf("idempotency: abandon: %w", err)
	}
	return nil
}

// Sweep deletes records that expired at or before now and returns how many.
// It walks the expiry index from the oldest entry, so its cost follows what
// it deletes, not how many keys are live; it commits in chunks so a large
// backlog never holds the write lock for long.
func (s *Store) Sweep(now time.Time) (int, error) {
	cutoff := nanos(now)
	total := 0
	for {
		var removed, visited int
		err := s.db.Batch(func(tx *bbolt.Tx) error {
			removed, visited = 0, 0
			idx := tx.Bucket(storage.BucketIdempotencyExpiry)
			if idx == nil {
				return errMissingBuckets
			}
			c := idx.Cursor()
			// Re-seek the first entry after each delete so the cursor never
			// sits on a removed key.
			for k, _ := c.First(); k != nil && visited < sweepChunk; k, _ = c.First() {
				if len(k) < 8 {
					return fmt.Errorf("corrupt expiry index key %x", k)
				}
				exp := binary.BigEndian.Uint64(k[:8])
				if exp > cutoff {
					break
				}
				rk := bytes.Clone(k[8:])
				if err := idx.Delete(k); err != nil {
					return err
				}
				visited++
				cur, found, err := load(tx, rk)
				if err != nil {
					return err
				}
				// An index entry whose record has since moved to a later
				// expiry is stale: drop only the entry.
				if found && nanos(cur.expiresAt) == exp {
					if err := tx.Bucket(storage.BucketIdempotency).Delete(rk); err != nil {
						return err
					}
					removed++
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("idempotency: sweep: %w", err)
		}
		total += removed
		if visited < sweepChunk {
			return total, nil
		}
	}
}

// RunSweeper sweeps expired keys once at start (a service may have been down
// for days) and then every interval until ctx is done. Failures are logged
// and retried on the next tick: a missed sweep only delays reclaiming space.
func (s *Store) RunSweeper(ctx context.Context, every time.Duration, logger *slog.Logger) {
	if every <= 0 {
		every = time.Hour
	}
	if logger == nil {
		logger = slog.Default()
	}
	sweep := func() {
		n, err := s.Sweep(s.now())
		switch {
		case err != nil:
			logger.ErrorContext(ctx, "idempotency sweep failed", "store", s.db.Name(), "err", err)
		case n > 0:
			logger.InfoContext(ctx, "idempotency keys expired", "store", s.db.Name(), "removed", n)
		}
	}
	sweep()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sweep()
		}
	}
}

func checkKey(scope, key string) error {
	switch {
	case scope == "":
		return fmt.Errorf("%w: empty scope", ErrInvalidKey)
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalidKey, MaxKeyLen)
	}
	return nil
}

var errMissingBuckets = errors.New("idempotency buckets missing: open the store with storage.Open")

// load reads the record under rk.
func load(tx *bbolt.Tx, rk []byte) (entry, bool, error) {
	b := tx.Bucket(storage.BucketIdempotency)
	if b == nil {
		return entry{}, false, errMissingBuckets
	}
	v := b.Get(rk)
	if v == nil {
		return entry{}, false, nil
	}
	e, err := decodeEntry(v)
	if err != nil {
		return entry{}, false, fmt.Errorf("record %q: %w", rk, err)
	}
	return e, true, nil
}

// store writes e under rk and keeps the expiry index in step, moving the
// entry of the record it replaces, if any.
func store(tx *bbolt.Tx, rk []byte, old *entry, e entry) error {
	b, idx := tx.Bucket(storage.BucketIdempotency), tx.Bucket(storage.BucketIdempotencyExpiry)
	if b == nil || idx == nil {
		return errMissingBuckets
	}
	if old != nil {
		if err := idx.Delete(expiryKey(old.expiresAt, rk)); err != nil {
			return err
		}
	}
	if err := b.Put(rk, e.encode()); err != nil {
		return err
	}
	return idx.Put(expiryKey(e.expiresAt, rk), nil)
}

// remove deletes the record under rk and its index entry.
func remove(tx *bbolt.Tx, rk []byte, old entry) error {
	b, idx := tx.Bucket(storage.BucketIdempotency), tx.Bucket(storage.BucketIdempotencyExpiry)
	if b == nil || idx == nil {
		return errMissingBuckets
	}
	if err := idx.Delete(expiryKey(old.expiresAt, rk)); err != nil {
		return err
	}
	return b.Delete(rk)
}

// expiryKey orders the index by expiry: a fixed-width big-endian time
// followed by the record key, so the oldest expiry comes first.
func expiryKey(at time.Time, rk []byte) []byte {
	return append(storage.Uint64Key(nanos(at)), rk...)
}

func nanos(t time.Time) uint64 {
	if t.IsZero() || t.UnixNano() < 0 {
		return 0
	}
	return uint64(t.UnixNano())
}

// ReleaseAbandoned releases every in-flight claim in the store and reports
// how many there were. Call it once, right after the process opened the
// store: bbolt's file lock proves no other process holds it, so a claim
// still in flight belongs to a process that died mid-request, and its
// client's retry should run now rather than wait out the lease. A claim
// with an attached resource is kept with its lease ended, so that the
// retry learns what the dead request created; the others are deleted.
func (s *Store) ReleaseAbandoned() (int, error) {
	n := 0
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(storage.BucketIdempotency)
		if b == nil {
			return errMissingBuckets
		}
		type claim struct {
			rk []byte
			e  entry
		}
		var stale []claim
		if err := b.ForEach(func(k, v []byte) error {
			e, err := decodeEntry(v)
			if err != nil {
				return nil // an undecodable record is left for Sweep to expire
			}
			if e.state == stateInFlight {
				stale = append(stale, claim{rk: append([]byte(nil), k...), e: e})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, c := range stale {
			if c.e.resource != "" {
				released := c.e
				released.leaseUntil = time.Time{}
				if err := store(tx, c.rk, &c.e, released); err != nil {
					return err
				}
				continue
			}
			if err := remove(tx, c.rk, c.e); err != nil {
				return err
			}
		}
		n = len(stale)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("idempotency: release abandoned claims: %w", err)
	}
	return n, nil
}
