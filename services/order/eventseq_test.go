package order

import (
	"encoding/json"
	"fmt"
	"testing"

	"go.etcd.io/bbolt"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"github.com/millrace/millrace/internal/storage"
)

// orderSequences returns the subject sequences of an order's events in the
// outbox, in commit order.
func (h *harness) orderSequences(id string) []uint64 {
	var out []uint64
	for _, env := range h.outbox() {
		if env.GetSubject() == orderSubject(id) {
			out = append(out, env.GetSequence())
		}
	}
	return out
}

func (h *harness) storedEventSeq(id string) (state, counter uint64) {
	h.t.Helper()
	if err := h.db.View(func(tx *bbolt.Tx) error {
		var st orderState
		if err := json.Unmarshal(tx.Bucket(bucketOrderState).Get([]byte(id)), &st); err != nil {
			return err
		}
		state, counter = st.EventSeq, storage.AggregateSeq(tx, orderSubject(id))
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return state, counter
}

// An order numbers its events itself, in the state it writes with every
// change: gap-free from 1 in commit order, and the store's per-subject
// counter is never touched for it.
func TestOrderEventsAreNumberedFromTheOrdersState(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "2", "EA")))
	if o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED {
		t.Fatalf("order %v, want accepted", o.GetStatus())
	}
	if _, err := h.client.CancelOrder(erp, &orderv1.CancelOrderRequest{Id: o.GetId(), Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	seqs := h.orderSequences(o.GetId())
	if len(seqs) < 4 {
		t.Fatalf("order events %v, want at least created, accepted and cancelled", seqs)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("order event sequences %v, want 1..%d", seqs, len(seqs))
		}
	}
	state, counter := h.storedEventSeq(o.GetId())
	if state != uint64(len(seqs)) || counter != 0 {
		t.Errorf("stored: state %d, counter %d; want state %d and the counter untouched", state, counter, len(seqs))
	}
}

// An order stored before orders numbered their own events (its state has no
// sequence, the store's counter has it) goes on from the counter.
func TestOrderEventsGoOnFromTheStoresCounter(t *testing.T) {
	h := newHarness(t)
	id := h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "2", "EA"))).GetId()
	before := len(h.orderSequences(id))
	// As a store written by an earlier build would hold it: the counter
	// at 7, no sequence in the state.
	if err := h.db.Update(func(tx *bbolt.Tx) error {
		for range 7 {
			if _, err := storage.NextAggregateSeq(tx, orderSubject(id)); err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketOrderState)
		var st orderState
		if err := json.Unmarshal(b.Get([]byte(id)), &st); err != nil {
			return err
		}
		st.EventSeq = 0
		raw, err := json.Marshal(st)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), raw)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.CancelOrder(erp, &orderv1.CancelOrderRequest{Id: id, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	after := h.orderSequences(id)[before:]
	if len(after) == 0 || fmt.Sprint(after[0]) != "8" {
		t.Fatalf("events after the counter's 7: %v, want them to start at 8", after)
	}
	for i := 1; i < len(after); i++ {
		if after[i] != after[i-1]+1 {
			t.Fatalf("sequences %v are not gap-free", after)
		}
	}
}
