package productpricing

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/money"
)

// memCatalog is an in-memory catalog for the domain tests; the store's
// implementation is tested against the same expectations in store_test.go.
type memCatalog struct {
	products map[string]*productpricingv1.Product
	lists    []*productpricingv1.PriceList
}

func newCatalog(products []*productpricingv1.Product, lists ...*productpricingv1.PriceList) *memCatalog {
	c := &memCatalog{products: map[string]*productpricingv1.Product{}, lists: lists}
	for _, p := range products {
		c.products[p.GetSku()] = p
	}
	return c
}

func (c *memCatalog) Product(sku string) (*catalogProduct, error) {
	p, ok := c.products[sku]
	if !ok {
		return nil, nil
	}
	return compileProduct(p)
}

func (c *memCatalog) Candidates(sku, currency string) ([]candidate, error) {
	var out []candidate
	for _, pl := range c.lists {
		if pl.GetCurrencyCode() != currency {
			continue
		}
		for _, e := range pl.GetEntries() {
			if e.GetSku() == sku {
				head := proto.Clone(pl).(*productpricingv1.PriceList)
				head.Entries = nil
				cand, err := newCandidate(head, e)
				if err != nil {
					return nil, err
				}
				out = append(out, cand)
				break
			}
		}
	}
	return out, nil
}

// asCandidates wraps lists for resolve, which only looks at the headers.
func asCandidates(lists []*productpricingv1.PriceList) []candidate {
	out := make([]candidate, len(lists))
	for i, pl := range lists {
		out[i] = candidate{list: pl}
	}
	return out
}

func line(sku, v, unit string) *productpricingv1.SimulationLine {
	return &productpricingv1.SimulationLine{Sku: sku, Quantity: qty(v, unit)}
}

// scoped returns a one-entry EUR list for VALVE-100 with a scope and priority.
func scoped(id, region, tier, customer string, priority int32, price string) *productpricingv1.PriceList {
	pl := list(id, "EUR", entry("VALVE-100", "EA", price))
	pl.Region, pl.CustomerTier, pl.CustomerId, pl.Priority = region, tier, customer, priority
	return pl
}

func TestResolutionPrecedence(t *testing.T) {
	var (
		global     = scoped("pl_global", "", "", "", 0, "10")
		tierOnly   = scoped("pl_gold", "", "gold", "", 0, "9")
		region     = scoped("pl_eu", "eu", "", "", 0, "8")
		tierRegion = scoped("pl_eu_gold", "eu", "gold", "", 0, "7")
		customer   = scoped("pl_acme", "", "", acmeEU.ID, 0, "6")
		naRegion   = scoped("pl_na", "na", "", "", 0, "5")
	)
	tests := []struct {
		name     string
		lists    []*productpricingv1.PriceList
		customer CustomerFacts
		want     string // winning list id, "" for none
		scope    string
	}{
		{"customer beats tier+region", []*productpricingv1.PriceList{global, tierOnly, region, tierRegion, customer}, acmeEU, "pl_acme", ScopeCustomer},
		{"tier+region beats region", []*productpricingv1.PriceList{global, tierOnly, region, tierRegion}, acmeEU, "pl_eu_gold", ScopeTierRegion},
		{"region beats tier-only", []*productpricingv1.PriceList{global, tierOnly, region}, acmeEU, "pl_eu", ScopeRegion},
		{"tier-only beats global", []*productpricingv1.PriceList{global, tierOnly}, acmeEU, "pl_gold", ScopeTier},
		{"global when nothing else applies", []*productpricingv1.PriceList{global, tierOnly, naRegion, tierRegion, customer}, silverEU, "pl_global", ScopeGlobal},
		{"another region's list never applies", []*productpricingv1.PriceList{naRegion}, acmeEU, "", ""},
		{"another customer's list never applies", []*productpricingv1.PriceList{customer, global}, plainEU, "pl_global", ScopeGlobal},
		{"a tier list needs the customer's tier", []*productpricingv1.PriceList{tierRegion, region}, plainEU, "pl_eu", ScopeRegion},
		{"customer list naming the customer's region applies",
			[]*productpricingv1.PriceList{with(customer, func(p *productpricingv1.PriceList) { p.Region = "eu" }), tierRegion}, acmeEU, "pl_acme", ScopeCustomer},
		{"customer list naming another region does not",
			[]*productpricingv1.PriceList{with(customer, func(p *productpricingv1.PriceList) { p.Region = "na" }), tierRegion}, acmeEU, "pl_eu_gold", ScopeTierRegion},
		{"higher priority wins within a scope",
			[]*productpricingv1.PriceList{scoped("pl_low", "eu", "", "", 1, "8"), scoped("pl_high", "eu", "", "", 5, "9"), scoped("pl_mid", "eu", "", "", 3, "7")}, acmeEU, "pl_high", ScopeRegion},
		{"scope beats priority",
			[]*productpricingv1.PriceList{scoped("pl_g", "", "", "", 1000, "1"), scoped("pl_r", "eu", "", "", 0, "2")}, acmeEU, "pl_r", ScopeRegion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(asCandidates(tt.lists), tt.customer, now)
			if got == nil {
				if tt.want != "" {
					t.Fatalf("resolved nothing, want %q", tt.want)
				}
				return
			}
			if got.list.GetId() != tt.want {
				t.Fatalf("resolved %q, want %q", got.list.GetId(), tt.want)
			}
			if ScopeOf(got.list) != tt.scope {
				t.Errorf("scope %s, want %s", ScopeOf(got.list), tt.scope)
			}
		})
	}
}

func TestResolutionValidity(t *testing.T) {
	window := func(id string, from time.Time, to *time.Time) *productpricingv1.PriceList {
		pl := scoped(id, "eu", "", "", 0, "1")
		pl.ValidFrom = ts(from)
		if to != nil {
			pl.ValidTo = ts(*to)
		}
		return pl
	}
	febOnly := window("pl_feb", feb1, &mar1)
	fromMar := window("pl_mar", mar1, nil)
	tests := []struct {
		name string
		at   time.Time
		want string
	}{
		{"before every window", jan1, ""},
		{"from is inclusive", feb1, "pl_feb"},
		{"inside", now, "pl_feb"},
		{"to is exclusive: the next list takes over", mar1, "pl_mar"},
		{"open-ended", mar1.AddDate(5, 0, 0), "pl_mar"},
		{"one nanosecond before the end", mar1.Add(-time.Nanosecond), "pl_feb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(asCandidates([]*productpricingv1.PriceList{febOnly, fromMar}), acmeEU, tt.at)
			id := ""
			if got != nil {
				id = got.list.GetId()
			}
			if id != tt.want {
				t.Fatalf("resolved %q at %s, want %q", id, tt.at, tt.want)
			}
		})
	}
}

func TestQuantityBreaks(t *testing.T) {
	// 10.00 each, 9.00 from 10, 8.00 from 100, 7.50 from 1000.
	pl := list("pl_breaks", "EUR", entry("VALVE-100", "EA", "10", "10", "9", "100", "8", "1000", "7.5"))
	cat := newCatalog([]*productpricingv1.Product{valve()}, pl)
	tests := []struct {
		name      string
		line      *productpricingv1.SimulationLine
		breakMin  string
		unitPrice string
		priced    string
		total     string
	}{
		{"below the first break", line("VALVE-100", "9", "EA"), "", "10.00", "9", "90.00"},
		{"exactly at a break", line("VALVE-100", "10", "EA"), "10", "9.00", "10", "90.00"},
		{"between breaks", line("VALVE-100", "99", "EA"), "10", "9.00", "99", "891.00"},
		{"highest break reached", line("VALVE-100", "1000", "EA"), "1000", "7.50", "1000", "7500.00"},
		{"break judged on the converted quantity", line("VALVE-100", "1", "CASE"), "10", "9.00", "12", "108.00"},
		{"pallet converts into a high break", line("VALVE-100", "3", "PALLET"), "1000", "7.50", "1440", "10800.00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := Simulate(cat, acmeEU, "EUR", now, []*productpricingv1.SimulationLine{tt.line})
			if err != nil {
				t.Fatal(err)
			}
			l := resp.GetLines()[0]
			if l.GetStatus() != productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED {
				t.Fatalf("status %s %s", l.GetStatus(), l.GetReason())
			}
			got := []string{l.GetAppliedBreakMinQuantity(), l.GetUnitPrice().GetAmount(), l.GetPricedQuantity().GetValue(), l.GetLineTotal().GetAmount()}
			want := []string{tt.breakMin, tt.unitPrice, tt.priced, tt.total}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("break, unit price, priced qty, total = %q, want %q", got, want)
			}
			if l.GetPricedQuantity().GetUnit() != "EA" {
				t.Errorf("priced in %s, want the entry's unit EA", l.GetPricedQuantity().GetUnit())
			}
		})
	}
}

func TestRoundingOncePerLine(t *testing.T) {
	tests := []struct {
		name     string
		currency string
		price    string
		lines    []*productpricingv1.SimulationLine
		totals   []string
		total    string
	}{
		// 0.469 × 5 = 2.345: a tie, rounds to the even cent.
		{"tie rounds down to even", "EUR", "0.469", []*productpricingv1.SimulationLine{line("VALVE-100", "5", "EA")}, []string{"2.34"}, "2.34"},
		// 0.471 × 5 = 2.355: a tie, rounds up to the even cent.
		{"tie rounds up to even", "EUR", "0.471", []*productpricingv1.SimulationLine{line("VALVE-100", "5", "EA")}, []string{"2.36"}, "2.36"},
		// Each line rounds on its own; the total is the sum of the rounded
		// lines (4.68), not the rounded sum of exact lines (4.69).
		{"total is the sum of rounded lines", "EUR", "0.469",
			[]*productpricingv1.SimulationLine{line("VALVE-100", "5", "EA"), line("VALVE-100", "5", "EA")}, []string{"2.34", "2.34"}, "4.68"},
		// The unit price is not rounded first: 0.0125 × 3 = 0.0375 → 0.04.
		{"unit price finer than a cent", "EUR", "0.0125", []*productpricingv1.SimulationLine{line("VALVE-100", "3", "EA")}, []string{"0.04"}, "0.04"},
		{"yen has no decimals, tie to even up", "JPY", "12.5", []*productpricingv1.SimulationLine{line("VALVE-100", "3", "EA")}, []string{"38"}, "38"},
		{"yen tie to even down", "JPY", "12.5", []*productpricingv1.SimulationLine{line("VALVE-100", "5", "EA")}, []string{"62"}, "62"},
		{"three-decimal dinar", "KWD", "0.0005", []*productpricingv1.SimulationLine{line("VALVE-100", "5", "EA")}, []string{"0.002"}, "0.002"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cat := newCatalog([]*productpricingv1.Product{valve()}, list("pl_1", tt.currency, entry("VALVE-100", "EA", tt.price)))
			resp, err := Simulate(cat, acmeEU, tt.currency, now, tt.lines)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tt.totals {
				if got := resp.GetLines()[i].GetLineTotal().GetAmount(); got != want {
					t.Errorf("line %d total %s, want %s", i, got, want)
				}
			}
			if got := resp.GetTotal().GetAmount(); got != tt.total || resp.GetTotal().GetCurrencyCode() != tt.currency {
				t.Errorf("total %s %s, want %s %s", got, resp.GetTotal().GetCurrencyCode(), tt.total, tt.currency)
			}
		})
	}
}

func TestWeightConversionPricing(t *testing.T) {
	// Resin is priced per KG; orders come in LB, KG and bags.
	perKG := list("pl_kg", "USD", entry("RESIN-PP", "KG", "2.00", "1000", "1.80"))
	perLB := list("pl_lb", "EUR", entry("RESIN-PP", "LB", "1.00"))
	cat := newCatalog([]*productpricingv1.Product{resin()}, perKG, perLB)
	tests := []struct {
		name     string
		currency string
		line     *productpricingv1.SimulationLine
		priced   string
		total    string
		reason   string
	}{
		// 1 LB = 0.45359237 KG exactly; 0.90718474 rounds once, to 0.91.
		{"one pound priced per kilogram", "USD", line("RESIN-PP", "1", "LB"), "0.45359237", "0.91", ""},
		// 50 LB = 22.6796185 KG: more fraction digits than an input
		// quantity may have, kept exact for the explanation.
		{"a 50 lb sack", "USD", line("RESIN-PP", "50", "LB"), "22.6796185", "45.36", ""},
		{"bags reach the kilogram break", "USD", line("RESIN-PP", "40", "BAG"), "1000", "1800.00", ""},
		// Priced per LB, ordered in KG: 1 KG is 2.2046226… LB, which has
		// no exact value, so the line says so instead of guessing.
		{"kilograms priced per pound do not convert exactly", "EUR", line("RESIN-PP", "1", "KG"), "", "", ReasonNotConvertible},
		{"kilograms that happen to be whole pounds do", "EUR", line("RESIN-PP", "45.359237", "KG"), "100", "100.00", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := Simulate(cat, boltNA, tt.currency, now, []*productpricingv1.SimulationLine{tt.line})
			if err != nil {
				t.Fatal(err)
			}
			l := resp.GetLines()[0]
			if tt.reason != "" {
				if l.GetStatus() != productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_INVALID || l.GetReason() != tt.reason {
					t.Fatalf("status %s reason %q, want INVALID %s", l.GetStatus(), l.GetReason(), tt.reason)
				}
				if l.GetPriceListId() != "pl_lb" {
					t.Errorf("the line should name the list it could not use, got %q", l.GetPriceListId())
				}
				if resp.GetTotal().GetAmount() != "0.00" {
					t.Errorf("total %s, want 0.00", resp.GetTotal().GetAmount())
				}
				return
			}
			if l.GetPricedQuantity().GetValue() != tt.priced || l.GetLineTotal().GetAmount() != tt.total {
				t.Errorf("priced %s, total %s; want %s, %s", l.GetPricedQuantity().GetValue(), l.GetLineTotal().GetAmount(), tt.priced, tt.total)
			}
		})
	}
}

func TestLinesWithoutPriceDoNotFailTheBasket(t *testing.T) {
	discontinued := with(valve(), func(p *productpricingv1.Product) {
		p.Sku, p.Status = "VALVE-OLD", productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED
	})
	unpriced := with(valve(), func(p *productpricingv1.Product) { p.Sku = "VALVE-NEW" })
	eu := list("pl_eu", "EUR", entry("VALVE-100", "CASE", "120.00"), entry("VALVE-OLD", "EA", "5"))
	eu.Region = "eu"
	usd := list("pl_usd", "USD", entry("VALVE-NEW", "EA", "1"))
	cat := newCatalog([]*productpricingv1.Product{valve(), discontinued, unpriced, resin()}, eu, usd)

	lines := []*productpricingv1.SimulationLine{
		line("VALVE-100", "2", "CASE"),   // priced
		line("VALVE-OLD", "1", "EA"),     // discontinued
		line("VALVE-NEW", "1", "EA"),     // only a USD price
		line("NOPE-1", "1", "EA"),        // unknown product
		line("VALVE-100", "1", "KG"),     // unknown unit
		line("VALVE-100", "1.5", "EA"),   // not whole
		line("RESIN-PP", "1", "KG"),      // no list at all
		line("VALVE-100", "24", "EA"),    // priced, converted into CASE
		line("VALVE-100", "6", "EA"),     // half a case is fine to price
		line("VALVE-100", "0.5", "CASE"), // CASE is indivisible
	}
	resp, err := Simulate(cat, acmeEU, "EUR", now, lines)
	if err != nil {
		t.Fatal(err)
	}
	const (
		priced  = productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED
		noPrice = productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_NO_PRICE
		disc    = productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_DISCONTINUED
		inval   = productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_INVALID
	)
	want := []struct {
		status productpricingv1.LinePriceStatus
		reason string
		total  string
	}{
		{priced, "", "240.00"},
		{disc, ReasonDiscontinued, ""},
		{noPrice, ReasonNoPrice, ""},
		{inval, ReasonUnknownProduct, ""},
		{inval, ReasonUnknownUnit, ""},
		{inval, ReasonNotWholeUnits, ""},
		{noPrice, ReasonNoPrice, ""},
		{priced, "", "240.00"},
		{priced, "", "60.00"},
		{inval, ReasonNotWholeUnits, ""},
	}
	if len(resp.GetLines()) != len(want) {
		t.Fatalf("%d lines, want %d", len(resp.GetLines()), len(want))
	}
	for i, w := range want {
		t.Run(fmt.Sprintf("line %d %s", i, lines[i].GetSku()), func(t *testing.T) {
			l := resp.GetLines()[i]
			if l.GetIndex() != int32(i) || l.GetSku() != lines[i].GetSku() || !proto.Equal(l.GetQuantity(), lines[i].GetQuantity()) {
				t.Errorf("line echoes index %d sku %s quantity %v", l.GetIndex(), l.GetSku(), l.GetQuantity())
			}
			if l.GetStatus() != w.status || l.GetReason() != w.reason || l.GetLineTotal().GetAmount() != w.total {
				t.Errorf("status %s reason %q total %q, want %s %q %q", l.GetStatus(), l.GetReason(), l.GetLineTotal().GetAmount(), w.status, w.reason, w.total)
			}
			if w.status == priced {
				if l.GetPriceListId() != "pl_eu" || l.GetPriceListScope() != ScopeRegion || l.GetUnitPrice().GetAmount() != "120.00" || l.GetPricedQuantity().GetUnit() != "CASE" {
					t.Errorf("explanation: list %s scope %s unit price %s priced in %s", l.GetPriceListId(), l.GetPriceListScope(), l.GetUnitPrice().GetAmount(), l.GetPricedQuantity().GetUnit())
				}
			}
		})
	}
	if got := resp.GetTotal().GetAmount(); got != "540.00" {
		t.Errorf("total %s, want 540.00 (the priced lines only)", got)
	}
	if !resp.GetPriceTime().AsTime().Equal(now) {
		t.Errorf("price time %v, want %v", resp.GetPriceTime().AsTime(), now)
	}
}

func TestFallsThroughToAListThatPricesTheSKU(t *testing.T) {
	// The customer's own list does not carry the resin; the region list
	// does. A better-scoped list without the SKU must not hide it.
	own := list("pl_acme", "EUR", entry("VALVE-100", "EA", "1"))
	own.CustomerId = acmeEU.ID
	eu := list("pl_eu", "EUR", entry("RESIN-PP", "KG", "3"))
	eu.Region = "eu"
	cat := newCatalog([]*productpricingv1.Product{valve(), resin()}, own, eu)
	resp, err := Simulate(cat, acmeEU, "EUR", now, []*productpricingv1.SimulationLine{line("RESIN-PP", "2", "KG"), line("VALVE-100", "2", "EA")})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetLines()[0].GetPriceListId(); got != "pl_eu" {
		t.Errorf("resin priced by %q, want pl_eu", got)
	}
	if got := resp.GetLines()[1].GetPriceListId(); got != "pl_acme" {
		t.Errorf("valve priced by %q, want pl_acme", got)
	}
	if resp.GetTotal().GetAmount() != "8.00" {
		t.Errorf("total %s, want 8.00", resp.GetTotal().GetAmount())
	}
}

func TestSimulateRejectsMalformedRequests(t *testing.T) {
	cat := newCatalog([]*productpricingv1.Product{valve()})
	tests := []struct {
		name     string
		currency string
		lines    []*productpricingv1.SimulationLine
		field    string
	}{
		{"unknown currency", "XXX", []*productpricingv1.SimulationLine{line("VALVE-100", "1", "EA")}, "currency_code"},
		{"no lines", "EUR", nil, "lines"},
		{"quantity not a number", "EUR", []*productpricingv1.SimulationLine{line("VALVE-100", "1", "EA"), line("VALVE-100", "one", "EA")}, "lines[1].quantity.value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Simulate(cat, acmeEU, tt.currency, now, tt.lines)
			wantInvalid(t, err, "", tt.field, "")
		})
	}
}

func TestFormatAmount(t *testing.T) {
	tests := []struct {
		name, in string
		scale    int
		want     string
	}{
		{"pads to the currency scale", "12.5", 2, "12.50"},
		{"whole amount", "12", 2, "12.00"},
		{"finer than the scale stays exact", "0.0125", 2, "0.0125"},
		{"trailing zeros beyond the scale drop", "1.250000", 2, "1.25"},
		{"zero-decimal currency", "1500", 0, "1500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := money.MustParse(tt.in)
			if got := formatAmount(d, tt.scale); got != tt.want {
				t.Errorf("formatAmount(%s, %d) = %s, want %s", tt.in, tt.scale, got, tt.want)
			}
		})
	}
}
