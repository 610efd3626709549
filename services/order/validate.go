package order

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/money"
)

// The contract's field rules. The platform checks them before a handler
// runs; the domain checks them again so that its store stays sound whoever
// calls it, and adds the rules that need more than a pattern (a currency in
// the ISO table, a quantity above zero, a validity in the future).
var (
	regionPattern    = regexp.MustCompile(`^[a-z][a-z0-9-]{1,31}$`)
	currencyPattern  = regexp.MustCompile(`^[A-Z]{3}$`)
	unitPattern      = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,15}$`)
	quantityPattern  = regexp.MustCompile(`^(0|[1-9][0-9]{0,11})(\.[0-9]{1,6})?$`)
	refSystemPattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{1,31}$`)
)

// checker collects every problem of a request before answering, so a
// caller fixes its input in one round trip.
type checker struct{ v []fieldViolation }

func (c *checker) add(field, format string, args ...any) {
	c.v = append(c.v, fieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (c *checker) err() error {
	if len(c.v) == 0 {
		return nil
	}
	return &invalidError{Violations: c.v}
}

func (c *checker) length(field, s string, minLen, maxLen int) {
	switch {
	case len(s) < minLen && minLen == 1:
		c.add(field, "is required")
	case len(s) < minLen:
		c.add(field, "must be at least %d characters", minLen)
	case len(s) > maxLen:
		c.add(field, "must be at most %d characters", maxLen)
	}
}

// basket is what quotes and orders share: who, where, in which currency,
// and the lines.
type basket struct {
	customerID, currency, region string
	lines                        []*orderv1.OrderLine
	ref                          *typev1.ExternalRef
}

func (c *checker) basket(path string, b basket) {
	c.length(path+".customer_id", b.customerID, 1, 64)
	switch {
	case !currencyPattern.MatchString(b.currency):
		c.add(path+".currency_code", "must be an ISO 4217 code such as EUR")
	case !money.KnownCurrency(b.currency):
		c.add(path+".currency_code", "%q is not an active ISO 4217 currency", b.currency)
	}
	if !regionPattern.MatchString(b.region) {
		c.add(path+".ship_to_region", "must be a region code such as eu or us-east (lowercase letters, digits and '-')")
	}
	switch n := len(b.lines); {
	case n == 0:
		c.add(path+".lines", "needs at least one line")
	case n > MaxLines:
		c.add(path+".lines", "has %d lines; at most %d are allowed", n, MaxLines)
	default:
		for i, l := range b.lines {
			c.line(fmt.Sprintf("%s.lines[%d]", path, i), l)
		}
	}
	if b.ref != nil {
		c.ref(path+".external_ref", b.ref)
	}
}

func (c *checker) line(path string, l *orderv1.OrderLine) {
	c.length(path+".sku", l.GetSku(), 1, 64)
	q := l.GetQuantity()
	if q == nil {
		c.add(path+".quantity", "is required")
		return
	}
	switch {
	case !quantityPattern.MatchString(q.GetValue()):
		c.add(path+".quantity.value", "must be a decimal number such as 12 or 2.5 (at most 12 integer and 6 fraction digits)")
	default:
		if d, err := money.Parse(q.GetValue()); err != nil || d.Sign() <= 0 {
			c.add(path+".quantity.value", "must be greater than zero")
		}
	}
	if !unitPattern.MatchString(q.GetUnit()) {
		c.add(path+".quantity.unit", "must be a unit code such as EA or CASE")
	}
}

func (c *checker) ref(path string, r *typev1.ExternalRef) {
	if !refSystemPattern.MatchString(r.GetSystem()) {
		c.add(path+".system", "must be a lowercase system name such as salesforce")
	}
	c.length(path+".id", r.GetId(), 1, 128)
}

// validateOrder checks an order as CreateOrder receives it.
func validateOrder(o *orderv1.Order) error {
	if o == nil {
		return invalid("order", "is required")
	}
	var c checker
	c.basket("order", basket{o.GetCustomerId(), o.GetCurrencyCode(), o.GetShipToRegion(), o.GetLines(), o.GetExternalRef()})
	return c.err()
}

// validateQuote checks a quote as CreateQuote receives it.
func validateQuote(q *orderv1.Quote, now time.Time) error {
	if q == nil {
		return invalid("quote", "is required")
	}
	var c checker
	c.basket("quote", basket{q.GetCustomerId(), q.GetCurrencyCode(), q.GetShipToRegion(), q.GetLines(), q.GetExternalRef()})
	switch vu := q.GetValidUntil(); {
	case vu == nil:
		c.add("quote.valid_until", "is required")
	case !vu.IsValid():
		c.add("quote.valid_until", "is not a valid time")
	case !vu.AsTime().After(now):
		c.add("quote.valid_until", "must be in the future (it is %s, now is %s)", vu.AsTime().UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	case vu.AsTime().Sub(now) > MaxQuoteValidity:
		c.add("quote.valid_until", "may be at most %d days ahead", int(MaxQuoteValidity/(24*time.Hour)))
	}
	return c.err()
}

// cleanLines copies the caller's lines keeping only what a caller may set:
// SKU and quantity. Prices, sites and dates are the service's output.
func cleanLines(in []*orderv1.OrderLine) []*orderv1.OrderLine {
	out := make([]*orderv1.OrderLine, len(in))
	for i, l := range in {
		out[i] = &orderv1.OrderLine{
			Sku:      strings.TrimSpace(l.GetSku()),
			Quantity: &typev1.Quantity{Value: l.GetQuantity().GetValue(), Unit: l.GetQuantity().GetUnit()},
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Prices.

// unpricedWhy says in words why pricing gave a line no price, for the
// field violation that carries the stable reason after it.
func unpricedWhy(reason string, q *typev1.Quantity) string {
	switch reason {
	case "UNKNOWN_PRODUCT":
		return "no product has this SKU"
	case "DISCONTINUED":
		return "the product is discontinued"
	case "NO_PRICE":
		return "no price list in force prices it in this currency for this customer"
	case "UNKNOWN_UNIT":
		return fmt.Sprintf("the product defines no unit %s; use its base unit or one of its conversions", q.GetUnit())
	case "NOT_CONVERTIBLE":
		return fmt.Sprintf("its price list prices it in a unit that %s does not convert to exactly; order it in the price's unit", q.GetUnit())
	case "NOT_WHOLE_UNITS":
		return fmt.Sprintf("%s %s is not a whole number of an indivisible unit", q.GetValue(), q.GetUnit())
	case "OUT_OF_RANGE":
		return "the line total is too large"
	}
	return "pricing gave it no price"
}

// pricedLines checks a price simulation and copies the prices onto lines.
// A line the simulation could not price is a field violation naming the
// line's SKU (or unit) with the stable reason, so the caller sees every
// unpriceable line at once.
func pricedLines(path, currency string, lines []*orderv1.OrderLine, priced []*productpricingv1.PricedLine) (*typev1.Money, error) {
	if len(priced) != len(lines) {
		return nil, fmt.Errorf("pricing answered %d lines for %d", len(priced), len(lines))
	}
	var c checker
	total := money.Zero()
	for i, pl := range priced {
		field := fmt.Sprintf("%s.lines[%d]", path, i)
		if pl.GetStatus() != productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED {
			reason := pl.GetReason()
			if reason == "" {
				reason = strings.TrimPrefix(pl.GetStatus().String(), "LINE_PRICE_STATUS_")
			}
			sku, q := lines[i].GetSku(), lines[i].GetQuantity()
			switch reason {
			case "UNKNOWN_UNIT", "NOT_CONVERTIBLE", "NOT_WHOLE_UNITS":
				c.add(field+".quantity.unit", "%s cannot be priced in %s: %s (%s)", sku, q.GetUnit(), unpricedWhy(reason, q), reason)
			default:
				c.add(field+".sku", "%s cannot be priced: %s (%s)", sku, unpricedWhy(reason, q), reason)
			}
			continue
		}
		lt, err := money.Parse(pl.GetLineTotal().GetAmount())
		if err != nil || pl.GetLineTotal().GetCurrencyCode() != currency || pl.GetUnitPrice() == nil {
			return nil, fmt.Errorf("pricing answered line %d with an unusable price %v", i, pl.GetLineTotal())
		}
		up, err := pricePerOrderedUnit(pl, lines[i].GetQuantity(), currency)
		if err != nil {
			return nil, fmt.Errorf("pricing answered line %d: %w", i, err)
		}
		lines[i].UnitPrice = up
		lines[i].LineTotal = &typev1.Money{CurrencyCode: currency, Amount: pl.GetLineTotal().GetAmount()}
		total = money.Add(total, lt)
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return formatMoney(total, currency), nil
}

// maxPriceDigits is the most fraction digits a contract Money carries.
const maxPriceDigits = 6

// pricePerOrderedUnit is a priced line's unit price per the unit the line
// was ordered in. Pricing answers per the unit of the price-list entry
// (BOX, say, for a line ordered in EA); an OrderLine cannot name that unit,
// so its readers (fulfillment bills shipped quantity × unit price) can only
// use a price per the ordered unit: entry price × priced quantity ÷ ordered
// quantity. The quotient is exact whenever it terminates within six
// fraction digits (the contract's Money), else rounded half-even to six;
// the line total stays pricing's, rounded once.
func pricePerOrderedUnit(pl *productpricingv1.PricedLine, ordered *typev1.Quantity, currency string) (*typev1.Money, error) {
	pq := pl.GetPricedQuantity()
	if pq == nil || pq.GetUnit() == "" || pq.GetUnit() == ordered.GetUnit() {
		return &typev1.Money{CurrencyCode: currency, Amount: pl.GetUnitPrice().GetAmount()}, nil
	}
	price, err1 := money.Parse(pl.GetUnitPrice().GetAmount())
	pqv, err2 := money.Parse(pq.GetValue())
	oq, err3 := money.Parse(ordered.GetValue())
	if err := errors.Join(err1, err2, err3); err != nil || oq.IsZero() {
		return nil, fmt.Errorf("unusable price %v for %v", pl.GetUnitPrice(), pq)
	}
	per, err := money.Quo(money.Mul(price, pqv), oq)
	if err != nil {
		return nil, err
	}
	scale, _ := money.MinorUnits(currency)
	if money.Scale(per) > maxPriceDigits {
		per = money.RoundHalfEven(per, maxPriceDigits)
	}
	amount := money.Format(per)
	if money.Scale(per) <= scale {
		amount = money.FormatScale(per, scale)
	}
	return &typev1.Money{CurrencyCode: currency, Amount: amount}, nil
}

// formatMoney renders an amount at its currency's scale.
func formatMoney(d *money.Decimal, currency string) *typev1.Money {
	scale, _ := money.MinorUnits(currency)
	return &typev1.Money{CurrencyCode: currency, Amount: money.FormatScale(money.RoundHalfEven(d, scale), scale)}
}

// samePrice reports whether two amounts agree once both are rounded to the
// currency's minor unit: a difference the currency cannot show is none.
func samePrice(a, b *typev1.Money, currency string) bool {
	da, err1 := money.Parse(a.GetAmount())
	db, err2 := money.Parse(b.GetAmount())
	if err1 != nil || err2 != nil {
		return false
	}
	scale, _ := money.MinorUnits(currency)
	return money.Cmp(money.RoundHalfEven(da, scale), money.RoundHalfEven(db, scale)) == 0
}

// ---------------------------------------------------------------------------
// Availability.

// applyAvailability sets each line's site and promised date from a
// per-line availability answer: the first site used (the one in the
// ship-to region when there is one) and the date the whole line arrives. A
// line that cannot be covered gets neither.
func applyAvailability(lines []*orderv1.OrderLine, avail []*fulfillmentv1.LineAvailability) {
	for _, a := range avail {
		i := int(a.GetIndex())
		if i < 0 || i >= len(lines) {
			continue
		}
		lines[i].SiteId, lines[i].PromisedTime = "", nil
		if !a.GetCovered() {
			continue
		}
		if src := a.GetSources(); len(src) > 0 {
			lines[i].SiteId = src[0].GetSiteId()
		}
		lines[i].PromisedTime = a.GetPromisedTime()
	}
}

// applyReservation sets each line's site and promised date from a hard
// reservation, and returns the base-unit quantity of every line (from the
// reservation, else from the availability answer, else the ordered
// quantity itself).
func applyReservation(lines []*orderv1.OrderLine, r *fulfillmentv1.Reservation, avail []*fulfillmentv1.LineAvailability) []baseQty {
	applyAvailability(lines, avail)
	base := make([]baseQty, len(lines))
	for i, l := range lines {
		base[i] = baseQty{Value: l.GetQuantity().GetValue(), Unit: l.GetQuantity().GetUnit()}
	}
	for _, a := range avail {
		if i := int(a.GetIndex()); i >= 0 && i < len(lines) && a.GetBaseQuantity().GetValue() != "" {
			base[i] = baseQty{Value: a.GetBaseQuantity().GetValue(), Unit: a.GetBaseQuantity().GetUnit()}
		}
	}
	sums := map[int]*money.Decimal{}
	units := map[int]string{}
	for _, l := range lines {
		l.Allocations = nil
	}
	for _, rl := range r.GetLines() {
		i := int(rl.GetLineIndex())
		if i < 0 || i >= len(lines) {
			continue
		}
		lines[i].Allocations = append(lines[i].Allocations, &orderv1.LineAllocation{
			SiteId:       rl.GetSiteId(),
			Quantity:     &typev1.Quantity{Value: rl.GetQuantity().GetValue(), Unit: rl.GetQuantity().GetUnit()},
			PromisedTime: rl.GetPromisedTime(),
		})
		if lines[i].SiteId == "" {
			lines[i].SiteId = rl.GetSiteId()
		}
		if pt := rl.GetPromisedTime(); pt != nil && (lines[i].PromisedTime == nil || pt.AsTime().After(lines[i].PromisedTime.AsTime())) {
			lines[i].PromisedTime = pt
		}
		d, err := money.Parse(rl.GetQuantity().GetValue())
		if err != nil {
			continue
		}
		if units[i] != "" && units[i] != rl.GetQuantity().GetUnit() {
			continue
		}
		units[i] = rl.GetQuantity().GetUnit()
		if sums[i] == nil {
			sums[i] = money.Zero()
		}
		sums[i] = money.Add(sums[i], d)
	}
	for i, s := range sums {
		base[i] = baseQty{Value: money.Format(s), Unit: units[i]}
	}
	return base
}

// shortLines describes the lines an availability answer could not cover,
// for a hold reason or an error.
func shortLines(lines []*orderv1.OrderLine, avail []*fulfillmentv1.LineAvailability) (string, int) {
	var parts []string
	first := -1
	for _, a := range avail {
		if a.GetCovered() {
			continue
		}
		i := int(a.GetIndex())
		sku := a.GetSku()
		if sku == "" && i >= 0 && i < len(lines) {
			sku = lines[i].GetSku()
		}
		reason := a.GetReason()
		if reason == "" {
			reason = "SHORT"
		}
		parts = append(parts, fmt.Sprintf("line %d (%s): %s", i, sku, reason))
		if first < 0 {
			first = i
		}
	}
	if len(parts) == 0 {
		return "stock cannot cover the order", 0
	}
	return strings.Join(parts, "; "), first
}
