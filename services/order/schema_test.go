package order

import (
	"path/filepath"
	"slices"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/millrace/millrace/internal/storage"
)

// TestSchemaUpgradesVersion1 opens a store written at schema version 1
// (before the idempotency-key index) with the current schema: the file is
// upgraded in place, its data kept, and the new bucket exists.
func TestSchemaUpgradesVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "order.db")
	v1 := storage.Schema{Name: Schema.Name, Version: 1, Buckets: slices.DeleteFunc(slices.Clone(Schema.Buckets), func(b []byte) bool {
		return string(b) == string(bucketOrdersByIdempotencyKey)
	})}
	db, err := storage.Open(path, v1, storage.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketOrders).Put([]byte("ord_1"), []byte("kept")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = storage.Open(path, Schema, storage.Options{NoSync: true})
	if err != nil {
		t.Fatalf("open a version 1 file with version %d: %v", Schema.Version, err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		if got := string(tx.Bucket(bucketOrders).Get([]byte("ord_1"))); got != "kept" {
			t.Errorf("stored order after the upgrade: %q", got)
		}
		if tx.Bucket(bucketOrdersByIdempotencyKey) == nil {
			t.Error("the upgrade did not create the idempotency-key index")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
