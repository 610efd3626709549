package productpricing

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/money"
)

// priceListMaskPaths are the fields UpdatePriceList may change.
var priceListMaskPaths = map[string]bool{
	"name":          true,
	"currency_code": true,
	"region":        true,
	"customer_tier": true,
	"customer_id":   true,
	"valid_from":    true,
	"valid_to":      true,
	"priority":      true,
	"entries":       true,
}

// Bounds the domain keeps besides the contract's patterns.
const (
	maxPriority        = 1000
	maxPriceFracDigits = 6
	// maxViolations caps the violations reported for one list: a 10,000
	// entry upload with a wrong unit everywhere needs the first few, not a
	// megabyte of errors.
	maxViolations = 50
)

// ScopeOf returns the scope of a price list, decided by which of customer,
// tier and region it names.
func ScopeOf(pl *productpricingv1.PriceList) string {
	switch {
	case pl.GetCustomerId() != "":
		return ScopeCustomer
	case pl.GetCustomerTier() != "" && pl.GetRegion() != "":
		return ScopeTierRegion
	case pl.GetRegion() != "":
		return ScopeRegion
	case pl.GetCustomerTier() != "":
		return ScopeTier
	default:
		return ScopeGlobal
	}
}

// scopeRank orders scopes for resolution, higher wins:
//
//	CUSTOMER > TIER_REGION > REGION > TIER > GLOBAL
//
// DESIGN.md ranks customer, tier+region, region and global. A tier list
// without a region (gold customers everywhere) is placed between region and
// global: it is more specific than the global list, but a region's list
// reflects that market's prices and wins over a tier programme that does not
// know the market, unless the tier is priced for the region too
// (TIER_REGION).
func scopeRank(scope string) int {
	switch scope {
	case ScopeCustomer:
		return 5
	case ScopeTierRegion:
		return 4
	case ScopeRegion:
		return 3
	case ScopeTier:
		return 2
	default:
		return 1
	}
}

// appliesTo reports whether a list's scope covers a customer. Every scope
// field the list names must match the customer's; a customer-specific list
// that names a region stops applying if the customer moves to another one.
func appliesTo(pl *productpricingv1.PriceList, c CustomerFacts) bool {
	if pl.GetCustomerId() != "" && pl.GetCustomerId() != c.ID {
		return false
	}
	if pl.GetRegion() != "" && pl.GetRegion() != c.Region {
		return false
	}
	if pl.GetCustomerTier() != "" && pl.GetCustomerTier() != c.Tier {
		return false
	}
	return true
}

// validAt reports whether t lies in the list's validity window: from
// inclusive, to exclusive, no end when valid_to is unset.
func validAt(pl *productpricingv1.PriceList, t time.Time) bool {
	if t.Before(pl.GetValidFrom().AsTime()) {
		return false
	}
	return pl.GetValidTo() == nil || t.Before(pl.GetValidTo().AsTime())
}

// scopeIdentity returns what makes two lists compete for the same
// customers: currency, region, tier and customer. For a customer-specific
// list the region is left out: it can only ever be that customer's region,
// so a list for the customer with a region and one without compete too.
func scopeIdentity(pl *productpricingv1.PriceList) (currency, region, tier, customer string) {
	region = pl.GetRegion()
	if pl.GetCustomerId() != "" {
		region = ""
	}
	return pl.GetCurrencyCode(), region, pl.GetCustomerTier(), pl.GetCustomerId()
}

// sameScope reports whether two lists compete for the same customers in the
// same currency.
func sameScope(a, b *productpricingv1.PriceList) bool {
	ac, ar, at, acu := scopeIdentity(a)
	bc, br, bt, bcu := scopeIdentity(b)
	return ac == bc && ar == br && at == bt && acu == bcu
}

// checkCustomerScope checks a customer-specific list against the customer it
// names: a region on such a list must be the customer's (it makes the list
// visible to that region's keys; any other region would make it never
// apply).
func checkCustomerScope(pl *productpricingv1.PriceList, c CustomerFacts) error {
	if pl.GetRegion() != "" && pl.GetRegion() != c.Region {
		return invalid("price_list.region", "customer %s is in region %q; a customer-specific list names that region or none", c.ID, c.Region)
	}
	return nil
}

// windowsOverlap reports whether the validity windows of two lists share an
// instant. Windows are half-open, so a list ending at midnight and one
// starting at midnight do not overlap.
func windowsOverlap(a, b *productpricingv1.PriceList) bool {
	aFrom, bFrom := a.GetValidFrom().AsTime(), b.GetValidFrom().AsTime()
	startsBeforeEnd := func(from time.Time, to *timestamppb.Timestamp) bool {
		return to == nil || from.Before(to.AsTime())
	}
	return startsBeforeEnd(aFrom, b.GetValidTo()) && startsBeforeEnd(bFrom, a.GetValidTo())
}

// conflictsWith reports whether two different lists would tie in resolution:
// same scope, same priority, overlapping validity. Such a pair is refused
// so that resolution never has to break a tie arbitrarily.
func conflictsWith(a, b *productpricingv1.PriceList) bool {
	return a.GetId() != b.GetId() && sameScope(a, b) && a.GetPriority() == b.GetPriority() && windowsOverlap(a, b)
}

// overlapError reports a list that conflicts with another, naming it.
func overlapError(other *productpricingv1.PriceList) error {
	to := "open-ended"
	if other.GetValidTo() != nil {
		to = "until " + other.GetValidTo().AsTime().UTC().Format(time.RFC3339)
	}
	return &ConflictError{
		Reason: ReasonPriceListOverlap,
		Message: fmt.Sprintf("price list %s has the same scope and priority %d and is valid from %s %s; change the priority or the validity window",
			other.GetId(), other.GetPriority(), other.GetValidFrom().AsTime().UTC().Format(time.RFC3339), to),
		Meta: map[string]string{"price_list_id": other.GetId()},
	}
}

// productLookup returns the product with a SKU, or nil when none exists.
type productLookup func(sku string) (*productpricingv1.Product, error)

// validatePriceList checks a list as it will be stored: its scope, window
// and currency, and every entry against the product it prices (the SKU must
// exist and the unit must be one the product defines). Problems are reported
// together under "price_list".
func validatePriceList(pl *productpricingv1.PriceList, products productLookup) error {
	const path = "price_list"
	var v violations
	if pl.GetName() == "" {
		v.add(fieldPath(path, "name"), "is required")
	}
	if !money.KnownCurrency(pl.GetCurrencyCode()) {
		v.add(fieldPath(path, "currency_code"), "%q is not an active ISO 4217 currency", pl.GetCurrencyCode())
	}
	if pl.GetCustomerId() != "" && pl.GetCustomerTier() != "" {
		// The customer's tier is a fact of the customer, not of the list: a
		// tier beside a customer would be redundant at best and make the
		// list silently stop applying at worst.
		v.add(fieldPath(path, "customer_tier"), "a customer-specific list cannot also name a tier")
	}
	switch {
	case pl.GetValidFrom() == nil:
		v.add(fieldPath(path, "valid_from"), "is required")
	case pl.GetValidFrom().CheckValid() != nil:
		v.add(fieldPath(path, "valid_from"), "is not a valid time")
	case pl.GetValidTo() != nil && pl.GetValidTo().CheckValid() != nil:
		v.add(fieldPath(path, "valid_to"), "is not a valid time")
	case pl.GetValidTo() != nil && !pl.GetValidTo().AsTime().After(pl.GetValidFrom().AsTime()):
		v.add(fieldPath(path, "valid_to"), "must be after valid_from")
	}
	if pl.GetPriority() < 0 || pl.GetPriority() > maxPriority {
		v.add(fieldPath(path, "priority"), "must be between 0 and %d", maxPriority)
	}

	seen := make(map[string]int, len(pl.GetEntries()))
	cache := map[string]*units{}
	for i, e := range pl.GetEntries() {
		if len(v) >= maxViolations {
			break
		}
		at := fieldPath(path, indexed("entries", i))
		checkPrice(&v, fieldPath(at, "unit_price"), e.GetUnitPrice())
		checkBreaks(&v, at, e.GetBreaks())
		sku := e.GetSku()
		if j, dup := seen[sku]; dup {
			v.add(fieldPath(at, "sku"), "%s is already priced at entries[%d]; a list has one entry per SKU", sku, j)
			continue
		}
		seen[sku] = i
		t, ok := cache[sku]
		if !ok {
			p, err := products(sku)
			if err != nil {
				return err
			}
			if p != nil {
				if t, err = compileUnits(p, ""); err != nil {
					return fmt.Errorf("product %s has invalid units: %w", sku, err)
				}
			}
			cache[sku] = t
		}
		if t == nil {
			v.add(fieldPath(at, "sku"), "no product has SKU %q", sku)
			continue
		}
		if _, ok := t.lookup(e.GetUnit()); !ok {
			v.add(fieldPath(at, "unit"), "product %s has no unit %q; its units are %s", sku, e.GetUnit(), strings.Join(t.codes(), ", "))
		}
	}
	return v.err()
}

// checkPrice checks a unit price: a non-negative decimal with at most six
// fraction digits (unit prices may be finer than the currency's minor unit;
// only line totals are rounded).
func checkPrice(v *violations, field, s string) {
	d, err := money.Parse(s)
	switch {
	case err != nil:
		v.add(field, "%q is not a decimal number", s)
	case d.Negative:
		v.add(field, "must not be negative")
	case money.Scale(d) > maxPriceFracDigits:
		v.add(field, "has more than %d fraction digits", maxPriceFracDigits)
	}
}

// checkBreaks checks that quantity breaks start above zero and ascend
// strictly, so "the highest break whose minimum is reached" is unambiguous.
func checkBreaks(v *violations, at string, breaks []*productpricingv1.QuantityBreak) {
	var prev *money.Decimal
	for k, b := range breaks {
		bat := fieldPath(at, indexed("breaks", k))
		checkPrice(v, fieldPath(bat, "unit_price"), b.GetUnitPrice())
		m, err := money.Parse(b.GetMinQuantity())
		switch {
		case err != nil:
			v.add(fieldPath(bat, "min_quantity"), "%q is not a decimal number", b.GetMinQuantity())
			continue
		case m.Sign() <= 0:
			v.add(fieldPath(bat, "min_quantity"), "must be greater than zero; the entry's unit_price is the price below the first break")
		case money.Scale(m) > maxQuantityFracDigits:
			v.add(fieldPath(bat, "min_quantity"), "has more than %d fraction digits", maxQuantityFracDigits)
		case prev != nil && money.Cmp(m, prev) <= 0:
			v.add(fieldPath(bat, "min_quantity"), "breaks must ascend: %s is not above the previous minimum %s", b.GetMinQuantity(), money.Format(prev))
		}
		prev = m
	}
}

// newPriceList prepares a list from a create request.
func newPriceList(in *productpricingv1.PriceList, id string, now time.Time) *productpricingv1.PriceList {
	pl := proto.Clone(in).(*productpricingv1.PriceList)
	ts := timestamppb.New(now)
	pl.Id, pl.Etag, pl.CreateTime, pl.UpdateTime = id, "", ts, ts
	return pl
}
