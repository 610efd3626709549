package fulfillment

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
)

// wantSource is one expected supply source: site, quantity, kind, the date
// at the site and the transit days.
type wantSource struct {
	site, qty, kind string
	at              time.Time
	transit         int32
}

type wantLine struct {
	covered  bool
	reason   string
	base     string // base quantity value; "" when not converted
	sources  []wantSource
	promised time.Time
}

func checkLines(t *testing.T, got []*fulfillmentv1.LineAvailability, want []wantLine) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d: %v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.GetIndex() != int32(i) || g.GetCovered() != w.covered || g.GetReason() != w.reason || g.GetBaseQuantity().GetValue() != w.base {
			t.Errorf("line %d: index %d covered %v reason %q base %q; want covered %v reason %q base %q",
				i, g.GetIndex(), g.GetCovered(), g.GetReason(), g.GetBaseQuantity().GetValue(), w.covered, w.reason, w.base)
		}
		var gotSrc []wantSource
		for _, s := range g.GetSources() {
			gotSrc = append(gotSrc, wantSource{site: s.GetSiteId(), qty: s.GetQuantity().GetValue(), kind: s.GetKind(), at: s.GetAvailableTime().AsTime(), transit: s.GetTransitDays()})
		}
		if !slices.Equal(gotSrc, w.sources) {
			t.Errorf("line %d sources:\n got %v\nwant %v", i, gotSrc, w.sources)
		}
		var promised time.Time
		if g.GetPromisedTime() != nil {
			promised = g.GetPromisedTime().AsTime()
		}
		if !promised.Equal(w.promised) {
			t.Errorf("line %d promised %v, want %v", i, promised, w.promised)
		}
	}
}

// threeSites is the network most availability tests run on: Lyon (EU, a
// day to the EU, 9 to NA), Rotterdam (EU, no transit table: the defaults)
// and Ohio (NA, 2 days to NA, 10 to the EU).
func threeSites(f *fixture) {
	f.site("plant-lyon", "eu", "eu", 1, "na", 9)
	f.site("wh-rotterdam", "eu")
	f.site("plant-ohio", "na", "na", 2, "eu", 10)
}

func TestCheckAvailability(t *testing.T) {
	const (
		onHand  = SourceOnHand
		planned = SourcePlannedReceipt
	)
	tests := []struct {
		name   string
		setup  func(f *fixture)
		region string
		split  bool
		lines  []*fulfillmentv1.AvailabilityLine
		want   []wantLine
	}{
		{
			name: "a site in the ship-to region arrives first",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.receive("plant-ohio", "VALVE-100", "100", "EA")
			},
			region: "eu", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "5", "EA")},
			want: []wantLine{{covered: true, base: "5", sources: []wantSource{{"plant-lyon", "5", onHand, t0, 1}}, promised: day(1)}},
		},
		{
			name: "on a tie the ship-to region wins over a lower site id",
			setup: func(f *fixture) {
				f.site("plant-a", "eu", "na", 2)
				f.site("plant-z", "na", "na", 2)
				f.receive("plant-a", "VALVE-100", "10", "EA")
				f.receive("plant-z", "VALVE-100", "10", "EA")
			},
			region: "na", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "5", "EA")},
			want: []wantLine{{covered: true, base: "5", sources: []wantSource{{"plant-z", "5", onHand, t0, 2}}, promised: day(2)}},
		},
		{
			name: "on a full tie the lower site id wins",
			setup: func(f *fixture) {
				f.site("wh-rotterdam", "eu")
				f.site("wh-antwerp", "eu")
				f.receive("wh-rotterdam", "VALVE-100", "10", "EA")
				f.receive("wh-antwerp", "VALVE-100", "10", "EA")
			},
			region: "eu", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "5", "EA")},
			want: []wantLine{{covered: true, base: "5", sources: []wantSource{{"wh-antwerp", "5", onHand, t0, 1}}, promised: day(1)}},
		},
		{
			name: "the earliest arrival beats the ship-to region",
			setup: func(f *fixture) {
				threeSites(f)
				f.plan("plant-lyon", "VALVE-100", "50", "EA", day(20))
				f.receive("plant-ohio", "VALVE-100", "50", "EA")
			},
			region: "eu", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "30", "EA")},
			want: []wantLine{{covered: true, base: "30", sources: []wantSource{{"plant-ohio", "30", onHand, t0, 10}}, promised: day(10)}},
		},
		{
			name: "a planned receipt adds supply on its due date",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.plan("plant-lyon", "VALVE-100", "40", "EA", day(5))
			},
			region: "eu", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "30", "EA")},
			want: []wantLine{{covered: true, base: "30", sources: []wantSource{{"plant-lyon", "30", planned, day(5), 1}}, promised: day(6)}},
		},
		{
			name: "a receipt already past due counts from now",
			setup: func(f *fixture) {
				threeSites(f)
				f.plan("plant-lyon", "VALVE-100", "10", "EA", day(-2))
			},
			region: "eu", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "5", "EA")},
			want: []wantLine{{covered: true, base: "5", sources: []wantSource{{"plant-lyon", "5", planned, t0, 1}}, promised: day(1)}},
		},
		{
			name: "a site without a transit table takes a day inside its region",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("wh-rotterdam", "VALVE-100", "10", "EA")
			},
			region: "eu", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "5", "EA")},
			want: []wantLine{{covered: true, base: "5", sources: []wantSource{{"wh-rotterdam", "5", onHand, t0, DefaultTransitDaysSameRegion}}, promised: day(DefaultTransitDaysSameRegion)}},
		},
		{
			name: "a site without a transit table takes a week to another region",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("wh-rotterdam", "VALVE-100", "10", "EA")
			},
			region: "na", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "5", "EA")},
			want: []wantLine{{covered: true, base: "5", sources: []wantSource{{"wh-rotterdam", "5", onHand, t0, DefaultTransitDaysOtherRegion}}, promised: day(DefaultTransitDaysOtherRegion)}},
		},
		{
			name: "a site's own transit time to a region",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
			},
			region: "na", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "5", "EA")},
			want: []wantLine{{covered: true, base: "5", sources: []wantSource{{"plant-lyon", "5", onHand, t0, 9}}, promised: day(9)}},
		},
		{
			name: "without split a line no single site covers is short",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.receive("wh-rotterdam", "VALVE-100", "10", "EA")
			},
			region: "eu", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "15", "EA")},
			want: []wantLine{{covered: false, reason: LineShort, base: "15"}},
		},
		{
			name: "with split the same line comes from two sites",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.receive("wh-rotterdam", "VALVE-100", "10", "EA")
			},
			region: "eu", split: true, lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "15", "EA")},
			want: []wantLine{{covered: true, base: "15", sources: []wantSource{
				{"plant-lyon", "10", onHand, t0, 1},
				{"wh-rotterdam", "5", onHand, t0, 1},
			}, promised: day(1)}},
		},
		{
			name: "split is not used when one site arrives as early",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.receive("wh-rotterdam", "VALVE-100", "20", "EA")
			},
			region: "eu", split: true, lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "15", "EA")},
			want: []wantLine{{covered: true, base: "15", sources: []wantSource{{"wh-rotterdam", "15", onHand, t0, 1}}, promised: day(1)}},
		},
		{
			name: "split arrives before the one site that could wait for production",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.plan("plant-lyon", "VALVE-100", "100", "EA", day(10))
				f.receive("wh-rotterdam", "VALVE-100", "10", "EA")
			},
			region: "eu", split: true, lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "15", "EA")},
			want: []wantLine{{covered: true, base: "15", sources: []wantSource{
				{"plant-lyon", "10", onHand, t0, 1},
				{"wh-rotterdam", "5", onHand, t0, 1},
			}, promised: day(1)}},
		},
		{
			name: "without split the line waits for production at one site",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.plan("plant-lyon", "VALVE-100", "100", "EA", day(10))
				f.receive("wh-rotterdam", "VALVE-100", "10", "EA")
			},
			region: "eu", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "15", "EA")},
			want: []wantLine{{covered: true, base: "15", sources: []wantSource{{"plant-lyon", "15", planned, day(10), 1}}, promised: day(11)}},
		},
		{
			name: "lines of one SKU share the supply",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.plan("plant-lyon", "VALVE-100", "20", "EA", day(4))
			},
			region: "eu", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "6", "EA"), line("VALVE-100", "6", "EA")},
			want: []wantLine{
				{covered: true, base: "6", sources: []wantSource{{"plant-lyon", "6", onHand, t0, 1}}, promised: day(1)},
				{covered: true, base: "6", sources: []wantSource{{"plant-lyon", "6", planned, day(4), 1}}, promised: day(5)},
			},
		},
		{
			name: "lines of other units convert to the base unit",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "2", "CASE")
				f.receive("plant-lyon", "RESIN-5", "1", "BAG")
			},
			region: "eu", lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "24", "EA"), line("RESIN-5", "2500", "G")},
			want: []wantLine{
				{covered: true, base: "24", sources: []wantSource{{"plant-lyon", "24", onHand, t0, 1}}, promised: day(1)},
				{covered: true, base: "2.5", sources: []wantSource{{"plant-lyon", "2.5", onHand, t0, 1}}, promised: day(1)},
			},
		},
		{
			name: "unknown products and units are line reasons, not a failed call",
			setup: func(f *fixture) {
				threeSites(f)
				f.receive("plant-lyon", "VALVE-100", "100", "EA")
			},
			region: "eu",
			lines: []*fulfillmentv1.AvailabilityLine{
				line("NOPE-1", "1", "EA"), line("VALVE-100", "1", "DOZEN"), line("VALVE-100", "0.5", "CASE"), line("VALVE-100", "2", "CASE"),
			},
			want: []wantLine{
				{reason: LineUnknownProduct},
				{reason: LineUnknownUnit},
				{reason: LineNotConvertible},
				{covered: true, base: "24", sources: []wantSource{{"plant-lyon", "24", onHand, t0, 1}}, promised: day(1)},
			},
		},
		{
			name:   "no supply anywhere is short",
			setup:  threeSites,
			region: "eu", split: true, lines: []*fulfillmentv1.AvailabilityLine{line("GASKET-7", "1", "EA")},
			want: []wantLine{{reason: LineShort, base: "1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tt.setup(f)
			before := f.snapshot()
			checkLines(t, f.check(tt.region, tt.split, tt.lines...), tt.want)
			f.assertUnchanged(before) // a check writes nothing
		})
	}
}

// Availability is time-phased: stock promised from a receipt on its due
// date does not block on-hand stock someone needs before then, and what a
// later promise takes never leaves an earlier one uncovered.
func TestAvailabilityNetsReservationsByNeedDate(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	f.plan("plant-lyon", "VALVE-100", "50", "EA", day(5))

	a := f.hardReserve("ord_a", "eu", line("VALVE-100", "50", "EA"))
	if l := a.GetLines()[0]; l.GetSiteId() != "plant-lyon" || !l.GetPromisedTime().AsTime().Equal(day(6)) {
		t.Fatalf("order A: %v, want plant-lyon promised on day 6", l)
	}
	// 60 arrive by day 5 and A needs 50 then: the 10 on hand can still go now.
	checkLines(t, f.check("eu", false, line("VALVE-100", "10", "EA")), []wantLine{
		{covered: true, base: "10", sources: []wantSource{{"plant-lyon", "10", SourceOnHand, t0, 1}}, promised: day(1)},
	})
	f.hardReserve("ord_b", "eu", line("VALVE-100", "10", "EA"))
	// Now every unit is promised: one more would leave A short on day 5.
	checkLines(t, f.check("eu", false, line("VALVE-100", "1", "EA")), []wantLine{{reason: LineShort, base: "1"}})
	if got, want := f.balance("plant-lyon", "VALVE-100"), [4]string{"10", "60", "0", "0"}; got != want {
		t.Errorf("balance %v, want %v (on hand, reserved, soft, available)", got, want)
	}
}

func TestSoftHoldsLiveAndExpired(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	hold := f.reserve(soft, "quo_1", "eu", t0.Add(time.Hour), false, line("VALVE-100", "8", "EA"))
	if hold.GetReservation().GetStatus() != fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE {
		t.Fatalf("hold %v", hold)
	}
	tests := []struct {
		name      string
		at        time.Time
		want      wantLine
		available string
	}{
		{"a live hold takes its stock", t0.Add(59 * time.Minute), wantLine{reason: LineShort, base: "5"}, "2"},
		{"at its expiry the hold is gone, before Run sees it", t0.Add(time.Hour),
			wantLine{covered: true, base: "5", sources: []wantSource{{"plant-lyon", "5", SourceOnHand, t0.Add(time.Hour), 1}}, promised: day(1).Add(time.Hour)}, "10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.clock.Set(tt.at)
			checkLines(t, f.check("eu", false, line("VALVE-100", "5", "EA")), []wantLine{tt.want})
			if got := f.balance("plant-lyon", "VALVE-100")[3]; got != tt.available {
				t.Errorf("available %s, want %s", got, tt.available)
			}
		})
	}
}

func TestCheckAvailabilityFailures(t *testing.T) {
	scoped := erpKey
	scoped.Region = "na"
	tests := []struct {
		name   string
		p      auth.Principal
		down   bool
		req    *fulfillmentv1.CheckAvailabilityRequest
		code   codes.Code
		reason string
		field  string
	}{
		{"productpricing down", erpKey, true,
			&fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: "eu", Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "EA")}},
			codes.Unavailable, apierr.ReasonUnavailable, ""},
		{"zero quantity", erpKey, false,
			&fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: "eu", Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "EA"), line("VALVE-100", "0", "EA")}},
			codes.InvalidArgument, apierr.ReasonInvalidArgument, "lines[1].quantity.value"},
		{"missing quantity", erpKey, false,
			&fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: "eu", Lines: []*fulfillmentv1.AvailabilityLine{{Sku: "VALVE-100"}}},
			codes.InvalidArgument, apierr.ReasonInvalidArgument, "lines[0].quantity"},
		{"no lines", erpKey, false, &fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: "eu"},
			codes.InvalidArgument, apierr.ReasonInvalidArgument, "lines"},
		{"ship-to region outside the key's scope", scoped, false,
			&fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: "eu", Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "EA")}},
			codes.PermissionDenied, ReasonRegionOutOfScope, "ship_to_region"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.catalog.down.Store(tt.down)
			_, err := f.core().checkAvailability(f.ctx, tt.p, tt.req)
			wantErr(t, domainErr(err), tt.code, tt.reason, tt.field)
		})
	}
}

// A production receipt is the planned production arriving: it reduces the
// open plans of its item, earliest first, so the stock is not counted as
// both on hand and planned.
func TestProductionReceiptConsumesPlans(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	early := f.plan("plant-lyon", "VALVE-100", "30", "EA", day(3))
	late := f.plan("plant-lyon", "VALVE-100", "30", "EA", day(6))
	f.plan("plant-ohio", "VALVE-100", "99", "EA", day(1)) // another site: untouched

	f.receive("plant-lyon", "VALVE-100", "40", "EA")
	resp, err := f.core().listSupplyPlans(f.ctx, f.p, &fulfillmentv1.ListSupplyPlansRequest{SiteId: "plant-lyon"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range resp.GetSupplyPlans() {
		got = append(got, p.GetId()+"="+p.GetQuantity().GetValue())
	}
	if want := []string{late.GetId() + "=20"}; !slices.Equal(got, want) {
		t.Errorf("open plans %v, want %v (%s received in full)", got, want, early.GetId())
	}
	// 40 on hand and 20 on day 6: 60 in all, never 100.
	checkLines(t, f.check("eu", false, line("VALVE-100", "60", "EA")), []wantLine{
		{covered: true, base: "60", sources: []wantSource{{"plant-lyon", "60", SourcePlannedReceipt, day(6), 1}}, promised: day(7)},
	})
	checkLines(t, f.check("eu", false, line("VALVE-100", "61", "EA")), []wantLine{
		{covered: true, base: "61", sources: []wantSource{{"plant-ohio", "61", SourcePlannedReceipt, day(1), 10}}, promised: day(11)},
	})
}
