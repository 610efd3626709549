package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

var (
	bucketRecords = []byte("records")
	bucketCounter = []byte("counter")
	backupSchema  = Schema{Name: "fulfillment", Version: 1, Buckets: [][]byte{bucketRecords, bucketCounter}}
	keyCount      = []byte("count")
)

// writeRecord adds one record, bumps the counter and appends an outbox
// event in one transaction: any consistent snapshot has count == records ==
// outbox length.
func writeRecord(tx *bbolt.Tx, id string) error {
	if err := tx.Bucket(bucketRecords).Put([]byte(id), bytes.Repeat([]byte("x"), 200)); err != nil {
		return err
	}
	c := tx.Bucket(bucketCounter)
	var n uint64
	if v := c.Get(keyCount); v != nil {
		n = binary.BigEndian.Uint64(v)
	}
	if err := c.Put(keyCount, Uint64Key(n+1)); err != nil {
		return err
	}
	_, err := AppendOutbox(tx, []byte(id))
	return err
}

// checkSnapshot opens a copy and verifies the invariant writeRecord keeps.
func checkSnapshot(t *testing.T, path string) uint64 {
	t.Helper()
	if err := Check(path); err != nil {
		t.Fatalf("Check(%s): %v", path, err)
	}
	db, err := Open(path, backupSchema, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var count uint64
	_ = db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketCounter).Get(keyCount); v != nil {
			count = binary.BigEndian.Uint64(v)
		}
		records := tx.Bucket(bucketRecords).Stats().KeyN
		outbox := tx.Bucket(bucketOutbox).Stats().KeyN
		if uint64(records) != count || uint64(outbox) != count || uint64(OutboxLen(tx)) != count {
			t.Errorf("inconsistent snapshot: count %d, records %d, outbox %d, OutboxLen %d", count, records, outbox, OutboxLen(tx))
		}
		return nil
	})
	return count
}

func TestBackupWhileWriting(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, filepath.Join(dir, "fulfillment.db"), backupSchema)

	var (
		stop    atomic.Bool
		written atomic.Int64
		wg      sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("rec_%d_%d", w, i)
				if err := db.Batch(func(tx *bbolt.Tx) error { return writeRecord(tx, id) }); err != nil {
					t.Error(err)
					return
				}
				written.Add(1)
			}
		})
	}
	// Let some data build up so the copies are not trivially small; the
	// writers keep going while the backups run.
	deadline := time.Now().Add(10 * time.Second)
	for written.Load() < 500 && time.Now().Before(deadline) && !t.Failed() {
		time.Sleep(5 * time.Millisecond)
	}

	tests := []struct {
		name   string
		backup func(t *testing.T, dst string)
	}{
		{"WriteBackup to a file", func(t *testing.T, dst string) {
			f, err := os.Create(dst)
			if err != nil {
				t.Fatal(err)
			}
			n, err := db.WriteBackup(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if fi, _ := os.Stat(dst); fi.Size() != n {
				t.Errorf("WriteBackup reported %d bytes, file has %d", n, fi.Size())
			}
		}},
		{"BackupFile", func(t *testing.T, dst string) {
			if err := BackupFile(db, dst); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if mode := fi.Mode().Perm(); mode != 0o600 {
				t.Errorf("backup mode %o, want 600", mode)
			}
		}},
		{"BackupFile over an older backup", func(t *testing.T, dst string) {
			if err := os.WriteFile(dst, []byte("stale"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := BackupFile(db, dst); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(dir, fmt.Sprintf("backup-%d.db", i))
			tt.backup(t, dst)
			if n := checkSnapshot(t, dst); n == 0 {
				t.Error("backup holds no records")
			}
		})
	}
	stop.Store(true)
	wg.Wait()

	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestBackupFileRefusals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fulfillment.db")
	db := openTest(t, path, backupSchema)

	tests := []struct {
		name string
		dst  string
		want string
	}{
		{"the live file", path, "live store file"},
		{"a missing directory", filepath.Join(dir, "nope", "b.db"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := BackupFile(db, tt.dst)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if err := db.View(func(tx *bbolt.Tx) error { return nil }); err != nil {
		t.Errorf("live store damaged: %v", err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantIs  error
		want    string
	}{
		{"sound store", func(t *testing.T, path string) { mustCreate(t, path, backupSchema) }, nil, ""},
		{"bbolt file of another program", func(t *testing.T, path string) {
			b, err := bbolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = b.Close()
		}, nil, "no Millrace schema metadata"},
		{"store held by a running service", func(t *testing.T, path string) { openTest(t, path, backupSchema) }, ErrLocked, "in use by another process"},
		{"missing file", func(*testing.T, string) {}, nil, "no such file"},
		{"not a database", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 2048), 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil, "check store"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("check-%d.db", i))
			tt.prepare(t, path)
			err := Check(path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want it to contain %q", err, tt.want)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Check = %v, want errors.Is %v", err, tt.wantIs)
			}
		})
	}
}
