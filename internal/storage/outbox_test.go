package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

func TestOutbox(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "order.db"), customerSchemaV1)
	appendAll := func(datas ...string) {
		t.Helper()
		err := db.Update(func(tx *bbolt.Tx) error {
			for _, d := range datas {
				if _, err := AppendOutbox(tx, []byte(d)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	read := func(limit int) (recs []OutboxRecord, n int, published uint64) {
		_ = db.View(func(tx *bbolt.Tx) error {
			var err error
			recs, err = ReadOutbox(tx, limit)
			if err != nil {
				t.Fatal(err)
			}
			n, published = OutboxLen(tx), LastPublished(tx)
			return nil
		})
		return recs, n, published
	}

	appendAll("e1", "e2", "e3")
	t.Run("rolled back append leaves nothing", func(t *testing.T) {
		errAbort := errors.New("abort")
		err := db.Update(func(tx *bbolt.Tx) error {
			if _, err := AppendOutbox(tx, []byte("lost")); err != nil {
				return err
			}
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatal(err)
		}
		if _, n, _ := read(0); n != 3 {
			t.Errorf("OutboxLen = %d after rollback, want 3", n)
		}
	})
	appendAll("e4")

	tests := []struct {
		name          string
		markPublished []uint64
		limit         int
		wantData      []string
		wantLen       int
		wantPublished uint64
	}{
		{"all in commit order", nil, 0, []string{"e1", "e2", "e3", "e4"}, 4, 0},
		{"limit returns the oldest", nil, 2, []string{"e1", "e2"}, 4, 0},
		{"published records are gone", []uint64{1, 2}, 0, []string{"e3", "e4"}, 2, 2},
		{"marking again is harmless", []uint64{1, 2}, 0, []string{"e3", "e4"}, 2, 2},
		{"absent sequences do not move the mark", []uint64{99, 3}, 0, []string{"e4"}, 1, 3},
		{"nothing to mark", []uint64{99}, 0, []string{"e4"}, 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.markPublished != nil {
				if err := db.Update(func(tx *bbolt.Tx) error { return MarkPublished(tx, tt.markPublished...) }); err != nil {
					t.Fatal(err)
				}
			}
			recs, n, published := read(tt.limit)
			var got []string
			for _, r := range recs {
				got = append(got, string(r.Data))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantData) || n != tt.wantLen || published != tt.wantPublished {
				t.Errorf("read %v len %d published %d, want %v len %d published %d", got, n, published, tt.wantData, tt.wantLen, tt.wantPublished)
			}
		})
	}
}

// TestOutboxConcurrentBatch runs 64 writers committing through Batch while a
// relay drains the outbox, and checks the relay sees every record exactly
// once, in strictly increasing sequence, each writer's records in the order
// it wrote them.
func TestOutboxConcurrentBatch(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "order.db"), customerSchemaV1)
	const writers, perWriter = 64, 40

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				data := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(w)), uint32(i))
				if err := db.Batch(func(tx *bbolt.Tx) error {
					_, err := AppendOutbox(tx, data)
					return err
				}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	seen := make(map[uint64]bool)
	next := make([]uint32, writers)
	var last uint64
	drain := func() int {
		var recs []OutboxRecord
		if err := db.View(func(tx *bbolt.Tx) (err error) { recs, err = ReadOutbox(tx, 50); return err }); err != nil {
			t.Fatal(err)
		}
		seqs := make([]uint64, 0, len(recs))
		for _, r := range recs {
			if r.Seq <= last {
				t.Fatalf("seq %d after %d", r.Seq, last)
			}
			last = r.Seq
			if seen[r.Seq] {
				t.Fatalf("seq %d read twice", r.Seq)
			}
			seen[r.Seq] = true
			w, i := binary.BigEndian.Uint32(r.Data), binary.BigEndian.Uint32(r.Data[4:])
			if next[w] != i {
				t.Fatalf("writer %d: got record %d, want %d", w, i, next[w])
			}
			next[w]++
			seqs = append(seqs, r.Seq)
		}
		if err := db.Update(func(tx *bbolt.Tx) error { return MarkPublished(tx, seqs...) }); err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	for done := false; !done; {
		select {
		case <-writersDone:
			done = true
		default:
		}
		for drain() > 0 {
		}
	}
	if len(seen) != writers*perWriter {
		t.Errorf("relay saw %d records, want %d", len(seen), writers*perWriter)
	}
	_ = db.View(func(tx *bbolt.Tx) error {
		if n := OutboxLen(tx); n != 0 {
			t.Errorf("OutboxLen = %d after draining", n)
		}
		if p := LastPublished(tx); p != last {
			t.Errorf("LastPublished = %d, want %d", p, last)
		}
		return nil
	})
}

func TestNextAggregateSeq(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "order.db"), customerSchemaV1)
	const goroutines = 32
	var mu sync.Mutex
	got := map[string][]uint64{}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			agg := fmt.Sprintf("ord_%d", g%4)
			var seq uint64
			err := db.Batch(func(tx *bbolt.Tx) (err error) {
				seq, err = NextAggregateSeq(tx, agg)
				return err
			})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[agg] = append(got[agg], seq)
			mu.Unlock()
		})
	}
	wg.Wait()
	for agg, seqs := range got {
		seen := map[uint64]bool{}
		for _, s := range seqs {
			if s < 1 || s > goroutines/4 || seen[s] {
				t.Errorf("%s: sequences %v are not 1..%d without repeats", agg, seqs, goroutines/4)
				break
			}
			seen[s] = true
		}
	}
	err := db.Update(func(tx *bbolt.Tx) error { _, err := NextAggregateSeq(tx, ""); return err })
	if err == nil {
		t.Error("empty aggregate key accepted")
	}
}

func TestMarkProcessed(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "order.db"), customerSchemaV1)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	mark := func(consumer, id string, at time.Time) bool {
		t.Helper()
		var already bool
		if err := db.Update(func(tx *bbolt.Tx) (err error) {
			already, err = MarkProcessed(tx, consumer, id, at)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return already
	}

	steps := []struct {
		name     string
		consumer string
		id       string
		at       time.Time
		want     bool
	}{
		{"first delivery", "order", "evt_1", t0, false},
		{"redelivery", "order", "evt_1", t0.Add(time.Hour), true},
		{"other consumer, same event", "webhooks", "evt_1", t0, false},
		{"later event", "order", "evt_2", t0.Add(48 * time.Hour), false},
		{"parts cannot collide", "order\x00\x01evt", "1", t0, false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if got := mark(s.consumer, s.id, s.at); got != s.want {
				t.Errorf("already = %v, want %v", got, s.want)
			}
		})
	}

	t.Run("sweep forgets old entries only", func(t *testing.T) {
		var n int
		if err := db.Update(func(tx *bbolt.Tx) (err error) {
			n, err = SweepProcessed(tx, t0.Add(24*time.Hour))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Errorf("swept %d, want 3", n)
		}
		if !mark("order", "evt_2", t0) {
			t.Error("recent entry was swept")
		}
		if mark("order", "evt_1", t0) {
			t.Error("old entry survived the sweep")
		}
		_ = db.View(func(tx *bbolt.Tx) error {
			if a, b := tx.Bucket(bucketProcessed).Stats().KeyN, tx.Bucket(bucketProcessedAt).Stats().KeyN; a != 2 || b != 2 {
				t.Errorf("processed %d entries, index %d, want 2 and 2", a, b)
			}
			return nil
		})
	})

	t.Run("rejects empty ids", func(t *testing.T) {
		err := db.Update(func(tx *bbolt.Tx) error { _, err := MarkProcessed(tx, "order", "", t0); return err })
		if err == nil {
			t.Error("empty event id accepted")
		}
	})
}

// ReplaceOutbox overwrites a waiting record in place, pending count
// unchanged, and refuses a sequence that holds no record, writing nothing.
func TestReplaceOutbox(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "order.db"), customerSchemaV1)
	var seqs []uint64
	if err := db.Update(func(tx *bbolt.Tx) error {
		for _, d := range []string{"a", "b"} {
			seq, err := AppendOutbox(tx, []byte(d))
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		return ReplaceOutbox(tx, seqs[0], []byte("a2"))
	}); err != nil {
		t.Fatal(err)
	}
	err := db.Update(func(tx *bbolt.Tx) error { return ReplaceOutbox(tx, seqs[1]+1, []byte("nowhere")) })
	if err == nil {
		t.Fatal("replacing a sequence with no record succeeded")
	}
	if err := db.View(func(tx *bbolt.Tx) error {
		recs, err := ReadOutbox(tx, 0)
		if err != nil {
			return err
		}
		if len(recs) != 2 {
			t.Fatalf("outbox holds %d records after replacing, want 2", len(recs))
		}
		if got := fmt.Sprintf("%d %s %s", OutboxLen(tx), recs[0].Data, recs[1].Data); got != "2 a2 b" {
			t.Errorf("pending count and records after replacing: %q, want 2, a2 then b", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
