package storage

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/bbolt"
)

// An appended bucket's pages split full: the same stream of growing keys
// takes far fewer leaf pages there than in an ordinary bucket, whether it
// is written through Update or group commits.
func TestAppendedBucketsSplitFull(t *testing.T) {
	s := Schema{Name: "customer", Version: 1, Buckets: [][]byte{bucketCustomers, bucketByStatus}, Appended: [][]byte{bucketCustomers}}
	db := openTest(t, filepath.Join(t.TempDir(), "customer.db"), s)
	value := []byte(strings.Repeat("v", 100))
	put := func(tx *bbolt.Tx, i int) error {
		k := Uint64Key(uint64(i))
		for _, name := range [][]byte{bucketCustomers, bucketByStatus} {
			if err := tx.Bucket(name).Put(k, value); err != nil {
				return err
			}
		}
		return nil
	}
	const perTx = 50
	for round := range 40 {
		if round%2 == 0 {
			if err := db.Update(func(tx *bbolt.Tx) error {
				for i := range perTx {
					if err := put(tx, round*perTx+i); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var wg sync.WaitGroup
		errs := make(chan error, perTx)
		for i := range perTx {
			wg.Go(func() { errs <- db.Batch(func(tx *bbolt.Tx) error { return put(tx, round*perTx+i) }) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	var appended, ordinary int
	if err := db.View(func(tx *bbolt.Tx) error {
		appended = tx.Bucket(bucketCustomers).Stats().LeafPageN
		ordinary = tx.Bucket(bucketByStatus).Stats().LeafPageN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if appended*10 > ordinary*7 {
		t.Errorf("2,000 growing keys: %d leaf pages in the appended bucket, %d in the ordinary one; want well under 70%%", appended, ordinary)
	}
	t.Logf("leaf pages: appended %d, ordinary %d", appended, ordinary)
}

func TestAppendedBucketMustBeDeclared(t *testing.T) {
	s := Schema{Name: "customer", Version: 1, Buckets: [][]byte{bucketCustomers}, Appended: [][]byte{bucketByStatus}}
	_, err := Open(filepath.Join(t.TempDir(), "customer.db"), s, testOptions)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("appended bucket %q is not one of its buckets", bucketByStatus)) {
		t.Fatalf("Open = %v, want the undeclared appended bucket named", err)
	}
}
