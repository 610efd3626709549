package fulfillment

import (
	"errors"
	"fmt"
	"testing"
	"time"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/reqctx"
)

// An event is appended in the transaction of its change: both commit or
// neither does, and Notify runs only after a commit that appended one.
func TestEventsCommitWithTheirChange(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name       string
		fail       error
		wantEvents int
	}{
		{"a failed transaction keeps neither", errBoom, 0},
		{"a committed one keeps both", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.site("plant-lyon", "eu")
			before, notified := f.snapshot(), f.notified.Load()
			err := f.core().repo.update(f.ctx, func(tx txn) error {
				b := &balance{SiteID: "plant-lyon", SKU: "VALVE-100", Unit: "EA", OnHand: "7", Reserved: "0", UpdateTime: t0}
				if err := tx.putBalance(b); err != nil {
					return err
				}
				if err := emitInventory(tx, b, "eu", fulfillmentv1.LedgerReason_LEDGER_REASON_ADJUSTMENT, t0); err != nil {
					return err
				}
				return tt.fail
			})
			if !errors.Is(err, tt.fail) {
				t.Fatalf("update = %v", err)
			}
			if got := len(f.outbox()); got != tt.wantEvents {
				t.Errorf("%d events in the outbox, want %d", got, tt.wantEvents)
			}
			if tt.fail != nil {
				f.assertUnchanged(before)
			} else if f.balance("plant-lyon", "VALVE-100")[0] != "7" {
				t.Error("the balance was not written")
			}
			if got := f.notified.Load() - notified; got != int32(tt.wantEvents) {
				t.Errorf("Notify called %d times, want %d", got, tt.wantEvents)
			}
		})
	}
}

// Envelopes carry the request's correlation id and a gap-free sequence per
// aggregate.
func TestEventEnvelopes(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.ctx = reqctx.WithCorrelationID(f.ctx, "corr-42")
	f.receive("plant-lyon", "VALVE-100", "1", "EA")
	f.receive("plant-lyon", "VALVE-100", "1", "EA")
	f.receive("plant-ohio", "VALVE-100", "1", "EA")
	var got []string
	for _, e := range f.outbox() {
		if e.GetCorrelationId() != "corr-42" || e.GetSpecVersion() != "1.0" {
			t.Errorf("envelope %v", e)
		}
		bal := unpack[*eventsv1.InventoryChanged](t, e).GetBalance()
		got = append(got, fmt.Sprintf("%s#%d=%s", e.GetSubject(), e.GetSequence(), bal.GetOnHand().GetValue()))
	}
	want := []string{"inventory/plant-lyon:VALVE-100#1=1", "inventory/plant-lyon:VALVE-100#2=2", "inventory/plant-ohio:VALVE-100#1=1"}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %s, want %s", i, got[i], want[i])
		}
	}
}

// A split reservation holds stock at each site, and each site ships its
// own part.
func TestShipSplitReservation(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	f.receive("wh-rotterdam", "VALVE-100", "10", "EA")
	f.orders.put("ord_1", "cus_1", "eu", "EUR", [3]string{"VALVE-100", "EA", "1"})
	r := f.reserve(hard, "ord_1", "eu", time.Time{}, true, line("VALVE-100", "15", "EA")).GetReservation()
	if len(r.GetLines()) != 2 {
		t.Fatalf("reservation %v, want two sites", r)
	}
	if _, err := f.createShipment("ord_1", "wh-rotterdam", sline(0, "VALVE-100", "6", "EA")); err == nil {
		t.Fatal("shipped 6 from a site holding 5")
	}
	f.ship("ord_1", "wh-rotterdam", sline(0, "VALVE-100", "5", "EA"))
	f.ship("ord_1", "plant-lyon", sline(0, "VALVE-100", "10", "EA"))
	if st := f.reservationStatus(r.GetId()); st != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_CONSUMED {
		t.Errorf("reservation %s, want consumed", st)
	}
	if a, b := f.balance("plant-lyon", "VALVE-100"), f.balance("wh-rotterdam", "VALVE-100"); a[0] != "0" || b[0] != "5" || a[1] != "0" || b[1] != "0" {
		t.Errorf("balances %v %v", a, b)
	}
}
