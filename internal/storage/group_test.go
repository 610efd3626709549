package storage

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// TestBatchSharesCommits holds the committer inside one transaction while
// more callers queue, then checks that the queued callers all ran in one
// shared transaction and that every write is stored.
func TestBatchSharesCommits(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "group.db"), customerSchemaV1)
	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- db.Batch(func(tx *bbolt.Tx) error {
			select {
			case <-entered:
			default:
				close(entered)
			}
			<-release
			return tx.Bucket(bucketCustomers).Put([]byte("first"), []byte("1"))
		})
	}()
	<-entered

	const n = 20
	var (
		mu  sync.Mutex
		txs = map[*bbolt.Tx]int{}
		wg  sync.WaitGroup
	)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- db.Batch(func(tx *bbolt.Tx) error {
				mu.Lock()
				txs[tx]++
				mu.Unlock()
				return tx.Bucket(bucketCustomers).Put(fmt.Appendf(nil, "k%02d", i), []byte("v"))
			})
		}()
	}
	waitQueued(t, db, n)
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(txs) != 1 {
		t.Errorf("the %d queued callers ran in %d transactions, want 1 shared", n, len(txs))
	}
	if got := countKeys(t, db); got != n+1 {
		t.Errorf("stored %d keys, want %d", got, n+1)
	}
}

// TestBatchFailureIsolated checks that a function failing inside a shared
// transaction gets its own error, writes nothing, and does not stop the
// others from committing; a panic surfaces in its caller only.
func TestBatchFailureIsolated(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "group.db"), customerSchemaV1)
	errBad := errors.New("refused on purpose")
	entered, release := make(chan struct{}), make(chan struct{})
	go func() {
		_ = db.Batch(func(tx *bbolt.Tx) error {
			select {
			case <-entered:
			default:
				close(entered)
			}
			<-release
			return nil
		})
	}()
	<-entered

	var wg sync.WaitGroup
	results := make([]error, 10)
	panicked := make(chan any, 1)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i {
			case 3:
				results[i] = db.Batch(func(tx *bbolt.Tx) error {
					if err := tx.Bucket(bucketCustomers).Put([]byte("bad"), []byte("x")); err != nil {
						return err
					}
					return errBad
				})
			case 7:
				defer func() { panicked <- recover() }()
				results[i] = db.Batch(func(tx *bbolt.Tx) error {
					_ = tx.Bucket(bucketCustomers).Put([]byte("panicky"), []byte("x"))
					panic("boom")
				})
			default:
				results[i] = db.Batch(func(tx *bbolt.Tx) error {
					return tx.Bucket(bucketCustomers).Put(fmt.Appendf(nil, "ok%d", i), []byte("v"))
				})
			}
		}()
	}
	waitQueued(t, db, len(results))
	close(release)
	wg.Wait()

	for i, err := range results {
		switch i {
		case 3:
			if !errors.Is(err, errBad) {
				t.Errorf("failing caller got %v, want its own error", err)
			}
		case 7:
		default:
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
		}
	}
	if p := <-panicked; p != "boom" {
		t.Errorf("the panicking caller recovered %v, want its own panic", p)
	}
	err := db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketCustomers)
		for _, k := range []string{"bad", "panicky"} {
			if b.Get([]byte(k)) != nil {
				t.Errorf("the write of a failed function (%s) was committed", k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := countKeys(t, db); got != len(results)-2 {
		t.Errorf("stored %d keys, want %d", got, len(results)-2)
	}
}

// TestBatchSequentialCallers checks that a lone caller at a time commits:
// the committer starts for each and stops when the queue is empty.
func TestBatchSequentialCallers(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "group.db"), customerSchemaV1)
	for i := range 200 {
		if err := db.Batch(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketCustomers).Put(fmt.Appendf(nil, "k%03d", i), []byte("v"))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if got := countKeys(t, db); got != 200 {
		t.Errorf("stored %d keys, want 200", got)
	}
	db.group.mu.Lock()
	defer db.group.mu.Unlock()
	if len(db.group.queue) != 0 {
		t.Errorf("%d calls left in the queue", len(db.group.queue))
	}
}

func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		db.group.mu.Lock()
		q := len(db.group.queue)
		db.group.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d callers queued", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func countKeys(t *testing.T, db *DB) int {
	t.Helper()
	n := 0
	if err := db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketCustomers).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
