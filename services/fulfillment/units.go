package fulfillment

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/apd/v3"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/money"
)

// ProductFacts are what fulfillment knows of a product: its base unit and
// every unit it defines, each resolved to a factor of the base unit.
type ProductFacts struct {
	SKU      string
	BaseUnit string
	// Units holds every unit of the product, the base unit included.
	Units map[string]UnitFacts
}

// UnitFacts describes one unit of a product.
type UnitFacts struct {
	// ToBase is how many base units one of this unit is; 1 for the base.
	ToBase *money.Decimal
	// Indivisible units only come in whole numbers.
	Indivisible bool
}

// Unit arithmetic never rounds: a conversion is exact or refused. apd
// reports Inexact when an operation had to round, and 100 digits hold any
// product of the contract's bounded factors and quantities.
var exactCtx = apd.Context{
	Precision:   100,
	MaxExponent: apd.MaxExponent,
	MinExponent: apd.MinExponent,
	Traps:       apd.DefaultTraps,
	Rounding:    apd.RoundHalfEven,
}

func mulExact(a, b *money.Decimal) (*money.Decimal, bool) {
	var r money.Decimal
	cond, err := exactCtx.Mul(&r, a, b)
	if err != nil || cond.Inexact() {
		return nil, false
	}
	return reduce(&r), true
}

func quoExact(a, b *money.Decimal) (*money.Decimal, bool) {
	if b.IsZero() {
		return nil, false
	}
	var r money.Decimal
	cond, err := exactCtx.Quo(&r, a, b)
	if err != nil || cond.Inexact() {
		return nil, false
	}
	return reduce(&r), true
}

func reduce(d *money.Decimal) *money.Decimal {
	var r money.Decimal
	r.Reduce(d)
	return &r
}

// Bounds of a contract Quantity: 12 integer and 6 fraction digits.
const (
	maxQuantityIntDigits  = 12
	maxQuantityFracDigits = 6
)

// fitsQuantity reports whether d can be written as a Quantity value.
func fitsQuantity(d *money.Decimal) bool {
	r := reduce(d)
	if r.Negative && !r.IsZero() {
		return false
	}
	if r.IsZero() {
		return true
	}
	frac := 0
	if r.Exponent < 0 {
		frac = int(-r.Exponent)
	}
	intDigits := int(r.NumDigits()) + int(r.Exponent)
	return intDigits <= maxQuantityIntDigits && frac <= maxQuantityFracDigits
}

// NewProductFacts compiles a product of the productpricing contract: every
// conversion chain is followed to the base unit and its factors multiplied.
// productpricing refuses invalid unit tables, so an error here means the
// record is not one fulfillment can trust.
func NewProductFacts(p *productpricingv1.Product) (ProductFacts, error) {
	base := p.GetBaseUnit()
	if base == "" {
		return ProductFacts{}, fmt.Errorf("product %s has no base unit", p.GetSku())
	}
	f := ProductFacts{SKU: p.GetSku(), BaseUnit: base, Units: map[string]UnitFacts{
		base: {ToBase: apd.New(1, 0), Indivisible: p.GetBaseUnitIndivisible()},
	}}
	byUnit := map[string]*productpricingv1.UnitConversion{}
	for _, c := range p.GetConversions() {
		if c.GetUnit() == "" || c.GetUnit() == base {
			return ProductFacts{}, fmt.Errorf("product %s: conversion of unit %q", p.GetSku(), c.GetUnit())
		}
		if _, dup := byUnit[c.GetUnit()]; dup {
			return ProductFacts{}, fmt.Errorf("product %s: unit %s defined twice", p.GetSku(), c.GetUnit())
		}
		byUnit[c.GetUnit()] = c
	}
	var resolve func(unit string, seen []string) (*money.Decimal, error)
	resolve = func(unit string, seen []string) (*money.Decimal, error) {
		if u, ok := f.Units[unit]; ok {
			return u.ToBase, nil
		}
		if slices.Contains(seen, unit) {
			return nil, fmt.Errorf("product %s: units %s refer to each other", p.GetSku(), strings.Join(append(seen, unit), " → "))
		}
		c, ok := byUnit[unit]
		if !ok {
			return nil, fmt.Errorf("product %s: unit %s is not defined", p.GetSku(), unit)
		}
		factor, err := money.Parse(c.GetFactor())
		if err != nil || factor.Sign() <= 0 {
			return nil, fmt.Errorf("product %s: unit %s has factor %q", p.GetSku(), unit, c.GetFactor())
		}
		parent, err := resolve(c.GetPerUnit(), append(seen, unit))
		if err != nil {
			return nil, err
		}
		toBase, ok := mulExact(factor, parent)
		if !ok {
			return nil, fmt.Errorf("product %s: unit %s is too large a multiple of the base unit", p.GetSku(), unit)
		}
		f.Units[unit] = UnitFacts{ToBase: toBase, Indivisible: c.GetIndivisible()}
		return toBase, nil
	}
	for _, c := range p.GetConversions() {
		if _, err := resolve(c.GetUnit(), nil); err != nil {
			return ProductFacts{}, err
		}
	}
	return f, nil
}

// UnitCodes lists the product's units, base first, for messages.
func (f ProductFacts) UnitCodes() []string {
	out := []string{f.BaseUnit}
	for c := range f.Units {
		if c != f.BaseUnit {
			out = append(out, c)
		}
	}
	slices.Sort(out[1:])
	return out
}

// ToBase converts v of unit into the base unit, exactly. It returns
// ErrUnknownUnit for a unit the product does not define and
// ErrNotConvertible for a negative quantity, a fraction of an indivisible
// unit (given or base), or a result a Quantity cannot hold.
func (f ProductFacts) ToBase(v *money.Decimal, unit string) (*money.Decimal, error) {
	u, ok := f.Units[unit]
	if !ok {
		return nil, fmt.Errorf("%w: product %s has no unit %q; its units are %s", ErrUnknownUnit, f.SKU, unit, strings.Join(f.UnitCodes(), ", "))
	}
	if v.Negative && !v.IsZero() {
		return nil, fmt.Errorf("%w: %s is negative", ErrNotConvertible, money.Format(v))
	}
	if u.Indivisible && !money.IsInteger(v) {
		return nil, fmt.Errorf("%w: %s %s is not a whole number and %s is indivisible", ErrNotConvertible, money.Format(v), unit, unit)
	}
	base, ok := mulExact(v, u.ToBase)
	if !ok {
		return nil, fmt.Errorf("%w: %s %s is too large", ErrNotConvertible, money.Format(v), unit)
	}
	if f.Units[f.BaseUnit].Indivisible && !money.IsInteger(base) {
		return nil, fmt.Errorf("%w: %s %s is %s %s, not a whole number, and %s is indivisible",
			ErrNotConvertible, money.Format(v), unit, money.Format(base), f.BaseUnit, f.BaseUnit)
	}
	if !fitsQuantity(base) {
		return nil, fmt.Errorf("%w: %s %s is %s %s, more digits than a quantity holds", ErrNotConvertible, money.Format(v), unit, money.Format(base), f.BaseUnit)
	}
	return base, nil
}

// FromBase converts a base quantity into unit; false when the unit is
// unknown or the result is not exact and representable as a Quantity.
func (f ProductFacts) FromBase(base *money.Decimal, unit string) (*money.Decimal, bool) {
	u, ok := f.Units[unit]
	if !ok {
		return nil, false
	}
	r, ok := quoExact(base, u.ToBase)
	if !ok || !fitsQuantity(r) || (u.Indivisible && !money.IsInteger(r)) {
		return nil, false
	}
	return r, true
}
