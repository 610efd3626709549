package fulfillment

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
)

func TestHardReservationIsIdempotentByReference(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "10", "EA")

	n := len(f.outbox())
	first := f.hardReserve("ord_1", "eu", line("VALVE-100", "5", "EA"))
	if got := eventTypes(f.eventsSince(n)); !slices.Equal(got, []string{"millrace.events.v1.InventoryChanged"}) {
		t.Errorf("events %v", got)
	}
	tests := []struct {
		name  string
		lines []*fulfillmentv1.AvailabilityLine
	}{
		{"the same request again", []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "5", "EA")}},
		{"a different basket under the same order", []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "CASE")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.snapshot()
			again := f.reserve(hard, "ord_1", "eu", time.Time{}, false, tt.lines...)
			if again.GetReservation().GetId() != first.GetId() {
				t.Fatalf("second call made reservation %s, want %s", again.GetReservation().GetId(), first.GetId())
			}
			if l := again.GetLines(); len(l) != 1 || !l[0].GetCovered() || l[0].GetBaseQuantity().GetValue() != "5" ||
				l[0].GetSources()[0].GetSiteId() != "plant-lyon" || !l[0].GetPromisedTime().AsTime().Equal(day(1)) {
				t.Errorf("lines of the repeat %v", l)
			}
			f.assertUnchanged(before)
		})
	}
	if got, want := f.balance("plant-lyon", "VALVE-100"), [4]string{"10", "5", "0", "5"}; got != want {
		t.Errorf("balance %v, want %v", got, want)
	}
	t.Run("a released order is not reserved again", func(t *testing.T) {
		if _, err := f.core().releaseReservation(f.ctx, f.p, first.GetId()); err != nil {
			t.Fatal(err)
		}
		again := f.reserve(hard, "ord_1", "eu", time.Time{}, false, line("VALVE-100", "5", "EA"))
		if r := again.GetReservation(); r.GetId() != first.GetId() || r.GetStatus() != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_RELEASED {
			t.Errorf("reservation %v, want the released %s", r, first.GetId())
		}
		if got, want := f.balance("plant-lyon", "VALVE-100"), [4]string{"10", "0", "0", "10"}; got != want {
			t.Errorf("balance %v, want %v", got, want)
		}
	})
}

// When a line cannot be covered nothing is reserved: the caller gets the
// availability of every line and puts the order on hold.
func TestReservationAllOrNothing(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	f.receive("plant-lyon", "RESIN-5", "1", "KG")
	before := f.snapshot()
	resp := f.reserve(hard, "ord_short", "eu", time.Time{}, false, line("VALVE-100", "5", "EA"), line("RESIN-5", "2", "KG"), line("NOPE-1", "1", "EA"))
	if resp.GetReservation() != nil {
		t.Fatalf("reserved %v", resp.GetReservation())
	}
	var got []string
	for _, l := range resp.GetLines() {
		got = append(got, fmt.Sprintf("%v/%s", l.GetCovered(), l.GetReason()))
	}
	if want := []string{"true/", "false/SHORT", "false/UNKNOWN_PRODUCT"}; !slices.Equal(got, want) {
		t.Errorf("lines %v, want %v", got, want)
	}
	f.assertUnchanged(before)
}

func TestCreateReservationFailures(t *testing.T) {
	naKey := erpKey
	naKey.Region = "na"
	req := func(kind fulfillmentv1.ReservationKind, ref string, expire *timestamppb.Timestamp) *fulfillmentv1.CreateReservationRequest {
		return &fulfillmentv1.CreateReservationRequest{Kind: kind, ReferenceId: ref, ShipToRegion: "eu", ExpireTime: expire,
			Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "EA")}}
	}
	tests := []struct {
		name   string
		p      auth.Principal
		req    *fulfillmentv1.CreateReservationRequest
		code   codes.Code
		reason string
		field  string
	}{
		{"a soft hold without expiry", erpKey, req(soft, "quo_1", nil), codes.InvalidArgument, apierr.ReasonInvalidArgument, "expire_time"},
		{"a soft hold expiring now", erpKey, req(soft, "quo_1", timestamppb.New(t0)), codes.InvalidArgument, apierr.ReasonInvalidArgument, "expire_time"},
		{"a soft hold for years", erpKey, req(soft, "quo_1", timestamppb.New(day(800))), codes.InvalidArgument, apierr.ReasonInvalidArgument, "expire_time"},
		{"a hard reservation with expiry", erpKey, req(hard, "ord_1", timestamppb.New(day(1))), codes.InvalidArgument, apierr.ReasonInvalidArgument, "expire_time"},
		{"no kind", erpKey, req(0, "ord_1", nil), codes.InvalidArgument, apierr.ReasonInvalidArgument, "kind"},
		{"a reference held by a soft hold", erpKey, req(hard, "quo_taken", nil), codes.AlreadyExists, ReasonReservationRefTaken, "reference_id"},
		{"outside the key's region", naKey, req(hard, "ord_1", nil), codes.PermissionDenied, ReasonRegionOutOfScope, "ship_to_region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			threeSites(f)
			f.receive("plant-lyon", "VALVE-100", "10", "EA")
			f.reserve(soft, "quo_taken", "eu", day(1), false, line("VALVE-100", "1", "EA"))
			before := f.snapshot()
			_, err := f.core().createReservation(f.ctx, tt.p, tt.req)
			wantErr(t, domainErr(err), tt.code, tt.reason, tt.field)
			f.assertUnchanged(before)
		})
	}
}

func TestReleaseReservation(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	r := f.hardReserve("ord_1", "eu", line("VALVE-100", "4", "EA"))
	hold := f.reserve(soft, "quo_1", "eu", t0.Add(time.Hour), false, line("VALVE-100", "3", "EA")).GetReservation()
	if got, want := f.balance("plant-lyon", "VALVE-100"), [4]string{"10", "4", "3", "3"}; got != want {
		t.Fatalf("balance %v, want %v", got, want)
	}
	tests := []struct {
		name    string
		id      string
		at      time.Time
		status  fulfillmentv1.ReservationStatus
		balance [4]string
		events  []string
	}{
		{"a hard reservation frees its stock", r.GetId(), t0, fulfillmentv1.ReservationStatus_RESERVATION_STATUS_RELEASED,
			[4]string{"10", "0", "3", "7"}, []string{"millrace.events.v1.InventoryChanged"}},
		{"releasing twice changes nothing", r.GetId(), t0, fulfillmentv1.ReservationStatus_RESERVATION_STATUS_RELEASED,
			[4]string{"10", "0", "3", "7"}, nil},
		{"a soft hold released after its expiry expired", hold.GetId(), t0.Add(2 * time.Hour), fulfillmentv1.ReservationStatus_RESERVATION_STATUS_EXPIRED,
			[4]string{"10", "0", "0", "10"}, []string{"millrace.events.v1.InventoryChanged", "millrace.events.v1.ReservationExpired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Set(tt.at)
			n := len(f.outbox())
			got, err := f.core().releaseReservation(f.ctx, f.p, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if got.GetStatus() != tt.status {
				t.Errorf("status %s, want %s", got.GetStatus(), tt.status)
			}
			if b := f.balance("plant-lyon", "VALVE-100"); b != tt.balance {
				t.Errorf("balance %v, want %v", b, tt.balance)
			}
			if ev := eventTypes(f.eventsSince(n)); !slices.Equal(ev, tt.events) {
				t.Errorf("events %v, want %v", ev, tt.events)
			}
		})
	}
	t.Run("unknown reservation", func(t *testing.T) {
		_, err := f.core().releaseReservation(f.ctx, f.p, "res_nope")
		wantErr(t, domainErr(err), codes.NotFound, apierr.ReasonNotFound, "")
	})
	t.Run("another region's reservation", func(t *testing.T) {
		naKey := erpKey
		naKey.Region = "na"
		_, err := f.core().releaseReservation(f.ctx, naKey, r.GetId())
		wantErr(t, domainErr(err), codes.NotFound, apierr.ReasonNotFound, "")
	})
}

// A quote may hold stock again once its hold has ended; while the hold is
// live a repeat returns it.
func TestSoftHoldAgainAfterExpiry(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	first := f.reserve(soft, "quo_1", "eu", t0.Add(time.Hour), false, line("VALVE-100", "8", "EA")).GetReservation()
	if again := f.reserve(soft, "quo_1", "eu", t0.Add(2*time.Hour), false, line("VALVE-100", "8", "EA")).GetReservation(); again.GetId() != first.GetId() {
		t.Fatalf("a live hold was placed twice: %s, %s", first.GetId(), again.GetId())
	}
	f.clock.Set(t0.Add(90 * time.Minute))
	n := len(f.outbox())
	second := f.reserve(soft, "quo_1", "eu", t0.Add(3*time.Hour), false, line("VALVE-100", "8", "EA")).GetReservation()
	if second.GetId() == first.GetId() || second.GetStatus() != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE {
		t.Fatalf("new hold %v", second)
	}
	if got := eventTypes(f.eventsSince(n)); !slices.Contains(got, "millrace.events.v1.ReservationExpired") {
		t.Errorf("the old hold's expiry was not announced: %v", got)
	}
	if got, want := f.balance("plant-lyon", "VALVE-100"), [4]string{"10", "0", "8", "2"}; got != want {
		t.Errorf("balance %v, want %v (the old hold freed, the new one held)", got, want)
	}
	// Run finds nothing left to expire: the old hold left the queue.
	if n, err := f.core().expireDue(f.ctx); err != nil || n != 0 {
		t.Errorf("expireDue = %d, %v", n, err)
	}
}

// Run expires soft holds whose time is up, in chunks, once each.
func TestRunExpiresSoftHolds(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "500", "EA")
	const holds = expiryChunk + 30
	var ids []string
	for i := range holds {
		r := f.reserve(soft, fmt.Sprintf("quo_%03d", i), "eu", t0.Add(time.Duration(i+1)*time.Second), false, line("VALVE-100", "1", "EA")).GetReservation()
		ids = append(ids, r.GetId())
	}
	live := f.reserve(soft, "quo_live", "eu", day(1), false, line("VALVE-100", "2", "EA")).GetReservation()
	f.srv.expiryEvery = 5 * time.Millisecond
	f.clock.Set(t0.Add(time.Hour))
	n := len(f.outbox())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if f.reservationStatus(ids[len(ids)-1]) == fulfillmentv1.ReservationStatus_RESERVATION_STATUS_EXPIRED {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not expire the holds")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // a few more passes: nothing may expire twice
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}

	expired := map[string]int{}
	for _, e := range f.eventsSince(n) {
		if e.GetType() == "millrace.events.v1.ReservationExpired" {
			r := unpack[*eventsv1.ReservationExpired](t, e).GetReservation()
			expired[r.GetId()]++
			if r.GetStatus() != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_EXPIRED || e.GetRegion() != "eu" || e.GetSubject() != "reservations/"+r.GetId() {
				t.Errorf("event %v", e)
			}
		}
	}
	if len(expired) != holds {
		t.Errorf("%d holds expired, want %d", len(expired), holds)
	}
	for id, c := range expired {
		if c != 1 {
			t.Errorf("hold %s expired %d times", id, c)
		}
	}
	if expired[live.GetId()] != 0 {
		t.Error("a live hold expired")
	}
	if got, want := f.balance("plant-lyon", "VALVE-100"), [4]string{"500", "0", "2", "498"}; got != want {
		t.Errorf("balance %v, want %v", got, want)
	}
}

// reservationStatus reads a reservation's status without changing it.
func (f *fixture) reservationStatus(id string) fulfillmentv1.ReservationStatus {
	f.t.Helper()
	var st fulfillmentv1.ReservationStatus
	err := f.core().repo.view(f.ctx, func(tx txn) error {
		r, err := tx.reservation(id)
		if r != nil {
			st = r.Status
		}
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}
