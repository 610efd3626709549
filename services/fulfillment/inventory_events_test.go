package fulfillment

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/money"
)

// inventoryEvents returns the InventoryChanged events about one balance
// in the outbox, in commit order.
func (f *fixture) inventoryEvents(siteID, sku string) []*eventsv1.Envelope {
	var out []*eventsv1.Envelope
	for _, e := range f.outbox() {
		if e.GetSubject() == inventorySubject(siteID, sku) {
			out = append(out, e)
		}
	}
	return out
}

// Changes of one balance for one reason that commit in one transaction
// are reported once, with the balance after the last; a change for
// another reason, or of another balance, is an event of its own, and the
// balance's events stay gap-free and in commit order.
func TestInventoryChangesCommittedTogetherAreOneEvent(t *testing.T) {
	f := newFixture(t)
	f.site("plant-lyon", "eu")
	f.site("wh-rotterdam", "eu")
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	f.receive("wh-rotterdam", "VALVE-100", "10", "EA")
	before := len(f.inventoryEvents("plant-lyon", "VALVE-100"))
	st := f.core().repo.(*store)

	reserve := fulfillmentv1.LedgerReason_LEDGER_REASON_RESERVATION
	ship := fulfillmentv1.LedgerReason_LEDGER_REASON_SHIPMENT
	err := st.update(f.ctx, func(tx txn) error {
		change := func(siteID, onHand, reserved string, why fulfillmentv1.LedgerReason) error {
			b, err := tx.balance(siteID, "VALVE-100")
			if err != nil {
				return err
			}
			b.OnHand, b.Reserved, b.UpdateTime = onHand, reserved, time.Now()
			if err := tx.putBalance(b); err != nil {
				return err
			}
			return emitInventory(tx, b, "eu", why, time.Now())
		}
		for _, c := range []struct {
			site, onHand, reserved string
			why                    fulfillmentv1.LedgerReason
		}{
			{"plant-lyon", "10", "1", reserve},
			{"plant-lyon", "10", "2", reserve}, // supersedes the one before
			{"wh-rotterdam", "10", "4", reserve},
			{"plant-lyon", "10", "3", reserve}, // still Lyon's latest event
			{"plant-lyon", "9", "2", ship},     // another reason: its own event
			{"plant-lyon", "8", "1", ship},
			{"plant-lyon", "8", "5", reserve}, // not superseding the first: a ship came between
		} {
			if err := change(c.site, c.onHand, c.reserved, c.why); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var got []string
	for i, e := range f.inventoryEvents("plant-lyon", "VALVE-100")[before:] {
		ic := unpack[*eventsv1.InventoryChanged](t, e)
		got = append(got, fmt.Sprintf("#%d %s on_hand=%s reserved=%s", e.GetSequence(), ic.GetReason(), ic.GetBalance().GetOnHand().GetValue(), ic.GetBalance().GetReserved().GetValue()))
		if want := uint64(before + i + 1); e.GetSequence() != want {
			t.Errorf("event %d has sequence %d, want %d", i, e.GetSequence(), want)
		}
	}
	want := []string{
		fmt.Sprintf("#%d LEDGER_REASON_RESERVATION on_hand=10 reserved=3", before+1),
		fmt.Sprintf("#%d LEDGER_REASON_SHIPMENT on_hand=8 reserved=1", before+2),
		fmt.Sprintf("#%d LEDGER_REASON_RESERVATION on_hand=8 reserved=5", before+3),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Lyon's events\n  %v\nwant\n  %v", got, want)
	}
	if n := len(f.inventoryEvents("wh-rotterdam", "VALVE-100")); n != 2 {
		t.Errorf("Rotterdam has %d events, want its receipt and its reservation", n)
	}
	// The next transaction starts afresh: its change is an event of its own.
	f.receive("plant-lyon", "VALVE-100", "1", "EA")
	if n := len(f.inventoryEvents("plant-lyon", "VALVE-100")); n != before+4 {
		t.Errorf("after a receipt in a new transaction: %d events, want %d", n, before+4)
	}
}

// A function that fails takes its events with it: the functions run again
// after it do not supersede an event that was rolled back.
func TestFailedWriteForgetsItsInventoryEvents(t *testing.T) {
	f := newFixture(t)
	f.site("plant-lyon", "eu")
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	st := f.core().repo.(*store)
	boom := errors.New("boom")
	err := st.update(f.ctx, func(tx txn) error {
		b, err := tx.balance("plant-lyon", "VALVE-100")
		if err != nil {
			return err
		}
		b.Reserved = "1"
		if err := emitInventory(tx, b, "eu", fulfillmentv1.LedgerReason_LEDGER_REASON_RESERVATION, time.Now()); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update = %v, want boom", err)
	}
	f.reserve(hard, "ord_1", "eu", time.Time{}, false, line("VALVE-100", "2", "EA"))
	evs := f.inventoryEvents("plant-lyon", "VALVE-100")
	if len(evs) != 2 {
		t.Fatalf("%d events, want the receipt's and the reservation's", len(evs))
	}
	if ic := unpack[*eventsv1.InventoryChanged](t, evs[1]); ic.GetBalance().GetReserved().GetValue() != "2" || evs[1].GetSequence() != 2 {
		t.Errorf("reservation event #%d %v, want #2 with 2 reserved", evs[1].GetSequence(), ic)
	}
}

// Many reservations of one balance at once: however the group commits
// formed, the balance's events are gap-free, each reports more reserved
// than the one before, there is at most one per reservation, and the last
// reports the final balance.
func TestConcurrentReservationsReportTheFinalBalance(t *testing.T) {
	f := newFixture(t)
	f.site("plant-lyon", "eu")
	f.receive("plant-lyon", "VALVE-100", "100", "EA")
	before := len(f.inventoryEvents("plant-lyon", "VALVE-100"))
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := f.core().createReservation(f.ctx, f.p, &fulfillmentv1.CreateReservationRequest{
				Kind: hard, ReferenceId: fmt.Sprintf("ord_%d", i), ShipToRegion: "eu", Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "EA")},
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	evs := f.inventoryEvents("plant-lyon", "VALVE-100")[before:]
	if len(evs) == 0 || len(evs) > n {
		t.Fatalf("%d events for %d reservations", len(evs), n)
	}
	last := money.Zero()
	for i, e := range evs {
		if want := uint64(before + i + 1); e.GetSequence() != want {
			t.Errorf("event %d has sequence %d, want %d", i, e.GetSequence(), want)
		}
		r := money.MustParse(unpack[*eventsv1.InventoryChanged](t, e).GetBalance().GetReserved().GetValue())
		if r.Cmp(last) <= 0 {
			t.Errorf("event %d reports %s reserved after %s", i, r, last)
		}
		last = r
	}
	if last.Cmp(money.MustParse(fmt.Sprint(n))) != 0 {
		t.Errorf("the last event reports %s reserved, want %d", last, n)
	}
	t.Logf("%d reservations, %d InventoryChanged events", n, len(evs))
}
