package fulfillment

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/money"
)

func (f *fixture) supplies() *supplyCache { return f.core().repo.(*store).supplies }

// uncachedCheck answers a check on the same file without the supply
// cache: every read decodes the store. It is the oracle cached answers
// must equal.
func (f *fixture) uncachedCheck(region string, split bool, lines ...*fulfillmentv1.AvailabilityLine) []*fulfillmentv1.LineAvailability {
	f.t.Helper()
	k := *f.core()
	k.repo = &store{db: f.db}
	resp, err := k.checkAvailability(f.ctx, f.p, &fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: region, Lines: lines, AllowSplit: split})
	if err != nil {
		f.t.Fatalf("uncached check: %v", err)
	}
	return resp.GetLines()
}

func sameLines(a, b []*fulfillmentv1.LineAvailability) bool {
	return proto.Equal(&fulfillmentv1.CheckAvailabilityResponse{Lines: a}, &fulfillmentv1.CheckAvailabilityResponse{Lines: b})
}

// updateSite rewrites a stored site; the contract has no such call, but
// the store must not depend on that.
func (f *fixture) updateSite(id string, change func(*fulfillmentv1.Site)) {
	f.t.Helper()
	err := f.core().repo.update(f.ctx, func(tx txn) error {
		s, err := tx.site(id)
		if err != nil {
			return err
		}
		change(s)
		return tx.putSite(s)
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

func TestSupplyCacheNeverServesStaleSupply(t *testing.T) {
	valves := []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "10", "EA")}
	tests := []struct {
		name   string
		setup  func(f *fixture)
		lines  []*fulfillmentv1.AvailabilityLine
		change func(f *fixture)
		// sameTx: the change commits nothing, so the second check is
		// served from the cache entry of the first.
		sameTx bool
	}{
		{
			name:   "a hard reservation takes the stock",
			setup:  func(f *fixture) { f.receive("plant-lyon", "VALVE-100", "10", "EA") },
			lines:  valves,
			change: func(f *fixture) { f.hardReserve("ord_1", "eu", line("VALVE-100", "4", "EA")) },
		},
		{
			name:  "a soft hold takes the stock",
			setup: func(f *fixture) { f.receive("plant-lyon", "VALVE-100", "10", "EA") },
			lines: valves,
			change: func(f *fixture) {
				f.reserve(soft, "quote_1", "eu", t0.Add(time.Hour), false, line("VALVE-100", "1", "EA"))
			},
		},
		{
			name: "a release frees the stock",
			setup: func(f *fixture) {
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.hardReserve("ord_1", "eu", line("VALVE-100", "4", "EA"))
			},
			lines: valves,
			change: func(f *fixture) {
				r := f.reserve(hard, "ord_1", "eu", time.Time{}, false, line("VALVE-100", "4", "EA")).GetReservation()
				if _, err := f.core().releaseReservation(f.ctx, f.p, r.GetId()); err != nil {
					f.t.Fatal(err)
				}
			},
		},
		{
			name:   "an adjustment adds stock",
			setup:  func(f *fixture) { f.receive("plant-lyon", "VALVE-100", "5", "EA") },
			lines:  valves,
			change: func(f *fixture) { f.receive("wh-rotterdam", "VALVE-100", "5", "EA") },
		},
		{
			name:   "a first balance at a site",
			setup:  func(f *fixture) {},
			lines:  valves,
			change: func(f *fixture) { f.receive("plant-ohio", "VALVE-100", "10", "EA") },
		},
		{
			name:   "a supply plan adds future supply",
			setup:  func(f *fixture) { f.receive("plant-lyon", "VALVE-100", "5", "EA") },
			lines:  valves,
			change: func(f *fixture) { f.plan("plant-lyon", "VALVE-100", "5", "EA", day(3)) },
		},
		{
			name:  "a site's transit times change",
			setup: func(f *fixture) { f.receive("plant-ohio", "VALVE-100", "10", "EA") },
			lines: valves,
			change: func(f *fixture) {
				f.updateSite("plant-ohio", func(s *fulfillmentv1.Site) {
					s.TransitTimes = append(s.TransitTimes[:0], &fulfillmentv1.TransitTime{Region: "eu", Days: 4})
				})
			},
		},
		{
			name:  "a new site",
			setup: func(f *fixture) { f.receive("plant-ohio", "VALVE-100", "10", "EA") },
			lines: valves,
			change: func(f *fixture) {
				f.site("wh-antwerp", "eu")
				f.receive("wh-antwerp", "VALVE-100", "10", "EA")
			},
		},
		{
			name: "a soft hold expires by the clock, before Run",
			setup: func(f *fixture) {
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.reserve(soft, "quote_1", "eu", t0.Add(time.Hour), false, line("VALVE-100", "6", "EA"))
			},
			lines:  valves,
			change: func(f *fixture) { f.clock.Set(t0.Add(time.Hour)) },
			sameTx: true,
		},
		{
			name: "Run expires a soft hold",
			setup: func(f *fixture) {
				f.receive("plant-lyon", "VALVE-100", "10", "EA")
				f.reserve(soft, "quote_1", "eu", t0.Add(time.Hour), false, line("VALVE-100", "6", "EA"))
			},
			lines: valves,
			change: func(f *fixture) {
				f.clock.Set(t0.Add(time.Hour))
				if n, err := f.core().expireDue(f.ctx); err != nil || n != 1 {
					f.t.Fatalf("expireDue = %d, %v", n, err)
				}
			},
		},
		{
			name:   "a planned receipt falls due",
			setup:  func(f *fixture) { f.plan("plant-lyon", "VALVE-100", "10", "EA", day(2)) },
			lines:  valves,
			change: func(f *fixture) { f.clock.Set(day(3)) },
			sameTx: true,
		},
		{
			name:  "the product's base unit changes",
			setup: func(f *fixture) { f.receive("plant-lyon", "VALVE-100", "10", "EA") },
			lines: valves,
			change: func(f *fixture) {
				facts, err := NewProductFacts(&productpricingv1.Product{Sku: "VALVE-100", BaseUnit: "PC", Conversions: []*productpricingv1.UnitConversion{
					{Unit: "EA", Factor: "1", PerUnit: "PC"},
				}})
				if err != nil {
					f.t.Fatal(err)
				}
				f.catalog.products["VALVE-100"] = facts
			},
			sameTx: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			threeSites(f)
			tt.setup(f)

			before := f.check("eu", true, tt.lines...)
			txid, skus, _ := f.supplies().size()
			if skus == 0 {
				t.Fatal("the first check left nothing in the cache")
			}
			if again := f.check("eu", true, tt.lines...); !sameLines(again, before) {
				t.Fatalf("a cached check differs from the first:\n got %v\nwant %v", again, before)
			}

			tt.change(f)
			after := f.check("eu", true, tt.lines...)
			if want := f.uncachedCheck("eu", true, tt.lines...); !sameLines(after, want) {
				t.Errorf("after the change:\n got %v\nwant %v", after, want)
			}
			if sameLines(after, before) {
				t.Errorf("the change changed nothing, the case tests nothing: %v", after)
			}
			if now, _, _ := f.supplies().size(); (now == txid) != tt.sameTx {
				t.Errorf("cache generation %d, then %d; want the same: %v", txid, now, tt.sameTx)
			}
		})
	}
}

// TestSupplyCacheIsReadOnly checks that allocating from cached supplies
// never changes them: checks that split and stack several lines of one SKU
// run side by side and all answer what an uncached check answers.
func TestSupplyCacheIsReadOnly(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "RESIN-5", "100", "KG")
	f.receive("wh-rotterdam", "RESIN-5", "100", "KG")
	f.receive("plant-ohio", "RESIN-5", "1000", "KG")
	f.plan("plant-lyon", "RESIN-5", "500", "KG", day(7))
	f.receive("plant-lyon", "VALVE-100", "30", "EA")
	f.reserve(soft, "quote_1", "eu", t0.Add(time.Hour), false, line("VALVE-100", "6", "EA"))
	lines := []*fulfillmentv1.AvailabilityLine{
		line("RESIN-5", "6", "BAG"), line("RESIN-5", "40", "KG"), line("VALVE-100", "2", "CASE"), line("RESIN-5", "100", "KG"),
	}
	want := f.uncachedCheck("eu", true, lines...)

	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Go(func() {
			for range 25 {
				resp, err := f.core().checkAvailability(f.ctx, f.p, &fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: "eu", Lines: lines, AllowSplit: g%2 == 0})
				switch {
				case err != nil:
					errs <- err.Error()
					return
				case g%2 == 0 && !sameLines(resp.GetLines(), want):
					errs <- fmt.Sprintf("got %v\nwant %v", resp.GetLines(), want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := f.check("eu", true, lines...); !sameLines(got, want) {
		t.Errorf("after the concurrent checks:\n got %v\nwant %v", got, want)
	}
}

// TestSupplyCacheUnderConcurrentReservations races checks against hard
// reservations of the last units: group commit runs the reservations of a
// batch in one transaction, and none of them may see a cached supply, or
// more would be reserved than there is.
func TestSupplyCacheUnderConcurrentReservations(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	const stock = 40
	f.receive("plant-lyon", "VALVE-100", fmt.Sprint(stock), "EA")

	var reserved atomic.Int32
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := f.core().checkAvailability(f.ctx, f.p, &fulfillmentv1.CheckAvailabilityRequest{ShipToRegion: "eu", AllowSplit: true,
					Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "EA"), line("VALVE-100", "2", "EA")}})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var writers sync.WaitGroup
	for g := range 8 {
		writers.Go(func() {
			for i := range 8 {
				resp, err := f.core().createReservation(f.ctx, f.p, &fulfillmentv1.CreateReservationRequest{
					Kind: hard, ReferenceId: fmt.Sprintf("ord_%d_%d", g, i), ShipToRegion: "eu",
					Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "EA")},
				})
				if err != nil {
					t.Error(err)
					return
				}
				if resp.GetReservation() != nil {
					reserved.Add(1)
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()

	if got := reserved.Load(); got != stock {
		t.Errorf("%d reservations of one unit on %d units", got, stock)
	}
	if got, want := f.balance("plant-lyon", "VALVE-100"), [4]string{"40", "40", "0", "0"}; got != want {
		t.Errorf("balance %v, want %v", got, want)
	}
	if got := f.check("eu", false, line("VALVE-100", "1", "EA")); got[0].GetCovered() {
		t.Errorf("a unit is still available: %v", got)
	}
}

func TestSupplyCacheIsBounded(t *testing.T) {
	f := newFixture(t)
	threeSites(f)
	skus := []string{"VALVE-100", "RESIN-5", "GASKET-7"}
	for _, sku := range skus {
		for _, site := range []string{"plant-lyon", "wh-rotterdam", "plant-ohio"} {
			f.receive(site, sku, "100", f.catalog.products[sku].BaseUnit)
		}
	}
	// One SKU weighs 1 + 3 sites + their 4 transit entries: 8. Room for
	// two, not three.
	const maxWeight = 20
	f.core().repo.(*store).supplies = newSupplyCache(maxWeight)
	for round := range 3 {
		for _, sku := range skus {
			l := line(sku, "250", f.catalog.products[sku].BaseUnit)
			if got, want := f.check("eu", true, l), f.uncachedCheck("eu", true, l); !sameLines(got, want) {
				t.Errorf("round %d, %s:\n got %v\nwant %v", round, sku, got, want)
			}
			if _, n, w := f.supplies().size(); w > maxWeight || n > 2 {
				t.Fatalf("cache holds %d SKUs of weight %d, bound %d", n, w, maxWeight)
			}
		}
	}
}

func TestSupplyCacheGenerations(t *testing.T) {
	item := func(sites, demand int) []itemSupply {
		var out []itemSupply
		for i := range sites {
			it := itemSupply{site: siteInfo{ID: fmt.Sprint("site-", i)}, onHand: money.Zero()}
			for range demand {
				it.hard = append(it.hard, dated{qty: money.Zero()})
			}
			out = append(out, it)
		}
		return out
	}
	type put struct {
		txid int
		sku  string
		v    []itemSupply
	}
	type get struct {
		txid int
		sku  string
		ok   bool
	}
	tests := []struct {
		name       string
		maxWeight  int
		puts       []put
		gets       []get
		skus, size int
	}{
		{
			name: "kept for its transaction id only", maxWeight: 100,
			puts: []put{{7, "A", item(2, 1)}},
			gets: []get{{7, "A", true}, {8, "A", false}, {6, "A", false}, {7, "B", false}},
			skus: 1, size: 5,
		},
		{
			name: "a newer id starts afresh", maxWeight: 100,
			puts: []put{{7, "A", item(1, 0)}, {7, "B", item(1, 0)}, {9, "C", item(1, 0)}},
			gets: []get{{7, "A", false}, {9, "C", true}},
			skus: 1, size: 2,
		},
		{
			name: "an older id is not kept", maxWeight: 100,
			puts: []put{{9, "A", item(1, 0)}, {7, "B", item(1, 0)}},
			gets: []get{{9, "A", true}, {7, "B", false}, {9, "B", false}},
			skus: 1, size: 2,
		},
		{
			name: "a SKU heavier than the bound is not kept", maxWeight: 10,
			puts: []put{{7, "A", item(2, 1)}, {7, "B", item(3, 3)}},
			gets: []get{{7, "A", true}, {7, "B", false}},
			skus: 1, size: 5,
		},
		{
			name: "entries are evicted to stay in bound", maxWeight: 10,
			puts: []put{{7, "A", item(2, 1)}, {7, "B", item(2, 1)}, {7, "C", item(2, 1)}},
			gets: []get{{7, "C", true}},
			skus: 2, size: 10,
		},
		{
			name: "putting a SKU again replaces it", maxWeight: 100,
			puts: []put{{7, "A", item(2, 1)}, {7, "A", item(1, 0)}},
			gets: []get{{7, "A", true}},
			skus: 1, size: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newSupplyCache(tt.maxWeight)
			for _, p := range tt.puts {
				c.put(p.txid, p.sku, p.v)
			}
			for _, g := range tt.gets {
				if _, ok := c.get(g.txid, g.sku); ok != g.ok {
					t.Errorf("get(%d, %s) found %v, want %v", g.txid, g.sku, ok, g.ok)
				}
			}
			if _, n, w := c.size(); n != tt.skus || w != tt.size {
				t.Errorf("%d SKUs of weight %d, want %d of %d", n, w, tt.skus, tt.size)
			}
		})
	}
}

// TestSoftDemandLiveness pins the rule the cache filters by: a hold
// counts until its expire time, not at it.
func TestSoftDemandLiveness(t *testing.T) {
	exp := t0.Add(time.Hour)
	tests := []struct {
		name string
		now  time.Time
		live bool
	}{
		{"before", exp.Add(-time.Microsecond), true},
		{"at the expire time", exp, false},
		{"after", exp.Add(time.Microsecond), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (softDemand{expire: exp}).live(tt.now); got != tt.live {
				t.Errorf("live(%v) = %v, want %v", tt.now, got, tt.live)
			}
		})
	}
	// And through the store: the cached supply and the soft-held total
	// of a balance agree at every instant.
	f := newFixture(t)
	threeSites(f)
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	f.reserve(soft, "quote_1", "eu", exp, false, line("VALVE-100", "6", "EA"))
	for _, tt := range tests {
		f.clock.Set(tt.now)
		want := "6"
		if !tt.live {
			want = "0"
		}
		if got := f.balance("plant-lyon", "VALVE-100")[2]; got != want {
			t.Errorf("%s: soft held %s, want %s", tt.name, got, want)
		}
		covered := f.check("eu", false, line("VALVE-100", "10", "EA"))[0].GetCovered()
		if covered == tt.live {
			t.Errorf("%s: 10 covered %v with the hold live %v", tt.name, covered, tt.live)
		}
	}
}
