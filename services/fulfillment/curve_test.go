package fulfillment

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/millrace/millrace/internal/money"
)

// referenceCurve is the curve by its definition, a map of net changes per
// instant: the oracle for supply.curve.
func referenceCurve(s *supply, now time.Time, withPastDue bool) ([]time.Time, []*money.Decimal) {
	deltas := map[int64]*money.Decimal{now.UnixNano(): s.onHand}
	add := func(at time.Time, q *money.Decimal) {
		if at.Before(now) {
			at = now
		}
		if d, ok := deltas[at.UnixNano()]; ok {
			q = money.Add(d, q)
		}
		deltas[at.UnixNano()] = q
	}
	for _, p := range s.plans {
		if withPastDue || p.at.After(now) {
			add(p.at, p.qty)
		}
	}
	for _, d := range s.demand {
		add(d.at, money.Sub(money.Zero(), d.qty))
	}
	var instants []int64
	for at := range deltas {
		instants = append(instants, at)
	}
	slices.Sort(instants)
	dates := make([]time.Time, len(instants))
	atp := make([]*money.Decimal, len(instants))
	run := money.Zero()
	for i, at := range instants {
		dates[i] = time.Unix(0, at).UTC()
		run = money.Add(run, deltas[at])
		atp[i] = run
	}
	for i := len(atp) - 2; i >= 0; i-- {
		if money.Cmp(atp[i+1], atp[i]) < 0 {
			atp[i] = atp[i+1]
		}
	}
	return dates, atp
}

func TestCurveMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	qty := func() *money.Decimal { return money.MustParse(fmt.Sprintf("%d.%03d", rng.IntN(50), rng.IntN(1000))) }
	when := func() time.Time {
		switch rng.IntN(4) {
		case 0:
			return time.Time{} // from on hand
		case 1:
			return t0 // now
		}
		return day(rng.IntN(9) - 3) // past due, or a few days ahead
	}
	for n := range 500 {
		s := &supply{onHand: qty()}
		for range rng.IntN(4) {
			s.plans = append(s.plans, dated{at: when(), qty: qty()})
		}
		for range rng.IntN(5) {
			s.demand = append(s.demand, dated{at: when(), qty: qty()})
		}
		for _, withPastDue := range []bool{true, false} {
			got := s.curve(t0, withPastDue)
			dates, atp := referenceCurve(s, t0, withPastDue)
			same := slices.Equal(got.dates, dates) && len(got.atp) == len(atp)
			for i := 0; same && i < len(atp); i++ {
				same = money.Cmp(got.atp[i], atp[i]) == 0
			}
			if !same {
				t.Fatalf("supply %d (past due %v): curve %v %v, want %v %v", n, withPastDue, got.dates, got.atp, dates, atp)
			}
		}
	}
}
