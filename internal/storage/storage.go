// Package storage is Millrace's storage kit: every domain service keeps its
// system of record in one bbolt file opened through this package.
//
// The kit gives each store what the platform relies on, so services do not
// reinvent it: a declared schema with a version and migrations, secondary
// indexes kept in the same transaction as the record, the transactional
// outbox that makes every state change a durable event, per-aggregate event
// sequence numbers, consumer de-duplication of event ids, and hot backups.
//
// Everything that changes state takes a *bbolt.Tx so that a service's record,
// its index entries and its outgoing event commit together or not at all.
package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DefaultLockTimeout is how long Open waits for the file lock. A store is
// owned by exactly one process, so a lock that is not released within a
// second means another Millrace is running on the same data directory and
// waiting longer would only hide the misconfiguration.
const DefaultLockTimeout = time.Second

// fileMode keeps store files private to the service account: they hold
// customer master data and credit information.
const fileMode os.FileMode = 0o600

// ErrLocked reports that another process holds the store file. Open wraps it
// in a message naming the file.
var ErrLocked = errors.New("in use by another process")

// ErrWrongSchema reports a file that belongs to another store (or to no
// Millrace store at all), so opening it under this schema would misread it.
var ErrWrongSchema = errors.New("wrong schema")

// ErrNeedsMigration reports a read-only open of a file at an older schema
// version: migrating needs a write transaction, and reading it as if it were
// current could misinterpret its data.
var ErrNeedsMigration = errors.New("needs migration")

// SchemaTooNewError reports a file written by a newer Millrace than this
// build. Opening it could silently drop or misread data the newer version
// relies on, so Open refuses and leaves the file untouched.
type SchemaTooNewError struct {
	Path      string
	Store     string
	Found     uint64
	Supported uint64
}

// Error reports the versions on one line so an operator sees the fix at once.
func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("store %s holds %s schema v%d but this build supports up to v%d: run a newer millrace or restore a backup taken by this version",
		e.Path, e.Store, e.Found, e.Supported)
}

// Options tune Open. The zero value is right for production.
type Options struct {
	// ReadOnly opens the file with a shared lock and no writes, for tools
	// that inspect a store.
	ReadOnly bool
	// LockTimeout bounds the wait for the file lock; zero means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// NoSync skips fsync on commit. Only tests and benchmarks may set it: a
	// crash can lose or corrupt committed data.
	NoSync bool
}

// DB is one open Millrace store.
type DB struct {
	bolt     *bbolt.DB
	path     string
	schema   Schema
	group    *groupCommitter
	observer atomic.Pointer[Observer]
}

// Open opens or creates the store file at path for schema s.
//
// A new file is created at s.Version with every bucket. An existing file must
// carry the same schema name; a file at an older version is migrated in one
// transaction; a file from a newer version is refused with a
// *SchemaTooNewError. Another process holding the file yields ErrLocked after
// opts.LockTimeout.
func Open(path string, s Schema, opts Options) (*DB, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	bdb, err := bbolt.Open(path, fileMode, &bbolt.Options{
		Timeout:      timeout,
		ReadOnly:     opts.ReadOnly,
		NoSync:       opts.NoSync,
		FreelistType: bbolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("store %s is %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db := &DB{bolt: bdb, path: path, schema: s}
	db.group = &groupCommitter{db: db}
	if err := db.prepare(opts.ReadOnly); err != nil {
		_ = bdb.Close()
		return nil, err
	}
	return db, nil
}

// prepare checks the file's schema and, when writable, creates or migrates
// it. The decision is made in a read transaction first so a file that is
// refused is never written to.
func (db *DB) prepare(readOnly bool) error {
	var (
		found   uint64
		fresh   bool
		checked error
	)
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			fresh = isEmpty(tx)
			if !fresh {
				checked = fmt.Errorf("store %s has buckets but no Millrace schema metadata: %w", db.path, ErrWrongSchema)
			}
			return nil
		}
		name := string(meta.Get(metaKeyName))
		if name != db.schema.Name {
			checked = fmt.Errorf("store %s holds the %q schema, not %q: %w", db.path, name, db.schema.Name, ErrWrongSchema)
			return nil
		}
		v := meta.Get(metaKeyVersion)
		if len(v) != 8 {
			checked = fmt.Errorf("store %s has a malformed schema version: %w", db.path, ErrWrongSchema)
			return nil
		}
		found = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read schema of store %s: %w", db.path, err)
	}
	if checked != nil {
		return checked
	}
	s := db.schema
	switch {
	case fresh && readOnly:
		return fmt.Errorf("store %s is empty and cannot be initialised read-only: %w", db.path, ErrWrongSchema)
	case found > s.Version:
		return &SchemaTooNewError{Path: db.path, Store: s.Name, Found: found, Supported: s.Version}
	case !fresh && found < s.Version && readOnly:
		return fmt.Errorf("store %s is at %s schema v%d, this build needs v%d; open it read-write once to migrate: %w",
			db.path, s.Name, found, s.Version, ErrNeedsMigration)
	case readOnly:
		return nil
	}
	err = db.bolt.Update(func(tx *bbolt.Tx) error {
		if err := s.createBuckets(tx); err != nil {
			return err
		}
		if !fresh {
			for _, m := range s.Migrations {
				if m.To <= found {
					continue
				}
				if err := m.Apply(tx); err != nil {
					return fmt.Errorf("migrate %s schema to v%d: %w", s.Name, m.To, err)
				}
			}
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(metaKeyName, []byte(s.Name)); err != nil {
			return err
		}
		return meta.Put(metaKeyVersion, Uint64Key(s.Version))
	})
	if err != nil {
		return fmt.Errorf("prepare store %s: %w", db.path, err)
	}
	return nil
}

// isEmpty reports whether tx sees no buckets at all: a file just created.
func isEmpty(tx *bbolt.Tx) bool {
	k, _ := tx.Cursor().First()
	return k == nil
}

// View runs fn in a read-only transaction.
func (db *DB) View(fn func(*bbolt.Tx) error) error { return db.bolt.View(fn) }

// Update runs fn in a read-write transaction that commits when fn returns
// nil and rolls back otherwise.
func (db *DB) Update(fn func(*bbolt.Tx) error) error {
	return db.observed(func() error { return db.update(fn) })
}

// update is Update without the wait reported, for callers that report it.
func (db *DB) update(fn func(*bbolt.Tx) error) error {
	start := time.Now()
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		db.beginWrite(tx)
		return fn(tx)
	})
	if err == nil {
		db.committed(1, start)
	}
	return err
}

// beginWrite prepares a write transaction before any function runs in it:
// the appended buckets split their pages full (Schema.Appended). bbolt
// keeps the setting on the transaction's bucket handles, which every later
// tx.Bucket call of the transaction returns.
func (db *DB) beginWrite(tx *bbolt.Tx) {
	for _, names := range [][][]byte{appendedPlatformBuckets, db.schema.Appended} {
		for _, name := range names {
			if b := tx.Bucket(name); b != nil {
				b.FillPercent = AppendedFill
			}
		}
	}
}

// Batch runs fn in a read-write transaction shared with other concurrent
// Batch callers, so many requests pay for one fsync. Use it on request paths
// where writers arrive concurrently. There is no collection timer: a lone
// caller commits at once, and callers arriving while a commit is on disk
// share the next one (see groupCommitter).
//
// fn may run more than once: when any function in a shared batch fails, the
// batch is rolled back and the others are retried. fn must therefore only
// change state through tx, and must reset anything it reports to its caller
// (outcome variables, counters) at its start rather than accumulate.
func (db *DB) Batch(fn func(*bbolt.Tx) error) error {
	return db.observed(func() error { return db.group.do(fn) })
}

// Close releases the file and its lock.
func (db *DB) Close() error { return db.bolt.Close() }

// Bolt exposes the underlying bbolt handle for tooling such as stats and
// compaction; services should use View, Update and Batch.
func (db *DB) Bolt() *bbolt.DB { return db.bolt }

// Path returns the file path the store was opened with.
func (db *DB) Path() string { return db.path }

// Name returns the schema name, which is the owning service.
func (db *DB) Name() string { return db.schema.Name }

// InUse reports whether another process holds the store file at path (a
// running server). It waits at most wait for the lock.
func InUse(path string, wait time.Duration) bool {
	bdb, err := bbolt.Open(path, fileMode, &bbolt.Options{Timeout: wait, ReadOnly: true})
	if err != nil {
		return errors.Is(err, berrors.ErrTimeout)
	}
	_ = bdb.Close()
	return false
}
