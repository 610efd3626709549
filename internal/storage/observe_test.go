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

type recordingObserver struct {
	mu      sync.Mutex
	commits []int // writes per commit
	waits   int
	stores  map[string]bool
}

func (o *recordingObserver) Committed(store string, writes int, held time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.commits = append(o.commits, writes)
	o.stores[store] = true
	if held <= 0 {
		panic("a commit reported no time held")
	}
}

func (o *recordingObserver) Waited(store string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.waits++
	o.stores[store] = true
}

// The observer hears every write's wait and every commit with the writes it
// carried; a write that fails is waited for but not committed.
func TestObserverHearsCommitsAndWaits(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "observed.db"), customerSchemaV1)
	o := &recordingObserver{stores: map[string]bool{}}
	db.SetObserver(o)

	// A group: the first writer holds the committer while 10 more queue.
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 11)
	go func() {
		done <- db.Batch(func(tx *bbolt.Tx) error {
			close(entered)
			<-release
			return tx.Bucket(bucketCustomers).Put([]byte("first"), []byte("1"))
		})
	}()
	<-entered
	for i := range 10 {
		go func() {
			done <- db.Batch(func(tx *bbolt.Tx) error {
				return tx.Bucket(bucketCustomers).Put(fmt.Appendf(nil, "k%02d", i), []byte("v"))
			})
		}()
	}
	waitQueued(t, db, 10)
	close(release)
	for range 11 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketCustomers).Put([]byte("alone"), []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := db.Update(func(*bbolt.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing update: %v", err)
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	total := 0
	for _, w := range o.commits {
		total += w
	}
	if want := []int{1, 10, 1}; fmt.Sprint(o.commits) != fmt.Sprint(want) {
		t.Errorf("commits carried %v writes, want %v (the first alone, the ten queued together, then the lone update)", o.commits, want)
	}
	if o.waits != 13 {
		t.Errorf("%d waits reported, want 13 (12 writes and the failed one)", o.waits)
	}
	if !o.stores[customerSchemaV1.Name] || len(o.stores) != 1 {
		t.Errorf("stores named %v, want only %q", o.stores, customerSchemaV1.Name)
	}

	db.SetObserver(nil)
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketCustomers).Put([]byte("unheard"), []byte("1")) }); err != nil {
		t.Fatal(err)
	}
	if len(o.commits) != 3 {
		t.Errorf("a removed observer still heard a commit: %v", o.commits)
	}
}
