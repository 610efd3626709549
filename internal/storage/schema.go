package storage

import (
	"fmt"

	"go.etcd.io/bbolt"
)

// Schema declares what one Millrace store holds: its name (the service that
// owns the file), the schema version this build writes, the service's own
// buckets and the migrations that bring an older file up to Version.
//
// Buckets lists the buckets of the current version. A new file is created
// directly at Version with every bucket, so migrations only ever run against
// files that already hold data. Names beginning with '_' are reserved for the
// platform buckets declared below.
//
// Appended names the buckets among them whose new keys sort after the keys
// already there (time-ordered ids, creation times, sequences), or after
// those of the same prefix when there are few prefixes (a status and the
// creation time): a page of theirs that fills is split full instead of half
// full (AppendedFill), which halves their size and the pages a stream of
// inserts writes. A key that lands elsewhere still works; it only splits a
// full page sooner.
type Schema struct {
	Name       string
	Version    uint64
	Buckets    [][]byte
	Appended   [][]byte
	Migrations []Migration
}

// AppendedFill is how full the pages of an appended bucket are left when
// they split (bbolt's FillPercent; its default is half).
const AppendedFill = 0.9

// Migration upgrades a file to schema version To from To-1. Open runs every
// pending migration in ascending order inside one write transaction together
// with the version bump, so a crash mid-upgrade leaves the file at its old
// version rather than half migrated. Buckets declared by the new schema
// already exist when Apply runs, so a migration can move data into them.
type Migration struct {
	To    uint64
	Apply func(*bbolt.Tx) error
}

// reservedPrefix marks bucket names owned by the platform. Reserving a prefix
// means no service can ever declare a bucket that collides with one added to
// the platform later.
const reservedPrefix = '_'

// Platform buckets exist in every store. They are declared here, and only
// here, so that what a Millrace file contains can be read in one place.
var (
	// bucketMeta holds the schema name and version of the file.
	bucketMeta = []byte("_meta")

	// bucketOutbox holds events not yet published, keyed by Uint64Key of the
	// bucket sequence so that key order is commit order.
	bucketOutbox = []byte("_outbox")

	// bucketOutboxMeta holds the outbox counters: the highest published
	// sequence and the number of pending records, kept so the relay's lag
	// metric never has to count the outbox.
	bucketOutboxMeta = []byte("_outbox_meta")

	// BucketIdempotency holds Idempotency-Key records, keyed by
	// KeyStrings(scope, key). The idempotency package owns its values.
	BucketIdempotency = []byte("_idempotency")

	// BucketIdempotencyExpiry indexes idempotency records by expiry time so
	// that sweeping them never scans live records. The idempotency package
	// owns its keys.
	BucketIdempotencyExpiry = []byte("_idempotency_expiry")

	// bucketProcessed holds the ids of events a consumer has applied, keyed
	// by KeyStrings(consumer, eventID), so at-least-once delivery is applied
	// at most once.
	bucketProcessed = []byte("_processed")

	// bucketProcessedAt indexes bucketProcessed by processing time so old
	// entries can be swept without a full scan.
	bucketProcessedAt = []byte("_processed_at")

	// bucketAggregateSeq holds one counter per aggregate, the source of the
	// per-aggregate sequence number carried in every event envelope.
	bucketAggregateSeq = []byte("_aggregate_seq")
)

// Keys inside bucketMeta and bucketOutboxMeta.
var (
	metaKeyName          = []byte("name")
	metaKeyVersion       = []byte("version")
	outboxKeyPublished   = []byte("published")
	outboxKeyPendingSize = []byte("pending")
)

// appendedPlatformBuckets are the platform buckets whose new keys come
// after the others: sequences and times, or time-ordered ids under a few
// prefixes (an aggregate kind, a consumer).
var appendedPlatformBuckets = [][]byte{bucketOutbox, bucketAggregateSeq, bucketProcessed, bucketProcessedAt, BucketIdempotencyExpiry}

// platformBuckets are created in every store besides the schema's own.
func platformBuckets() [][]byte {
	return [][]byte{
		bucketOutbox,
		bucketOutboxMeta,
		BucketIdempotency,
		BucketIdempotencyExpiry,
		bucketProcessed,
		bucketProcessedAt,
		bucketAggregateSeq,
	}
}

// validate rejects schema declarations that would make a file ambiguous to
// open later; these are programming errors, caught before a file is touched.
func (s Schema) validate() error {
	if s.Name == "" {
		return fmt.Errorf("storage: schema has no name")
	}
	if s.Version == 0 {
		return fmt.Errorf("storage: schema %q: version must be at least 1", s.Name)
	}
	seen := make(map[string]bool, len(s.Buckets))
	for _, b := range s.Buckets {
		switch {
		case len(b) == 0:
			return fmt.Errorf("storage: schema %q declares an empty bucket name", s.Name)
		case b[0] == reservedPrefix:
			return fmt.Errorf("storage: schema %q: bucket %q: names starting with %q are reserved for the platform", s.Name, b, reservedPrefix)
		case seen[string(b)]:
			return fmt.Errorf("storage: schema %q declares bucket %q twice", s.Name, b)
		}
		seen[string(b)] = true
	}
	for _, b := range s.Appended {
		if !seen[string(b)] {
			return fmt.Errorf("storage: schema %q: appended bucket %q is not one of its buckets", s.Name, b)
		}
	}
	var prev uint64 = 1
	for _, m := range s.Migrations {
		if m.Apply == nil {
			return fmt.Errorf("storage: schema %q: migration to v%d has no Apply", s.Name, m.To)
		}
		if m.To <= prev || m.To > s.Version {
			return fmt.Errorf("storage: schema %q: migration to v%d out of order (migrations must ascend from v2 to v%d)", s.Name, m.To, s.Version)
		}
		prev = m.To
	}
	return nil
}

// createBuckets makes sure every platform and schema bucket exists.
func (s Schema) createBuckets(tx *bbolt.Tx) error {
	for _, name := range append(platformBuckets(), s.Buckets...) {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %q: %w", name, err)
		}
	}
	return nil
}
