package ceilings

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/millrace/millrace/bench/harness"
	"github.com/millrace/millrace/internal/storage"
)

// BoltBatchWriters is the number of concurrent writers of BoltBatch64.
const BoltBatchWriters = 64

// recordSize is the size of each stored value: about a small Millrace record.
const recordSize = 128

var benchBucket = []byte("bench")

// BoltSingleCommit measures raw bbolt commits: one goroutine, one db.Update
// putting one 128-byte value per transaction, with bbolt's default options,
// so every commit is fsynced to a real file in a fresh directory under dir
// (os.TempDir() if empty). That is the most durable writes per second one
// writer can get from the disk. cfg.Concurrency is ignored (one writer);
// cfg.Name defaults to BoltSingleCommitName.
func BoltSingleCommit(ctx context.Context, cfg harness.Config, dir string) (harness.Result, error) {
	if cfg.Name == "" {
		cfg.Name = BoltSingleCommitName
	}
	cfg.Concurrency = 1
	return runBolt(ctx, cfg, dir, (*bolt.DB).Update)
}

// BoltBatch64 measures raw bbolt group commit: BoltBatchWriters goroutines each
// putting one 128-byte value per db.Batch call, with bbolt's default options
// (MaxBatchSize 1000, MaxBatchDelay 10ms, fsync on) on a real file in a fresh
// directory under dir (os.TempDir() if empty). With 64 writers a batch never
// fills, so each one closes on the 10ms timer: the ceiling is what a store
// using db.Batch with the defaults can reach, not the disk's limit. A store
// that tunes the batch options needs a ceiling with the same options.
// cfg.Concurrency is ignored; cfg.Name defaults to BoltBatch64Name.
func BoltBatch64(ctx context.Context, cfg harness.Config, dir string) (harness.Result, error) {
	if cfg.Name == "" {
		cfg.Name = BoltBatch64Name
	}
	cfg.Concurrency = BoltBatchWriters
	return runBolt(ctx, cfg, dir, (*bolt.DB).Batch)
}

// BoltGroup64 measures the group commit Millrace's stores use
// (storage.DB.Batch: no collection timer; writers arriving while a commit
// is on disk share the next one) with nothing of Millrace on top:
// BoltBatchWriters goroutines each putting one 128-byte value per call,
// fsync on, on a real file in a fresh directory under dir. It is the
// ceiling for durable writes at that width with the policy the services
// actually run, where BoltBatch64 is bbolt's own db.Batch with defaults.
// cfg.Concurrency is ignored; cfg.Name defaults to BoltGroup64Name.
func BoltGroup64(ctx context.Context, cfg harness.Config, dir string) (res harness.Result, err error) {
	if cfg.Name == "" {
		cfg.Name = BoltGroup64Name
	}
	cfg.Concurrency = BoltBatchWriters
	tmp, err := os.MkdirTemp(dir, "millrace-bench-group-*")
	if err != nil {
		return harness.Result{}, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	defer os.RemoveAll(tmp)
	db, err := storage.Open(filepath.Join(tmp, "ceiling.db"), storage.Schema{Name: "bench", Version: 1, Buckets: [][]byte{benchBucket}}, storage.Options{})
	if err != nil {
		return harness.Result{}, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("%s: close: %w", cfg.Name, cerr)
		}
	}()
	value := bytes.Repeat([]byte{'m'}, recordSize)
	seqs := make([]uint64, cfg.Concurrency)
	return harness.Run(ctx, cfg, func(_ context.Context, worker int) error {
		seqs[worker]++
		key := workerKey(worker, seqs[worker])
		return db.Batch(func(tx *bolt.Tx) error {
			return tx.Bucket(benchBucket).Put(key[:], value)
		})
	}), nil
}

func workerKey(worker int, seq uint64) [12]byte {
	var key [12]byte
	binary.BigEndian.PutUint32(key[:4], uint32(worker))
	binary.BigEndian.PutUint64(key[4:], seq)
	return key
}

// runBolt puts one value per call of write. Each worker writes its own
// ascending keys, so no two puts collide and db.Batch may retry a function
// safely.
func runBolt(ctx context.Context, cfg harness.Config, dir string, write func(*bolt.DB, func(*bolt.Tx) error) error) (res harness.Result, err error) {
	tmp, err := os.MkdirTemp(dir, "millrace-bench-bolt-*")
	if err != nil {
		return harness.Result{}, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	defer os.RemoveAll(tmp)
	db, err := bolt.Open(filepath.Join(tmp, "ceiling.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return harness.Result{}, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("%s: close: %w", cfg.Name, cerr)
		}
	}()
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(benchBucket)
		return err
	}); err != nil {
		return harness.Result{}, fmt.Errorf("%s: %w", cfg.Name, err)
	}

	value := bytes.Repeat([]byte{'m'}, recordSize)
	seqs := make([]uint64, cfg.Concurrency)
	return harness.Run(ctx, cfg, func(_ context.Context, worker int) error {
		seqs[worker]++
		key := workerKey(worker, seqs[worker])
		return write(db, func(tx *bolt.Tx) error {
			return tx.Bucket(benchBucket).Put(key[:], value)
		})
	}), nil
}
