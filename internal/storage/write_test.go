package storage

import (
	"errors"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"
)

func TestEmitNotifiesOnlyAfterACommitWithEvents(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "s.db"), Schema{Name: "svc", Version: 1, Buckets: [][]byte{[]byte("b")}}, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	boom := errors.New("boom")
	for _, write := range []struct {
		name string
		run  func(func(), WriteFunc) error
	}{{"batch", db.BatchEmit}, {"update", db.UpdateEmit}} {
		t.Run(write.name, func(t *testing.T) {
			tests := []struct {
				name    string
				emitted bool
				err     error
				notify  int
			}{
				{"events committed", true, nil, 1},
				{"no events", false, nil, 0},
				{"failed with events", true, boom, 0},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					n := 0
					err := write.run(func() { n++ }, func(tx *bbolt.Tx) (bool, error) {
						if err := tx.Bucket([]byte("b")).Put([]byte(tt.name), []byte("v")); err != nil {
							return false, err
						}
						return tt.emitted, tt.err
					})
					if !errors.Is(err, tt.err) || n != tt.notify {
						t.Fatalf("err %v notified %d, want %v and %d", err, n, tt.err, tt.notify)
					}
					var stored bool
					_ = db.View(func(tx *bbolt.Tx) error { stored = tx.Bucket([]byte("b")).Get([]byte(tt.name)) != nil; return nil })
					if stored != (tt.err == nil) {
						t.Fatalf("stored %v after err %v", stored, tt.err)
					}
				})
			}
		})
	}
}
