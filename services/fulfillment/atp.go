package fulfillment

import (
	"cmp"
	"slices"
	"strings"
	"time"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/money"
)

// Available to promise (ATP), time-phased.
//
// The supply of one SKU at one site is its on hand now plus its open planned
// receipts on their due dates (a receipt already past due counts from now).
// Its demand is every active hard reservation and every live soft hold, each
// on the date it needs the stock at the site: now for stock promised from on
// hand, a receipt's due date for stock promised from that receipt. The net
// supply on a date is supply minus demand up to that date, and what can be
// promised on a date is the least net supply on that date or any later one:
// taking more would leave a later promise uncovered. That quantity only
// grows at a receipt's due date, so the earliest date a quantity can be
// covered is now or one of those dates.

// siteInfo is a site as availability needs it.
type siteInfo struct {
	ID      string
	Region  string
	Transit map[string]int32
}

func newSiteInfo(s *fulfillmentv1.Site) siteInfo {
	info := siteInfo{ID: s.GetId(), Region: s.GetRegion(), Transit: map[string]int32{}}
	for _, t := range s.GetTransitTimes() {
		info.Transit[t.GetRegion()] = t.GetDays()
	}
	return info
}

// transitDays is the site's transit time to region: its own entry, else the
// defaults for its own region and for any other.
func (s siteInfo) transitDays(region string) int32 {
	if d, ok := s.Transit[region]; ok {
		return d
	}
	if region == s.Region {
		return DefaultTransitDaysSameRegion
	}
	return DefaultTransitDaysOtherRegion
}

func days(n int32) time.Duration { return time.Duration(n) * 24 * time.Hour }

// dated is a quantity on a date. A zero date means "now".
type dated struct {
	at  time.Time
	qty *money.Decimal
}

// supply is the time-phased picture of one SKU at one site.
type supply struct {
	site   siteInfo
	onHand *money.Decimal
	plans  []dated // open planned receipts
	demand []dated // hard reservations and live soft holds
}

// curve is what a supply can promise over time: on dates[i] and until
// dates[i+1], atp[i] can be promised. atp never decreases.
type curve struct {
	dates []time.Time
	atp   []*money.Decimal
}

// curve computes the supply's ATP from now on. With withPastDue false,
// receipts already past due are left out, which tells stock on hand apart
// from late production.
func (s *supply) curve(now time.Time, withPastDue bool) curve {
	// Changes keyed by instant, so equal times from different decodings
	// meet; anything before now happens now.
	type change struct {
		at  int64
		qty *money.Decimal
		out bool // demand: taken away
	}
	nowNano := now.UnixNano()
	instant := func(at time.Time) int64 {
		if at.Before(now) {
			return nowNano
		}
		return at.UnixNano()
	}
	changes := make([]change, 0, len(s.plans)+len(s.demand))
	for _, p := range s.plans {
		if !withPastDue && !p.at.After(now) {
			continue
		}
		changes = append(changes, change{at: instant(p.at), qty: p.qty})
	}
	for _, d := range s.demand {
		changes = append(changes, change{at: instant(d.at), qty: d.qty, out: true})
	}
	slices.SortFunc(changes, func(x, y change) int { return cmp.Compare(x.at, y.at) })

	// The net supply after each instant, on hand now first, then the least
	// of it from each instant on.
	c := curve{dates: make([]time.Time, 0, len(changes)+1), atp: make([]*money.Decimal, 0, len(changes)+1)}
	run := s.onHand
	for i, ch := range changes {
		if ch.at != nowNano && i == 0 {
			c.dates = append(c.dates, time.Unix(0, nowNano).UTC())
			c.atp = append(c.atp, run)
		}
		if ch.out {
			run = money.Sub(run, ch.qty)
		} else {
			run = money.Add(run, ch.qty)
		}
		if i+1 < len(changes) && changes[i+1].at == ch.at {
			continue
		}
		c.dates = append(c.dates, time.Unix(0, ch.at).UTC())
		c.atp = append(c.atp, run)
	}
	if len(changes) == 0 {
		c.dates = append(c.dates, time.Unix(0, nowNano).UTC())
		c.atp = append(c.atp, run)
	}
	for i := len(c.atp) - 2; i >= 0; i-- {
		if money.Cmp(c.atp[i+1], c.atp[i]) < 0 {
			c.atp[i] = c.atp[i+1]
		}
	}
	return c
}

// at returns what can be promised on date d; nothing before the curve
// starts (the past), and never less than zero.
func (c curve) at(d time.Time) *money.Decimal {
	i, found := slices.BinarySearchFunc(c.dates, d, func(e, t time.Time) int { return e.Compare(t) })
	if !found {
		i--
	}
	if i < 0 || c.atp[i].Sign() <= 0 {
		return zero
	}
	return c.atp[i]
}

// zero is nothing; never changed.
var zero = money.Zero()

// earliest returns the first date q can be promised.
func (c curve) earliest(q *money.Decimal) (time.Time, bool) {
	for i, at := range c.dates {
		if money.Cmp(c.atp[i], q) >= 0 {
			return at, true
		}
	}
	return time.Time{}, false
}

// source is one part of a line's cover.
type source struct {
	site    siteInfo
	qty     *money.Decimal
	at      time.Time // date available at the site
	transit int32
	kind    string
}

func (s source) arrival() time.Time { return s.at.Add(days(s.transit)) }

// lineResult is the availability of one request line.
type lineResult struct {
	index    int
	sku      string
	base     *money.Decimal // nil when the line could not be converted
	baseUnit string
	covered  bool
	reason   string
	sources  []source
}

// promised is the date the whole line arrives: its last source's arrival.
func (r lineResult) promised() time.Time {
	var t time.Time
	for _, s := range r.sources {
		if a := s.arrival(); a.After(t) {
			t = a
		}
	}
	return t
}

// allocator covers the lines of one basket in request order. Lines of the
// same SKU draw on the same supplies: each allocation adds its demand, so
// a later line sees what an earlier one took.
type allocator struct {
	now    time.Time
	region string               // ship-to region
	items  map[string][]*supply // by SKU, in site id order
}

// better orders candidate sites: earliest arrival, then a site in the
// ship-to region, then the lower site id.
func (a *allocator) better(arrA time.Time, sa siteInfo, arrB time.Time, sb siteInfo) bool {
	if c := arrA.Compare(arrB); c != 0 {
		return c < 0
	}
	inA, inB := sa.Region == a.region, sb.Region == a.region
	if inA != inB {
		return inA
	}
	return strings.Compare(sa.ID, sb.ID) < 0
}

// allocate covers q of sku, from one site or, when split is allowed and it
// helps, from several. It records the demand of what it takes and returns
// the sources, or false when q cannot be covered (nothing is recorded).
func (a *allocator) allocate(sku string, q *money.Decimal, split bool) ([]source, bool) {
	sups := a.items[sku]
	curves := make([]curve, len(sups))
	transit := make([]time.Duration, len(sups)) // to the ship-to region
	for i, s := range sups {
		curves[i] = s.curve(a.now, true)
		transit[i] = days(s.site.transitDays(a.region))
	}

	// The best single site.
	best := -1
	var bestAt, bestArr time.Time
	for i, s := range sups {
		at, ok := curves[i].earliest(q)
		if !ok {
			continue
		}
		arr := at.Add(transit[i])
		if best < 0 || a.better(arr, s.site, bestArr, sups[best].site) {
			best, bestAt, bestArr = i, at, arr
		}
	}
	if split {
		if srcs, ok := a.split(sups, curves, transit, q, best, bestArr); ok {
			return srcs, true
		}
	}
	if best < 0 {
		return nil, false
	}
	return []source{a.take(sups[best], q, bestAt)}, true
}

// split looks for the earliest arrival T by which the sites together can
// deliver q. When a single site arrives by T too, split reports false and
// the caller uses that site: a line is split only to arrive earlier or to
// be covered at all.
func (a *allocator) split(sups []*supply, curves []curve, transit []time.Duration, q *money.Decimal, best int, bestArr time.Time) ([]source, bool) {
	var ts []time.Time
	for i := range sups {
		for _, d := range curves[i].dates {
			ts = append(ts, d.Add(transit[i]))
		}
	}
	slices.SortFunc(ts, func(x, y time.Time) int { return x.Compare(y) })
	ts = slices.Compact(ts)
	capAt := func(i int, t time.Time) *money.Decimal {
		return curves[i].at(t.Add(-transit[i]))
	}
	for _, t := range ts {
		if best >= 0 && !bestArr.After(t) {
			return nil, false
		}
		total := money.Zero()
		for i := range sups {
			total = money.Add(total, capAt(i, t))
		}
		if money.Cmp(total, q) < 0 {
			continue
		}
		// Take from the sites in preference order of their first unit's
		// arrival; each gives what it can by T.
		type cand struct {
			i     int
			first time.Time
		}
		var cands []cand
		for i := range sups {
			c := capAt(i, t)
			if c.Sign() <= 0 {
				continue
			}
			at, _ := curves[i].earliest(smallestPositive(c))
			cands = append(cands, cand{i: i, first: at.Add(transit[i])})
		}
		slices.SortFunc(cands, func(x, y cand) int {
			if a.better(x.first, sups[x.i].site, y.first, sups[y.i].site) {
				return -1
			}
			return 1
		})
		var out []source
		remaining := q
		for _, c := range cands {
			if remaining.Sign() <= 0 {
				break
			}
			take := capAt(c.i, t)
			if money.Cmp(take, remaining) > 0 {
				take = remaining
			}
			at, _ := curves[c.i].earliest(take)
			out = append(out, a.take(sups[c.i], take, at))
			remaining = money.Sub(remaining, take)
		}
		return out, true
	}
	return nil, false
}

// smallestPositive is a quantity small enough to ask "when does any stock
// become available": one millionth, the finest a Quantity holds, or cap
// itself when that is smaller.
func smallestPositive(cap *money.Decimal) *money.Decimal {
	if money.Cmp(cap, tiny) < 0 {
		return cap
	}
	return tiny
}

// tiny is the finest quantity; never changed.
var tiny = money.MustParse("0.000001")

// take records q taken from s on date at and returns the source.
func (a *allocator) take(s *supply, q *money.Decimal, at time.Time) source {
	kind := SourcePlannedReceipt
	if !at.After(a.now) {
		// Available now: from stock on hand, unless it takes production
		// that is past due but not yet received.
		if money.Cmp(s.curve(a.now, false).at(a.now), q) >= 0 {
			kind = SourceOnHand
		}
		at = a.now
	}
	s.demand = append(s.demand, dated{at: at, qty: q})
	return source{site: s.site, qty: q, at: at, transit: s.site.transitDays(a.region), kind: kind}
}
