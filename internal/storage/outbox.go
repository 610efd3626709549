package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"
)

// The transactional outbox is how a Millrace state change becomes an event
// without a window for loss: the service appends the encoded event in the
// same transaction as the change, and a relay publishes from the outbox after
// commit. If the process dies in between, the event is still there on
// restart. Publishing is at least once, so consumers de-duplicate with
// MarkProcessed.

// OutboxRecord is one event waiting to be published.
type OutboxRecord struct {
	// Seq is the record's position in commit order; MarkPublished takes it.
	Seq uint64
	// Data is the encoded event, owned by the caller.
	Data []byte
}

// AppendOutbox adds data to the outbox in tx and returns its sequence. The
// sequence comes from the bucket's counter inside the write transaction, and
// write transactions are serialised, so sequence order is commit order even
// under concurrent Batch writers.
func AppendOutbox(tx *bbolt.Tx, data []byte) (seq uint64, err error) {
	b, err := platformBucket(tx, bucketOutbox)
	if err != nil {
		return 0, err
	}
	seq, err = b.NextSequence()
	if err != nil {
		return 0, fmt.Errorf("storage: outbox sequence: %w", err)
	}
	if err := b.Put(Uint64Key(seq), data); err != nil {
		return 0, fmt.Errorf("storage: append outbox: %w", err)
	}
	if err := addOutboxPending(tx, 1); err != nil {
		return 0, err
	}
	return seq, nil
}

// ReplaceOutbox overwrites the record at seq with data. It is for an event
// superseded in the transaction that appended it (events.Supersede): the
// record keeps its place in commit order and the pending count is
// unchanged. A record that is not there is an error.
func ReplaceOutbox(tx *bbolt.Tx, seq uint64, data []byte) error {
	b, err := platformBucket(tx, bucketOutbox)
	if err != nil {
		return err
	}
	k := Uint64Key(seq)
	if b.Get(k) == nil {
		return fmt.Errorf("storage: no outbox record %d to replace", seq)
	}
	if err := b.Put(k, data); err != nil {
		return fmt.Errorf("storage: replace outbox record %d: %w", seq, err)
	}
	return nil
}

// ReadOutbox returns up to limit of the oldest unpublished records in commit
// order (limit <= 0 means all). The data is copied, so the records outlive
// tx, which lets a relay publish outside the transaction.
func ReadOutbox(tx *bbolt.Tx, limit int) ([]OutboxRecord, error) {
	b, err := platformBucket(tx, bucketOutbox)
	if err != nil {
		return nil, err
	}
	var out []OutboxRecord
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if limit > 0 && len(out) >= limit {
			break
		}
		if len(k) != 8 {
			return nil, fmt.Errorf("storage: corrupt outbox key %x", k)
		}
		out = append(out, OutboxRecord{Seq: binary.BigEndian.Uint64(k), Data: bytes.Clone(v)})
	}
	return out, nil
}

// MarkPublished removes published records and raises the recorded
// high-water mark. Sequences already removed are ignored, so a relay that
// retries after a crash can mark the same records again.
func MarkPublished(tx *bbolt.Tx, seqs ...uint64) error {
	b, err := platformBucket(tx, bucketOutbox)
	if err != nil {
		return err
	}
	meta, err := platformBucket(tx, bucketOutboxMeta)
	if err != nil {
		return err
	}
	high := LastPublished(tx)
	removed := 0
	for _, seq := range seqs {
		k := Uint64Key(seq)
		if b.Get(k) == nil {
			continue
		}
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("storage: mark published: %w", err)
		}
		removed++
		high = max(high, seq)
	}
	if removed == 0 {
		return nil
	}
	if err := meta.Put(outboxKeyPublished, Uint64Key(high)); err != nil {
		return err
	}
	return addOutboxPending(tx, -removed)
}

// LastPublished returns the highest sequence ever marked published, zero if
// none. With the outbox's own sequence it gives the relay's lag.
func LastPublished(tx *bbolt.Tx) uint64 {
	return metaUint64(tx, outboxKeyPublished)
}

// OutboxLen returns how many records wait to be published. It reads a
// counter kept with every append and publish, so reporting outbox lag costs
// nothing however far the relay has fallen behind.
func OutboxLen(tx *bbolt.Tx) int {
	return int(metaUint64(tx, outboxKeyPendingSize))
}

func addOutboxPending(tx *bbolt.Tx, delta int) error {
	meta, err := platformBucket(tx, bucketOutboxMeta)
	if err != nil {
		return err
	}
	n := int64(metaUint64(tx, outboxKeyPendingSize)) + int64(delta)
	if n < 0 {
		return errors.New("storage: outbox pending count below zero")
	}
	return meta.Put(outboxKeyPendingSize, Uint64Key(uint64(n)))
}

func metaUint64(tx *bbolt.Tx, key []byte) uint64 {
	b := tx.Bucket(bucketOutboxMeta)
	if b == nil {
		return 0
	}
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// NextAggregateSeq returns the next sequence number for one aggregate
// (an order, a customer), starting at 1. Events carry it so receivers can
// drop an update older than one they already applied; taking it in the same
// transaction as the change keeps it gap-free and in commit order.
func NextAggregateSeq(tx *bbolt.Tx, aggregateKey string) (uint64, error) {
	if aggregateKey == "" {
		return 0, errors.New("storage: empty aggregate key")
	}
	b, err := platformBucket(tx, bucketAggregateSeq)
	if err != nil {
		return 0, err
	}
	n := AggregateSeq(tx, aggregateKey) + 1
	if err := b.Put([]byte(aggregateKey), Uint64Key(n)); err != nil {
		return 0, fmt.Errorf("storage: aggregate sequence: %w", err)
	}
	return n, nil
}

// AggregateSeq returns the last sequence number NextAggregateSeq gave the
// aggregate, zero when none.
func AggregateSeq(tx *bbolt.Tx, aggregateKey string) uint64 {
	b := tx.Bucket(bucketAggregateSeq)
	if b == nil {
		return 0
	}
	if v := b.Get([]byte(aggregateKey)); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// MarkProcessed records that consumer applied event eventID, in the same
// transaction as the consumer's effect. already reports a duplicate
// delivery: the caller must then return without applying the effect again,
// and the transaction changes nothing.
func MarkProcessed(tx *bbolt.Tx, consumer, eventID string, at time.Time) (already bool, err error) {
	if consumer == "" || eventID == "" {
		return false, errors.New("storage: MarkProcessed needs a consumer and an event id")
	}
	b, err := platformBucket(tx, bucketProcessed)
	if err != nil {
		return false, err
	}
	idx, err := platformBucket(tx, bucketProcessedAt)
	if err != nil {
		return false, err
	}
	k := KeyStrings(consumer, eventID)
	if b.Get(k) != nil {
		return true, nil
	}
	ts := Uint64Key(unixNanos(at))
	if err := b.Put(k, ts); err != nil {
		return false, fmt.Errorf("storage: mark processed: %w", err)
	}
	if err := idx.Put(append(ts, k...), nil); err != nil {
		return false, fmt.Errorf("storage: mark processed: %w", err)
	}
	return false, nil
}

// SweepProcessed forgets events processed before olderThan and returns how
// many it removed. It walks the time index from its oldest entry, so it
// touches only what it removes. Keep olderThan well beyond the longest
// redelivery window (the last webhook retry, a replay), or a late duplicate
// would be applied twice.
func SweepProcessed(tx *bbolt.Tx, olderThan time.Time) (int, error) {
	b, err := platformBucket(tx, bucketProcessed)
	if err != nil {
		return 0, err
	}
	idx, err := platformBucket(tx, bucketProcessedAt)
	if err != nil {
		return 0, err
	}
	cutoff := unixNanos(olderThan)
	n := 0
	c := idx.Cursor()
	// Always re-seek the first entry after deleting: the cursor is then
	// never positioned on a key that was removed under it.
	for k, _ := c.First(); k != nil; k, _ = c.First() {
		if len(k) < 8 {
			return n, fmt.Errorf("storage: corrupt processed index key %x", k)
		}
		if binary.BigEndian.Uint64(k[:8]) >= cutoff {
			break
		}
		rec := bytes.Clone(k[8:])
		if err := idx.Delete(k); err != nil {
			return n, err
		}
		if err := b.Delete(rec); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// unixNanos maps t onto the index's unsigned clock; times before 1970 clamp
// to zero because nothing Millrace stores predates it.
func unixNanos(t time.Time) uint64 {
	n := t.UnixNano()
	if n < 0 || t.IsZero() {
		return 0
	}
	return uint64(n)
}

// platformBucket fetches a platform bucket. Open creates them all, so a
// missing one means tx belongs to a file not opened through Open.
func platformBucket(tx *bbolt.Tx, name []byte) (*bbolt.Bucket, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("storage: platform bucket %q missing: open the file with storage.Open", name)
	}
	return b, nil
}
