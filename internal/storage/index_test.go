package storage

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
)

var (
	byRef    = Index{Bucket: bucketByRef, Unique: true}
	byStatus = Index{Bucket: bucketByStatus}
)

func TestUniqueIndex(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "customer.db"), customerSchemaV1)
	ref := KeyStrings("salesforce", "001A")

	// putCustomer writes a record and its index entry in one transaction,
	// the way a service does.
	putCustomer := func(id string) error {
		return db.Update(func(tx *bbolt.Tx) error {
			if err := tx.Bucket(bucketCustomers).Put([]byte(id), []byte("record")); err != nil {
				return err
			}
			return byRef.Put(tx, ref, []byte(id))
		})
	}
	if err := putCustomer("cus_1"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		id         string
		wantHolder string
	}{
		{"same record again is a no-op", "cus_1", ""},
		{"another record is a violation naming the holder", "cus_2", "cus_1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := putCustomer(tt.id)
			if tt.wantHolder == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var uv *UniqueViolationError
			if !errors.As(err, &uv) {
				t.Fatalf("error %v, want *UniqueViolationError", err)
			}
			if string(uv.Holder) != tt.wantHolder || !bytes.Equal(uv.Key, ref) || !bytes.Equal(uv.Index, bucketByRef) {
				t.Errorf("violation %+v", uv)
			}
			if !strings.Contains(err.Error(), tt.wantHolder) {
				t.Errorf("message %q should name the holder", err)
			}
			_ = db.View(func(tx *bbolt.Tx) error {
				if tx.Bucket(bucketCustomers).Get([]byte(tt.id)) != nil {
					t.Error("record of the failed transaction was written")
				}
				if pk, ok := byRef.Lookup(tx, ref); !ok || string(pk) != tt.wantHolder {
					t.Errorf("Lookup after violation = %q, %v", pk, ok)
				}
				return nil
			})
		})
	}

	t.Run("delete by a non-holder keeps the entry", func(t *testing.T) {
		err := db.Update(func(tx *bbolt.Tx) error { return byRef.Delete(tx, ref, []byte("cus_2")) })
		if err != nil {
			t.Fatal(err)
		}
		_ = db.View(func(tx *bbolt.Tx) error {
			if _, ok := byRef.Lookup(tx, ref); !ok {
				t.Error("entry removed by a record that does not hold it")
			}
			return nil
		})
	})
	t.Run("delete by the holder frees the key", func(t *testing.T) {
		if err := db.Update(func(tx *bbolt.Tx) error { return byRef.Delete(tx, ref, []byte("cus_1")) }); err != nil {
			t.Fatal(err)
		}
		if err := putCustomer("cus_2"); err != nil {
			t.Fatalf("key not free after delete: %v", err)
		}
	})
	t.Run("lookup of an absent key", func(t *testing.T) {
		_ = db.View(func(tx *bbolt.Tx) error {
			if pk, ok := byRef.Lookup(tx, KeyStrings("hubspot", "9")); ok {
				t.Errorf("Lookup of absent key = %q", pk)
			}
			return nil
		})
	})
}

func TestIndexErrors(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "customer.db"), customerSchemaV1)
	undeclared := Index{Bucket: []byte("nope")}
	tests := []struct {
		name string
		fn   func(tx *bbolt.Tx) error
		want string
	}{
		{"undeclared bucket", func(tx *bbolt.Tx) error { return undeclared.Put(tx, KeyStrings("a"), []byte("1")) }, "not declared"},
		{"empty pk", func(tx *bbolt.Tx) error { return byStatus.Put(tx, KeyStrings("a"), nil) }, "empty"},
		{"empty index key", func(tx *bbolt.Tx) error { return byRef.Put(tx, nil, []byte("1")) }, "empty"},
		{"non-unique key not composite", func(tx *bbolt.Tx) error { return byStatus.Put(tx, []byte("raw"), []byte("1")) }, "not a composite key"},
		{"scan on unique index", func(tx *bbolt.Tx) error {
			return byRef.Scan(tx, nil, nil, 0, func(_, _ []byte) bool { return true })
		}, "non-unique"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := db.Update(tt.fn)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestScanPaging(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "customer.db"), customerSchemaV1)
	// 25 ACTIVE and 10 BLOCKED customers in two regions; index key is
	// (status, region).
	var active []string
	err := db.Update(func(tx *bbolt.Tx) error {
		for i := range 35 {
			id := fmt.Sprintf("cus_%03d", i)
			status, region := "ACTIVE", []string{"EU", "US"}[i%2]
			if i >= 25 {
				status = "BLOCKED"
			} else {
				active = append(active, id)
			}
			if err := byStatus.Put(tx, KeyStrings(status, region), []byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	type entry struct{ key, pk string }
	// page collects one page starting after the given entry.
	page := func(prefix []byte, after *entry, limit int) []entry {
		var out []entry
		_ = db.View(func(tx *bbolt.Tx) error {
			fn := func(k, pk []byte) bool { out = append(out, entry{string(k), string(pk)}); return true }
			if after == nil {
				return byStatus.Scan(tx, prefix, nil, limit, fn)
			}
			return byStatus.ScanAfter(tx, prefix, []byte(after.key), []byte(after.pk), limit, fn)
		})
		return out
	}

	t.Run("pages of a whole index key with afterPK", func(t *testing.T) {
		prefix := KeyStrings("ACTIVE", "EU")
		var got []string
		var after []byte
		for pages := 0; ; pages++ {
			var n int
			err := db.View(func(tx *bbolt.Tx) error {
				return byStatus.Scan(tx, prefix, after, 5, func(k, pk []byte) bool {
					if !bytes.Equal(k, prefix) {
						t.Errorf("index key %q outside prefix", k)
					}
					got = append(got, string(pk))
					after = pk
					n++
					return true
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if n < 5 {
				break
			}
			if pages > 10 {
				t.Fatal("paging does not end")
			}
		}
		var want []string
		for i, id := range active {
			if i%2 == 0 {
				want = append(want, id)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("paged %v, want %v", got, want)
		}
	})

	t.Run("pages across index keys with ScanAfter", func(t *testing.T) {
		var got []entry
		var after *entry
		for {
			p := page(KeyStrings("ACTIVE"), after, 4)
			got = append(got, p...)
			if len(p) < 4 {
				break
			}
			after = &p[len(p)-1]
		}
		if len(got) != len(active) {
			t.Fatalf("paged %d entries, want %d", len(got), len(active))
		}
		for i := 1; i < len(got); i++ {
			if bytes.Compare(entryKey([]byte(got[i-1].key), []byte(got[i-1].pk)), entryKey([]byte(got[i].key), []byte(got[i].pk))) >= 0 {
				t.Fatalf("entries out of order at %d: %v %v", i, got[i-1], got[i])
			}
		}
		// EU entries come before US ones: index key order first.
		if got[0].key != string(KeyStrings("ACTIVE", "EU")) || got[len(got)-1].key != string(KeyStrings("ACTIVE", "US")) {
			t.Errorf("first %q last %q", got[0].key, got[len(got)-1].key)
		}
	})

	tests := []struct {
		name   string
		prefix []byte
		after  *entry
		limit  int
		want   int
	}{
		{"whole index", nil, nil, 0, 35},
		{"prefix only", KeyStrings("BLOCKED"), nil, 0, 10},
		{"limit", KeyStrings("BLOCKED"), nil, 3, 3},
		{"absent prefix", KeyStrings("CLOSED"), nil, 0, 0},
		{"after the last entry", KeyStrings("BLOCKED"), &entry{string(KeyStrings("BLOCKED", "US")), "cus_034"}, 0, 0},
		{"after position before the prefix", KeyStrings("BLOCKED"), &entry{string(KeyStrings("ACTIVE", "US")), "cus_000"}, 0, 10},
		{"prefix does not match part prefixes", KeyStrings("ACT"), nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := page(tt.prefix, tt.after, tt.limit); len(got) != tt.want {
				t.Errorf("got %d entries, want %d", len(got), tt.want)
			}
		})
	}

	t.Run("fn stops the scan", func(t *testing.T) {
		n := 0
		_ = db.View(func(tx *bbolt.Tx) error {
			return byStatus.Scan(tx, nil, nil, 0, func(_, _ []byte) bool { n++; return n < 2 })
		})
		if n != 2 {
			t.Errorf("fn called %d times after returning false", n)
		}
	})
}

func TestUpdateIndex(t *testing.T) {
	tests := []struct {
		name      string
		ix        Index
		old, new  []byte
		pk        string
		wantOld   bool
		wantNew   bool
		wantError bool
	}{
		{"move non-unique", byStatus, KeyStrings("ACTIVE"), KeyStrings("BLOCKED"), "cus_1", false, true, false},
		{"add only", byStatus, nil, KeyStrings("BLOCKED"), "cus_1", true, true, false},
		{"remove only", byStatus, KeyStrings("ACTIVE"), nil, "cus_1", false, false, false},
		{"unchanged", byStatus, KeyStrings("ACTIVE"), KeyStrings("ACTIVE"), "cus_1", true, true, false},
		{"move unique", byRef, KeyStrings("sf", "1"), KeyStrings("sf", "2"), "cus_1", false, true, false},
		{"move unique onto a held key", byRef, KeyStrings("sf", "1"), KeyStrings("sf", "taken"), "cus_1", true, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openTest(t, filepath.Join(t.TempDir(), "customer.db"), customerSchemaV1)
			pk := []byte(tt.pk)
			if err := db.Update(func(tx *bbolt.Tx) error {
				if err := byRef.Put(tx, KeyStrings("sf", "taken"), []byte("cus_9")); err != nil {
					return err
				}
				if tt.old != nil {
					return tt.ix.Put(tx, tt.old, pk)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			err := db.Update(func(tx *bbolt.Tx) error { return UpdateIndex(tx, tt.ix, tt.old, tt.new, pk) })
			if (err != nil) != tt.wantError {
				t.Fatalf("UpdateIndex error = %v, want error %v", err, tt.wantError)
			}
			_ = db.View(func(tx *bbolt.Tx) error {
				if tt.old != nil {
					if got := hasEntry(tx, tt.ix, tt.old, pk); got != tt.wantOld {
						t.Errorf("old entry present = %v, want %v", got, tt.wantOld)
					}
				}
				if tt.new != nil {
					if got := hasEntry(tx, tt.ix, tt.new, pk); got != tt.wantNew {
						t.Errorf("new entry present = %v, want %v", got, tt.wantNew)
					}
				}
				return nil
			})
		})
	}
}

func hasEntry(tx *bbolt.Tx, ix Index, key, pk []byte) bool {
	if ix.Unique {
		got, ok := ix.Lookup(tx, key)
		return ok && bytes.Equal(got, pk)
	}
	found := false
	_ = ix.Scan(tx, key, nil, 0, func(k, p []byte) bool {
		found = found || (bytes.Equal(k, key) && bytes.Equal(p, pk))
		return true
	})
	return found
}

// Putting an entry that is already there writes nothing, so the page
// holding it is not rewritten at commit; a new entry is written and found.
func TestIndexPutOfAnExistingEntryWritesNothing(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "customer.db"), customerSchemaV1)
	for _, ix := range []Index{byStatus, byRef} {
		if err := db.Update(func(tx *bbolt.Tx) error { return ix.Put(tx, KeyStrings("ACTIVE"), []byte("cus_1")) }); err != nil {
			t.Fatal(err)
		}
		var nodes int64
		if err := db.Update(func(tx *bbolt.Tx) error {
			if err := ix.Put(tx, KeyStrings("ACTIVE"), []byte("cus_1")); err != nil {
				return err
			}
			st := tx.Stats()
			nodes = st.GetNodeCount()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if nodes != 0 {
			t.Errorf("%s: putting an existing entry again touched %d nodes, want none", ix.Bucket, nodes)
		}
		var found []string
		if err := db.Update(func(tx *bbolt.Tx) error {
			if err := ix.Put(tx, KeyStrings("ACTIVE"), []byte("cus_2")); err != nil && ix.Unique {
				return nil // a unique key held by another record is refused
			} else if err != nil {
				return err
			}
			return ix.Scan(tx, KeyStrings("ACTIVE"), nil, 0, func(_, pk []byte) bool {
				found = append(found, string(pk))
				return true
			})
		}); err != nil {
			t.Fatal(err)
		}
		if !ix.Unique && fmt.Sprint(found) != "[cus_1 cus_2]" {
			t.Errorf("%s: entries %v after adding cus_2, want [cus_1 cus_2]", ix.Bucket, found)
		}
	}
}
