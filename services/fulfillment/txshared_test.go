package fulfillment

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/money"
)

// sharedIsFresh reports how what the write transaction's shared state
// answers for sku at site differs from decoding the transaction, nil when
// it does not. It runs inside a batched write, on the store's committer,
// so it returns an error where a test would stop.
func sharedIsFresh(step string, tx *storeTx, siteID, sku string) error {
	fresh := &storeTx{ctx: tx.ctx, tx: tx.tx}
	got, err := tx.supply(sku)
	if err != nil {
		return fmt.Errorf("%s: shared supply: %w", step, err)
	}
	want, err := fresh.readSupply(sku)
	if err != nil {
		return fmt.Errorf("%s: decoded supply: %w", step, err)
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%s: shared supply of %s\n  %s\nbut the transaction decodes\n  %s", step, sku, describeSupply(got), describeSupply(want))
	}
	gotB, err := tx.balance(siteID, sku)
	if err != nil {
		return fmt.Errorf("%s: shared balance: %w", step, err)
	}
	wantB, err := fresh.balance(siteID, sku)
	if err != nil {
		return fmt.Errorf("%s: decoded balance: %w", step, err)
	}
	if !reflect.DeepEqual(gotB, wantB) {
		return fmt.Errorf("%s: shared balance %+v, decoded %+v", step, gotB, wantB)
	}
	for _, now := range []time.Time{t0, day(1), day(2)} {
		got, err := tx.softHeld(siteID, sku, now)
		if err != nil {
			return fmt.Errorf("%s: shared soft held: %w", step, err)
		}
		want, err := fresh.softHeld(siteID, sku, now)
		if err != nil {
			return fmt.Errorf("%s: decoded soft held: %w", step, err)
		}
		if got.Cmp(want) != 0 {
			return fmt.Errorf("%s: soft held at %s: shared %s, decoded %s", step, now, got, want)
		}
	}
	return nil
}

func describeSupply(items []itemSupply) string {
	s := ""
	for _, it := range items {
		s += fmt.Sprintf("[%s unit=%q on_hand=%v plans=%d hard=%v soft=%d] ", it.site.ID, it.unit, it.onHand, len(it.plans), it.hard, len(it.soft))
	}
	return s
}

// The functions of one group commit share decoded supply and balances; every
// write the transaction makes must leave them equal to a fresh decode, and
// what an earlier function was handed must not change under it.
func TestSharedWriteStateFollowsEveryWrite(t *testing.T) {
	f := newFixture(t)
	f.site("plant-lyon", "eu", "us", 9)
	f.site("dc-ohio", "us", "eu", 9)
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	f.plan("plant-lyon", "VALVE-100", "5", "EA", day(3))
	st := f.core().repo.(*store)

	err := st.update(f.ctx, func(x txn) error {
		tx := x.(*storeTx)
		first, err := tx.supply("VALVE-100")
		if err != nil {
			return err
		}
		before := describeSupply(first)
		steps := []struct {
			name, site string
			write      func() error
		}{
			{"hard demand added", "plant-lyon", func() error {
				return tx.addHardDemand("plant-lyon", "VALVE-100", time.Time{}, money.MustParse("4"))
			}},
			{"hard demand on a later date", "plant-lyon", func() error {
				return tx.addHardDemand("plant-lyon", "VALVE-100", day(3), money.MustParse("2"))
			}},
			{"hard demand back to zero", "plant-lyon", func() error {
				return tx.addHardDemand("plant-lyon", "VALVE-100", time.Time{}, money.MustParse("-4"))
			}},
			{"soft demand added", "plant-lyon", func() error {
				return tx.addSoftDemand("plant-lyon", "VALVE-100", day(1), time.Time{}, money.MustParse("1.5"))
			}},
			{"balance changed", "plant-lyon", func() error {
				b, err := tx.balance("plant-lyon", "VALVE-100")
				if err != nil {
					return err
				}
				b.OnHand, b.Reserved, b.UpdateTime = "7", "2", time.Now()
				return tx.putBalance(b)
			}},
			{"balance at a new site", "dc-ohio", func() error {
				return tx.putBalance(&balance{SiteID: "dc-ohio", SKU: "VALVE-100", Unit: "EA", OnHand: "3", Reserved: "0", UpdateTime: time.Now()})
			}},
			{"plan at a new site", "dc-ohio", func() error {
				return tx.putPlan(nil, &supplyPlan{ID: "plan_x", SiteID: "dc-ohio", SKU: "VALVE-100", Unit: "EA", Planned: "8", Open: "8", DueTime: day(5), CreateTime: t0})
			}},
			{"site transit changed", "plant-lyon", func() error {
				s, err := tx.site("plant-lyon")
				if err != nil {
					return err
				}
				s.TransitTimes = append(s.TransitTimes[:0], &fulfillmentv1.TransitTime{Region: "us", Days: 4})
				return tx.putSite(s)
			}},
		}
		for _, s := range steps {
			if err := s.write(); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if err := sharedIsFresh(s.name, tx, s.site, "VALVE-100"); err != nil {
				return err
			}
		}
		if after := describeSupply(first); after != before {
			return fmt.Errorf("a supply handed out earlier changed under its holder:\n  %s\nbecame\n  %s", before, after)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A function that fails rolls its whole transaction back, so the shared
// state it changed must not serve the functions run after it.
func TestFailedWriteSpoilsSharedState(t *testing.T) {
	f := newFixture(t)
	f.site("plant-lyon", "eu")
	f.receive("plant-lyon", "VALVE-100", "10", "EA")
	st := f.core().repo.(*store)

	boom := errors.New("boom")
	err := st.update(f.ctx, func(x txn) error {
		tx := x.(*storeTx)
		if _, err := tx.supply("VALVE-100"); err != nil {
			return err
		}
		if err := tx.addHardDemand("plant-lyon", "VALVE-100", time.Time{}, money.MustParse("10")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("update: %v, want boom", err)
	}
	if st.shared == nil || !st.shared.spoiled {
		t.Fatal("the failed function's shared state is not marked spoiled")
	}
	// Even a function handed the very same transaction starts afresh.
	var reused bool
	if err := f.db.Update(func(btx *bbolt.Tx) error {
		st.shared.tx = btx
		w := st.sharedFor(btx)
		reused = w.spoiled || len(w.supplies) != 0 || len(w.balances) != 0
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if reused {
		t.Fatal("a spoiled shared state was reused")
	}
	if got := f.check("eu", false, line("VALVE-100", "10", "EA")); !got[0].GetCovered() {
		t.Fatalf("the rolled-back demand still holds the stock: %v", got)
	}
}

// Reservations sharing group commits see each other's demand: many at once
// for the last units reserve exactly what there is, with the shared state
// serving every function after the first of each group.
func TestGroupedReservationsShareDemand(t *testing.T) {
	f := newFixture(t)
	f.site("plant-lyon", "eu")
	f.receive("plant-lyon", "VALVE-100", "30", "EA")
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	var errs []error
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := f.core().createReservation(f.ctx, f.p, &fulfillmentv1.CreateReservationRequest{
				Kind: hard, ReferenceId: fmt.Sprintf("ord_%d", i), ShipToRegion: "eu", Lines: []*fulfillmentv1.AvailabilityLine{line("VALVE-100", "1", "EA")},
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else if resp.GetReservation() != nil {
				taken++
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if taken != 30 {
		t.Fatalf("%d reservations of one unit were placed on 30 units", taken)
	}
	if b := f.balance("plant-lyon", "VALVE-100"); b[1] != "30" {
		t.Fatalf("balance %v: want 30 reserved", b)
	}
}
