package storage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

var (
	bucketCustomers   = []byte("customers")
	bucketByRef       = []byte("customers_by_ref")
	bucketByStatus    = []byte("customers_by_status")
	customerSchemaV1  = Schema{Name: "customer", Version: 1, Buckets: [][]byte{bucketCustomers, bucketByRef, bucketByStatus}}
	testOptions       = Options{NoSync: true}
	errMigrationTest  = errors.New("migration failed on purpose")
	allPlatformBucket = append(platformBuckets(), bucketMeta)
)

// openTest opens a store in the test's temporary directory and closes it at
// the end of the test.
func openTest(t testing.TB, path string, s Schema) *DB {
	t.Helper()
	db, err := Open(path, s, testOptions)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestOpenCreatesStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customer.db")
	db := openTest(t, path, customerSchemaV1)

	if db.Path() != path || db.Name() != "customer" || db.Bolt() == nil {
		t.Fatalf("accessors: path %q name %q bolt %v", db.Path(), db.Name(), db.Bolt())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("file mode = %o, want 600", mode)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		for _, name := range append(allPlatformBucket, customerSchemaV1.Buckets...) {
			if tx.Bucket(name) == nil {
				t.Errorf("bucket %q missing", name)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if got := string(meta.Get(metaKeyName)); got != "customer" {
			t.Errorf("meta name = %q", got)
		}
		if got := meta.Get(metaKeyVersion); !bytes.Equal(got, Uint64Key(1)) {
			t.Errorf("meta version = %x", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejects(t *testing.T) {
	tests := []struct {
		name string
		// prepare writes the file the test then opens with open.
		prepare func(t *testing.T, path string)
		open    Schema
		opts    Options
		wantIs  error
		wantMsg string
	}{
		{
			name:    "different schema name",
			prepare: func(t *testing.T, path string) { mustCreate(t, path, customerSchemaV1) },
			open:    Schema{Name: "order", Version: 1},
			wantIs:  ErrWrongSchema,
			wantMsg: `holds the "customer" schema, not "order"`,
		},
		{
			name: "bbolt file without Millrace metadata",
			prepare: func(t *testing.T, path string) {
				b, err := bbolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := b.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }); err != nil {
					t.Fatal(err)
				}
				_ = b.Close()
			},
			open:    customerSchemaV1,
			wantIs:  ErrWrongSchema,
			wantMsg: "no Millrace schema metadata",
		},
		{
			name:    "read-only open of an older version",
			prepare: func(t *testing.T, path string) { mustCreate(t, path, customerSchemaV1) },
			open:    Schema{Name: "customer", Version: 2, Buckets: customerSchemaV1.Buckets},
			opts:    Options{ReadOnly: true},
			wantIs:  ErrNeedsMigration,
			wantMsg: "open it read-write once to migrate",
		},
		{
			name: "read-only open of an empty file",
			prepare: func(t *testing.T, path string) {
				b, err := bbolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				_ = b.Close()
			},
			open:   customerSchemaV1,
			opts:   Options{ReadOnly: true},
			wantIs: ErrWrongSchema,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "store.db")
			tt.prepare(t, path)
			before := fileSum(t, path)
			db, err := Open(path, tt.open, tt.opts)
			if err == nil {
				_ = db.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v, want errors.Is %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q should name the file and contain %q", err, tt.wantMsg)
			}
			if fileSum(t, path) != before {
				t.Error("refused file was modified")
			}
		})
	}
}

func TestOpenInvalidSchema(t *testing.T) {
	noop := func(*bbolt.Tx) error { return nil }
	tests := []struct {
		name   string
		schema Schema
		want   string
	}{
		{"no name", Schema{Version: 1}, "no name"},
		{"version zero", Schema{Name: "x"}, "at least 1"},
		{"empty bucket", Schema{Name: "x", Version: 1, Buckets: [][]byte{{}}}, "empty bucket"},
		{"reserved prefix", Schema{Name: "x", Version: 1, Buckets: [][]byte{[]byte("_outbox")}}, "reserved"},
		{"duplicate bucket", Schema{Name: "x", Version: 1, Buckets: [][]byte{[]byte("a"), []byte("a")}}, "twice"},
		{"migration to v1", Schema{Name: "x", Version: 2, Migrations: []Migration{{To: 1, Apply: noop}}}, "out of order"},
		{"migration beyond version", Schema{Name: "x", Version: 2, Migrations: []Migration{{To: 3, Apply: noop}}}, "out of order"},
		{"migrations descending", Schema{Name: "x", Version: 3, Migrations: []Migration{{To: 3, Apply: noop}, {To: 2, Apply: noop}}}, "out of order"},
		{"migration without Apply", Schema{Name: "x", Version: 2, Migrations: []Migration{{To: 2}}}, "no Apply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "store.db")
			db, err := Open(path, tt.schema, testOptions)
			if err == nil {
				_ = db.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Error("an invalid schema must not create the file")
			}
		})
	}
}

func mustCreate(t *testing.T, path string, s Schema) {
	t.Helper()
	db, err := Open(path, s, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customer.db")
	v3 := Schema{Name: "customer", Version: 3, Buckets: customerSchemaV1.Buckets}
	db := openTest(t, path, v3)
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketCustomers).Put([]byte("cus_1"), []byte("acme")) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, path)
	info, _ := os.Stat(path)

	for _, opts := range []Options{testOptions, {ReadOnly: true}} {
		t.Run(map[bool]string{false: "read-write", true: "read-only"}[opts.ReadOnly], func(t *testing.T) {
			v2 := Schema{Name: "customer", Version: 2, Buckets: customerSchemaV1.Buckets}
			db, err := Open(path, v2, opts)
			if err == nil {
				_ = db.Close()
				t.Fatal("Open of a newer file succeeded")
			}
			var tooNew *SchemaTooNewError
			if !errors.As(err, &tooNew) {
				t.Fatalf("error %T %v, want *SchemaTooNewError", err, err)
			}
			want := SchemaTooNewError{Path: path, Store: "customer", Found: 3, Supported: 2}
			if *tooNew != want {
				t.Errorf("error fields %+v, want %+v", *tooNew, want)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") || !strings.Contains(msg, path) || !strings.Contains(msg, "v3") || !strings.Contains(msg, "v2") {
				t.Errorf("message should be one line naming the file and both versions: %q", msg)
			}
			if fileSum(t, path) != before {
				t.Error("file was modified")
			}
			after, _ := os.Stat(path)
			if !after.ModTime().Equal(info.ModTime()) {
				t.Error("file modification time changed")
			}
		})
	}
}

func TestMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customer.db")
	db := openTest(t, path, customerSchemaV1)
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCustomers).Put([]byte("cus_1"), []byte("acme"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	bucketByName := []byte("customers_by_name")
	var applied []uint64
	v3 := func(fail bool) Schema {
		return Schema{
			Name:    "customer",
			Version: 3,
			Buckets: append(customerSchemaV1.Buckets[:3:3], bucketByName),
			Migrations: []Migration{
				{To: 2, Apply: func(tx *bbolt.Tx) error {
					applied = append(applied, 2)
					// The new bucket exists before migrations run, so v2 can
					// backfill it from the records.
					idx := tx.Bucket(bucketByName)
					return tx.Bucket(bucketCustomers).ForEach(func(k, v []byte) error {
						return idx.Put(Key(v, k), nil)
					})
				}},
				{To: 3, Apply: func(tx *bbolt.Tx) error {
					applied = append(applied, 3)
					if fail {
						return errMigrationTest
					}
					return nil
				}},
			},
		}
	}

	t.Run("failing migration rolls back everything", func(t *testing.T) {
		_, err := Open(path, v3(true), testOptions)
		if !errors.Is(err, errMigrationTest) {
			t.Fatalf("error %v, want the migration's error", err)
		}
		if !strings.Contains(err.Error(), "v3") {
			t.Errorf("error %q should name the failing migration", err)
		}
		db := openTest(t, path, customerSchemaV1) // still v1: no newer-version refusal
		_ = db.View(func(tx *bbolt.Tx) error {
			if tx.Bucket(bucketByName) != nil {
				t.Error("bucket created by the rolled-back upgrade survived")
			}
			return nil
		})
		_ = db.Close()
	})

	t.Run("applies pending migrations in order once", func(t *testing.T) {
		applied = nil
		db := openTest(t, path, v3(false))
		if want := []uint64{2, 3}; !equalU64(applied, want) {
			t.Fatalf("applied %v, want %v", applied, want)
		}
		_ = db.View(func(tx *bbolt.Tx) error {
			if tx.Bucket(bucketByName).Get(Key([]byte("acme"), []byte("cus_1"))) == nil {
				t.Error("migration v2 did not backfill the index")
			}
			if v := tx.Bucket(bucketMeta).Get(metaKeyVersion); !bytes.Equal(v, Uint64Key(3)) {
				t.Errorf("version after migration = %x", v)
			}
			return nil
		})
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		applied = nil
		db = openTest(t, path, v3(false))
		if len(applied) != 0 {
			t.Errorf("reopen applied %v again", applied)
		}
		_ = db.Close()
	})

	t.Run("new file skips migrations", func(t *testing.T) {
		applied = nil
		openTest(t, filepath.Join(t.TempDir(), "fresh.db"), v3(false))
		if len(applied) != 0 {
			t.Errorf("fresh file ran migrations %v", applied)
		}
	})
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLockContention(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		maxWait time.Duration
	}{
		{"short timeout", Options{LockTimeout: 100 * time.Millisecond}, 900 * time.Millisecond},
		{"default timeout", Options{}, 2500 * time.Millisecond},
		{"read-only against a writer", Options{ReadOnly: true, LockTimeout: 100 * time.Millisecond}, 900 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "customer.db")
			openTest(t, path, customerSchemaV1)

			start := time.Now()
			db, err := Open(path, customerSchemaV1, tt.opts)
			elapsed := time.Since(start)
			if err == nil {
				_ = db.Close()
				t.Fatal("second Open succeeded while the file is held")
			}
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("error %v, want ErrLocked", err)
			}
			if want := "store " + path + " is in use by another process"; err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
			if elapsed > tt.maxWait {
				t.Errorf("took %v to fail, want under %v", elapsed, tt.maxWait)
			}
		})
	}
}

func TestReadOnlyOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "customer.db")
	mustCreate(t, path, customerSchemaV1)

	r1, err := Open(path, customerSchemaV1, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	// Readers share the lock.
	r2, err := Open(path, customerSchemaV1, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if err := r1.Update(func(*bbolt.Tx) error { return nil }); err == nil {
		t.Error("Update on a read-only store succeeded")
	}
}
