package productpricing

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/money"
)

// catalog is what pricing reads. The store implements it over one read
// transaction and an in-memory cache, through indexes, so pricing a basket
// never scans every list. What it returns is shared and must not be changed.
type catalog interface {
	// Product returns the product with a SKU and its compiled units, nil
	// when there is none.
	Product(sku string) (*catalogProduct, error)
	// Candidates returns, for every list in a currency that has an entry for
	// a SKU, the list's header (without entries) and that entry.
	Candidates(sku, currency string) ([]candidate, error)
}

// catalogProduct is a product with its units compiled once.
type catalogProduct struct {
	product *productpricingv1.Product
	units   *units
}

func compileProduct(p *productpricingv1.Product) (*catalogProduct, error) {
	t, err := compileUnits(p, "")
	if err != nil {
		return nil, fmt.Errorf("product %s has invalid units: %w", p.GetSku(), err)
	}
	return &catalogProduct{product: p, units: t}, nil
}

// candidate is a list that prices a SKU, with its entry for it. The entry's
// prices are parsed once, by newCandidate, so a cached candidate prices a
// line without parsing a string.
type candidate struct {
	list   *productpricingv1.PriceList
	entry  *productpricingv1.PriceEntry
	price  *money.Decimal
	breaks []parsedBreak
}

type parsedBreak struct {
	min, price *money.Decimal
}

func newCandidate(list *productpricingv1.PriceList, e *productpricingv1.PriceEntry) (candidate, error) {
	c := candidate{list: list, entry: e}
	var err error
	if c.price, err = money.Parse(e.GetUnitPrice()); err != nil {
		return c, fmt.Errorf("list %s entry %s: unit price %q: %w", list.GetId(), e.GetSku(), e.GetUnitPrice(), err)
	}
	for _, b := range e.GetBreaks() {
		var pb parsedBreak
		if pb.min, err = money.Parse(b.GetMinQuantity()); err != nil {
			return c, fmt.Errorf("list %s entry %s: break %q: %w", list.GetId(), e.GetSku(), b.GetMinQuantity(), err)
		}
		if pb.price, err = money.Parse(b.GetUnitPrice()); err != nil {
			return c, fmt.Errorf("list %s entry %s: break price %q: %w", list.GetId(), e.GetSku(), b.GetUnitPrice(), err)
		}
		c.breaks = append(c.breaks, pb)
	}
	return c, nil
}

// maxMoneyIntDigits is the integer part a contract Money amount can carry.
const maxMoneyIntDigits = 15

// resolve picks the list that prices a SKU for a customer on a date from the
// lists that have an entry for it: among those valid at t whose scope
// covers the customer, the most specific scope wins (see scopeRank), then
// the higher priority. Equal scope and priority with overlapping validity
// is refused when lists are written, so there is no tie to break; should
// one ever exist, the later-created list (higher id) wins, deterministically.
func resolve(candidates []candidate, c CustomerFacts, t time.Time) *candidate {
	var best *candidate
	bestRank := 0
	for i := range candidates {
		pl := candidates[i].list
		if !validAt(pl, t) || !appliesTo(pl, c) {
			continue
		}
		r := scopeRank(ScopeOf(pl))
		switch {
		case best == nil, r > bestRank,
			r == bestRank && pl.GetPriority() > best.list.GetPriority(),
			r == bestRank && pl.GetPriority() == best.list.GetPriority() && pl.GetId() > best.list.GetId():
			best, bestRank = &candidates[i], r
		}
	}
	return best
}

// applyBreak returns the unit price for a quantity in the entry's unit: the
// price of the highest break whose minimum the quantity reaches, or the
// entry's base price (and an empty minimum) below the first break.
func applyBreak(c *candidate, qty *money.Decimal) (price *money.Decimal, breakMin string) {
	price = c.price
	for i, b := range c.breaks {
		if money.Cmp(qty, b.min) < 0 {
			break // breaks ascend
		}
		price, breakMin = b.price, c.entry.GetBreaks()[i].GetMinQuantity()
	}
	return price, breakMin
}

// formatAmount renders an amount with the currency's scale ("12.50"), or
// with its own scale when it is finer: a unit price of 0.0125 EUR stays
// exact rather than being shown as 0.01.
func formatAmount(d *money.Decimal, scale int) string {
	var r money.Decimal
	r.Reduce(d)
	if money.Scale(&r) > scale {
		return r.Text('f')
	}
	return money.FormatScale(&r, scale)
}

func fitsMoney(d *money.Decimal) bool {
	var r money.Decimal
	r.Reduce(d)
	return int(r.NumDigits())+int(r.Exponent) <= maxMoneyIntDigits
}

// simulation prices one basket.
type simulation struct {
	cat      catalog
	customer CustomerFacts
	currency string
	scale    int
	at       time.Time
	parts    []lineParts // one per basket line, allocated at once
}

// lineParts is a priced line and the messages it points to, allocated
// together: a basket's answer costs one allocation for its lines instead
// of five per line.
type lineParts struct {
	line                 productpricingv1.PricedLine
	quantity, priced     typev1.Quantity
	unitPrice, lineTotal typev1.Money
}

// Simulate prices a basket for a customer in a currency at time at, and
// explains every line. A line that cannot be priced (unknown product or
// unit, discontinued product, no list with a price, a quantity that does not
// convert exactly into the price's unit) says so on the line with a stable
// reason; the rest of the basket is still priced. Only input that is
// malformed as a whole (an unknown currency, a quantity that is not a
// number) fails the request.
//
// Each line: the quantity is converted exactly into the unit of the winning
// list's entry, the highest quantity break reached sets the unit price, and
// line total = unit price × quantity, rounded half-even once, to the
// currency's minor unit. The basket total is the sum of the rounded line
// totals, so it always equals what the lines show.
//
// The priced quantity is exact and may carry more than the six fraction
// digits an input Quantity allows (50 LB is 22.6796185 KG): it explains the
// arithmetic, and rounding it would change the line total.
func Simulate(cat catalog, c CustomerFacts, currency string, at time.Time, lines []*productpricingv1.SimulationLine) (*productpricingv1.SimulatePricesResponse, error) {
	scale, ok := money.MinorUnits(currency)
	if !ok {
		return nil, invalid("currency_code", "%q is not an active ISO 4217 currency", currency)
	}
	if len(lines) == 0 {
		return nil, invalid("lines", "name at least one line to price")
	}
	qtys := make([]*money.Decimal, len(lines))
	var v violations
	for i, l := range lines {
		q, err := money.Parse(l.GetQuantity().GetValue())
		if err != nil || q.Negative {
			v.add(fieldPath(indexed("lines", i), "quantity.value"), "%q is not a non-negative decimal number", l.GetQuantity().GetValue())
			continue
		}
		qtys[i] = q
	}
	if err := v.err(); err != nil {
		return nil, err
	}

	s := &simulation{cat: cat, customer: c, currency: currency, scale: scale, at: at, parts: make([]lineParts, len(lines))}
	resp := &productpricingv1.SimulatePricesResponse{PriceTime: timestamppb.New(at), Lines: make([]*productpricingv1.PricedLine, 0, len(lines))}
	total := money.Zero()
	for i, l := range lines {
		pl, lineTotal, err := s.priceLine(i, l, qtys[i])
		if err != nil {
			return nil, err
		}
		if lineTotal != nil {
			total = money.Add(total, lineTotal)
		}
		resp.Lines = append(resp.Lines, pl)
	}
	if !fitsMoney(total) {
		return nil, invalidReason(ReasonOutOfRange, nil, "lines", "the basket total exceeds %d integer digits", maxMoneyIntDigits)
	}
	resp.Total = &typev1.Money{CurrencyCode: currency, Amount: money.FormatScale(total, scale)}
	return resp, nil
}

// priceLine prices one line. It returns the line and its rounded total, or a
// nil total when the line has no price. An error is a fault reading the
// catalog, never a property of the line.
func (s *simulation) priceLine(i int, l *productpricingv1.SimulationLine, qty *money.Decimal) (*productpricingv1.PricedLine, *money.Decimal, error) {
	parts := &s.parts[i]
	out := &parts.line
	out.Index, out.Sku = int32(i), l.GetSku()
	out.Quantity = &parts.quantity
	out.Quantity.Value, out.Quantity.Unit = l.GetQuantity().GetValue(), l.GetQuantity().GetUnit()
	refuse := func(status productpricingv1.LinePriceStatus, reason string) (*productpricingv1.PricedLine, *money.Decimal, error) {
		out.Status, out.Reason = status, reason
		return out, nil, nil
	}
	const invalidStatus = productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_INVALID

	cp, err := s.cat.Product(l.GetSku())
	if err != nil {
		return nil, nil, err
	}
	if cp == nil {
		return refuse(invalidStatus, ReasonUnknownProduct)
	}
	p, t := cp.product, cp.units
	if p.GetStatus() == productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED {
		return refuse(productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_DISCONTINUED, ReasonDiscontinued)
	}
	from, ok := t.lookup(l.GetQuantity().GetUnit())
	if !ok {
		return refuse(invalidStatus, ReasonUnknownUnit)
	}
	if checkWhole(t, qty, from, "") != nil {
		// 2.5 EA of an indivisible EA cannot be ordered, so it is not priced.
		return refuse(invalidStatus, ReasonNotWholeUnits)
	}

	cands, err := s.cat.Candidates(l.GetSku(), s.currency)
	if err != nil {
		return nil, nil, err
	}
	best := resolve(cands, s.customer, s.at)
	if best == nil {
		return refuse(productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_NO_PRICE, ReasonNoPrice)
	}
	out.PriceListId, out.PriceListScope = best.list.GetId(), ScopeOf(best.list)
	to, ok := t.lookup(best.entry.GetUnit())
	if !ok {
		// Updates that drop a unit still in a price list are refused, so this
		// is only reachable through data written before that rule.
		return refuse(invalidStatus, ReasonNotConvertible)
	}
	priced, ok := t.convert(qty, from, to)
	if !ok {
		// The best list prices in a unit this quantity does not convert to
		// exactly (KG ordered, priced per LB). Falling back to another list
		// would silently charge a different price, so the line says why.
		return refuse(invalidStatus, ReasonNotConvertible)
	}
	price, breakMin := applyBreak(best, priced)
	exact, ok := money.MulExact(price, priced)
	if !ok || !fitsMoney(exact) {
		// Checked before rounding too: rounding a huge value to the minor
		// unit could exceed the arithmetic's precision.
		return refuse(invalidStatus, ReasonOutOfRange)
	}
	lineTotal := money.RoundHalfEven(exact, s.scale)
	if !fitsMoney(lineTotal) { // 999…999.995 rounds up one more digit
		return refuse(invalidStatus, ReasonOutOfRange)
	}
	out.Status = productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED
	out.PricedQuantity = &parts.priced
	out.PricedQuantity.Value, out.PricedQuantity.Unit = money.Format(priced), to.code
	out.AppliedBreakMinQuantity = breakMin
	out.UnitPrice = &parts.unitPrice
	out.UnitPrice.CurrencyCode, out.UnitPrice.Amount = s.currency, formatAmount(price, s.scale)
	out.LineTotal = &parts.lineTotal
	out.LineTotal.CurrencyCode, out.LineTotal.Amount = s.currency, money.FormatScale(lineTotal, s.scale)
	return out, lineTotal, nil
}
