package storage

import (
	"bytes"
	"fmt"

	"go.etcd.io/bbolt"
)

// Index is a secondary index kept in its own bucket and written in the same
// transaction as the record it points at, so a reader never sees a record
// without its index entries or an entry for a record that is gone.
//
// A unique index maps an index key to one primary key (for example an
// external ref to a customer id). A non-unique index stores one entry per
// record, keyed by the index key followed by the primary key, so many records
// can share an index key and lists page through it in key order without a
// full scan. Non-unique index keys must be composite keys built with Key or
// KeyStrings; that is what makes Scan's prefixes select whole parts.
//
// The bucket must be declared in the store's Schema.
type Index struct {
	Bucket []byte
	Unique bool
}

// UniqueViolationError reports an index key already held by another record.
// It names the holder so the caller can answer "already exists: <id>".
type UniqueViolationError struct {
	Index  []byte
	Key    []byte
	Holder []byte
}

// Error names the index, the contested key and its current holder.
func (e *UniqueViolationError) Error() string {
	return fmt.Sprintf("unique index %s: key %q is already held by %q", e.Index, e.Key, e.Holder)
}

func (ix Index) bucket(tx *bbolt.Tx) (*bbolt.Bucket, error) {
	b := tx.Bucket(ix.Bucket)
	if b == nil {
		return nil, fmt.Errorf("storage: index bucket %q is not declared in the schema", ix.Bucket)
	}
	return b, nil
}

func (ix Index) check(indexKey, pk []byte) error {
	if len(indexKey) == 0 || len(pk) == 0 {
		return fmt.Errorf("storage: index %s: empty index key or primary key", ix.Bucket)
	}
	if !ix.Unique {
		if _, err := SplitKey(indexKey); err != nil {
			return fmt.Errorf("storage: index %s: index key is not a composite key: %w", ix.Bucket, err)
		}
	}
	return nil
}

// Put records that the record pk has index key indexKey. On a unique index a
// key held by a different record is a *UniqueViolationError; the same record
// again is a no-op, so a retried write succeeds. An entry already there is
// not written again: a write, even of the same bytes, would make bbolt copy
// and rewrite the page holding it at commit.
func (ix Index) Put(tx *bbolt.Tx, indexKey, pk []byte) error {
	if err := ix.check(indexKey, pk); err != nil {
		return err
	}
	b, err := ix.bucket(tx)
	if err != nil {
		return err
	}
	if !ix.Unique {
		k := entryKey(indexKey, pk)
		if found, _ := b.Cursor().Seek(k); bytes.Equal(found, k) {
			return nil
		}
		return b.Put(k, nil)
	}
	if holder := b.Get(indexKey); holder != nil {
		if bytes.Equal(holder, pk) {
			return nil
		}
		return &UniqueViolationError{
			Index:  bytes.Clone(ix.Bucket),
			Key:    bytes.Clone(indexKey),
			Holder: bytes.Clone(holder),
		}
	}
	return b.Put(indexKey, pk)
}

// Delete removes the entry for record pk under indexKey. On a unique index
// the entry is removed only while pk holds it, so a late delete from a stale
// record never drops another record's claim. Deleting an absent entry is not
// an error.
func (ix Index) Delete(tx *bbolt.Tx, indexKey, pk []byte) error {
	if err := ix.check(indexKey, pk); err != nil {
		return err
	}
	b, err := ix.bucket(tx)
	if err != nil {
		return err
	}
	if !ix.Unique {
		return b.Delete(entryKey(indexKey, pk))
	}
	if bytes.Equal(b.Get(indexKey), pk) {
		return b.Delete(indexKey)
	}
	return nil
}

// Lookup returns the record holding indexKey on a unique index. The returned
// slice is a copy and stays valid after the transaction.
func (ix Index) Lookup(tx *bbolt.Tx, indexKey []byte) (pk []byte, ok bool) {
	if !ix.Unique || len(indexKey) == 0 {
		return nil, false
	}
	b := tx.Bucket(ix.Bucket)
	if b == nil {
		return nil, false
	}
	v := b.Get(indexKey)
	if v == nil {
		return nil, false
	}
	return bytes.Clone(v), true
}

// Scan calls fn for entries of a non-unique index whose index key starts
// with prefix, in index-key then primary-key order, until fn returns false
// or limit entries were visited (limit <= 0 means no limit).
//
// afterPK resumes a page: when prefix is a whole index key (all orders with
// one status, say) and afterPK is the last primary key of the previous page,
// the scan starts just after it. Where prefix covers several index keys, use
// ScanAfter with the last entry's index key as well.
//
// The slices passed to fn are copies and may be kept.
func (ix Index) Scan(tx *bbolt.Tx, prefix, afterPK []byte, limit int, fn func(indexKey, pk []byte) bool) error {
	return ix.ScanAfter(tx, prefix, prefix, afterPK, limit, fn)
}

// ScanAfter is Scan resuming strictly after the entry (afterKey, afterPK),
// the position a page token records when one page spans several index keys.
// A nil afterPK starts at the beginning of the prefix.
func (ix Index) ScanAfter(tx *bbolt.Tx, prefix, afterKey, afterPK []byte, limit int, fn func(indexKey, pk []byte) bool) error {
	if ix.Unique {
		return fmt.Errorf("storage: index %s: Scan needs a non-unique index", ix.Bucket)
	}
	b, err := ix.bucket(tx)
	if err != nil {
		return err
	}
	seek := prefix
	var skip []byte
	if afterPK != nil {
		skip = entryKey(afterKey, afterPK)
		if bytes.Compare(skip, prefix) > 0 {
			seek = skip
		}
	}
	c := b.Cursor()
	n := 0
	for k, _ := c.Seek(seek); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if skip != nil && bytes.Equal(k, skip) {
			continue
		}
		if limit > 0 && n >= limit {
			return nil
		}
		head, pk, err := lastPart(bytes.Clone(k))
		if err != nil {
			return fmt.Errorf("storage: index %s: corrupt entry %q: %w", ix.Bucket, k, err)
		}
		n++
		if !fn(head, pk) {
			return nil
		}
	}
	return nil
}

// UpdateIndex moves record pk's entry from oldKey to newKey when an indexed
// field changes. A nil oldKey only adds, a nil newKey only removes, and equal
// keys change nothing. The new entry is written first so that a unique
// violation leaves the old entry in place for the caller's rollback.
func UpdateIndex(tx *bbolt.Tx, ix Index, oldKey, newKey, pk []byte) error {
	if bytes.Equal(oldKey, newKey) {
		return nil
	}
	if newKey != nil {
		if err := ix.Put(tx, newKey, pk); err != nil {
			return err
		}
	}
	if oldKey != nil {
		return ix.Delete(tx, oldKey, pk)
	}
	return nil
}

// entryKey is the key of a non-unique index entry: the index key followed by
// the primary key as one more composite part.
func entryKey(indexKey, pk []byte) []byte {
	out := make([]byte, 0, len(indexKey)+len(pk)+2)
	out = append(out, indexKey...)
	return appendPart(out, pk)
}
