package productpricing

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/money"
)

// Unit arithmetic never rounds: a conversion is either exact or refused
// (money.MulExact, money.QuoExact).

// Bounds of a Quantity as the contract writes it ("^(0|[1-9][0-9]{0,11})(\.[0-9]{1,6})?$").
const (
	maxQuantityIntDigits  = 12
	maxQuantityFracDigits = 6
)

// fitsQuantity reports whether d can be written as a contract Quantity
// value: non-negative, at most 12 integer and 6 fraction digits.
func fitsQuantity(d *money.Decimal) (intOK, fracOK bool) {
	var r money.Decimal
	r.Reduce(d)
	if r.Negative {
		return false, true
	}
	frac := 0
	if r.Exponent < 0 {
		frac = int(-r.Exponent)
	}
	intDigits := int(r.NumDigits()) + int(r.Exponent)
	return intDigits <= maxQuantityIntDigits, frac <= maxQuantityFracDigits
}

// unit is one unit of measure of a product, resolved down to the base unit.
type unit struct {
	code        string
	toBase      *money.Decimal // base units in one of this unit; 1 for the base unit
	indivisible bool
}

// units is the compiled unit table of one product: every unit it defines,
// each with its factor to the base unit.
type units struct {
	base  string
	byKey map[string]unit
	// pairs caches, per [from, to] pair of codes, the exact factor from one
	// unit to the other, or nil when it does not terminate (KG to LB):
	// pricing converts every line from its ordered unit to its price's.
	pairs sync.Map
}

// lookup returns the unit with the given code.
func (u *units) lookup(code string) (unit, bool) {
	x, ok := u.byKey[code]
	return x, ok
}

// codes returns the unit codes, base first, for messages.
func (u *units) codes() []string {
	out := []string{u.base}
	for c := range u.byKey {
		if c != u.base {
			out = append(out, c)
		}
	}
	slices.Sort(out[1:])
	return out
}

// compileUnits checks a product's unit definitions and resolves every unit
// to the base unit. Every per_unit must be the base unit or another defined
// unit, a unit is defined once, factors are positive, and chains end at the
// base unit (no cycles). Problems are reported together, each naming its
// field under path (for example "product.conversions[1].per_unit").
func compileUnits(p *productpricingv1.Product, path string) (*units, error) {
	var v violations
	base := p.GetBaseUnit()
	if base == "" {
		v.add(fieldPath(path, "base_unit"), "is required")
		return nil, v.err()
	}
	convs := p.GetConversions()
	// First pass: which units exist, and where each is defined.
	defined := make(map[string]int, len(convs))
	factors := make([]*money.Decimal, len(convs))
	for i, c := range convs {
		at := fieldPath(path, indexed("conversions", i))
		switch {
		case c.GetUnit() == "":
			v.add(fieldPath(at, "unit"), "is required")
		case c.GetUnit() == base:
			v.add(fieldPath(at, "unit"), "%s is the base unit and cannot be converted", c.GetUnit())
		default:
			if j, dup := defined[c.GetUnit()]; dup {
				v.add(fieldPath(at, "unit"), "%s is already defined by conversions[%d]", c.GetUnit(), j)
			} else {
				defined[c.GetUnit()] = i
			}
		}
		f, err := money.Parse(c.GetFactor())
		switch {
		case err != nil:
			v.add(fieldPath(at, "factor"), "%q is not a decimal number", c.GetFactor())
		case f.Sign() <= 0:
			v.add(fieldPath(at, "factor"), "must be greater than zero")
		default:
			factors[i] = f
		}
	}
	for i, c := range convs {
		pu := c.GetPerUnit()
		if pu == base {
			continue
		}
		if _, ok := defined[pu]; !ok {
			v.add(fieldPath(path, indexed("conversions", i), "per_unit"),
				"%q is neither the base unit %s nor a unit defined by another conversion", pu, base)
		}
	}
	if len(v) > 0 {
		return nil, v.err()
	}

	// Second pass: follow each chain to the base unit, multiplying factors.
	t := &units{base: base, byKey: make(map[string]unit, len(convs)+1)}
	t.byKey[base] = unit{code: base, toBase: money.MustParse("1"), indivisible: p.GetBaseUnitIndivisible()}
	reported := map[int]bool{}
	for i := range convs {
		if _, err := t.resolve(convs, factors, defined, i); err != nil {
			if fe, ok := err.(cycleError); ok {
				if !reported[fe.start] { // report each cycle once, at its first conversion
					reported[fe.start] = true
					v.add(fieldPath(path, indexed("conversions", fe.start), "per_unit"),
						"%s: units are defined in terms of each other; every chain must end at the base unit %s", fe.chain, base)
				}
				continue
			}
			v.add(fieldPath(path, indexed("conversions", i), "factor"), "%v", err)
		}
	}
	if len(v) > 0 {
		return nil, v.err()
	}
	return t, nil
}

// cycleError reports conversions that refer to each other in a loop.
type cycleError struct {
	start int    // lowest conversion index in the cycle
	chain string // "A → B → A"
}

func (e cycleError) Error() string { return "cycle " + e.chain }

// resolve computes conversion i's factor to the base unit, memoised in t.
func (t *units) resolve(convs []*productpricingv1.UnitConversion, factors []*money.Decimal, defined map[string]int, i int) (unit, error) {
	code := convs[i].GetUnit()
	if u, ok := t.byKey[code]; ok {
		return u, nil
	}
	// Walk up the chain to a unit already resolved (at worst the base).
	path := []int{i}
	seen := map[int]int{i: 0}
	for {
		next := convs[path[len(path)-1]].GetPerUnit()
		if _, ok := t.byKey[next]; ok {
			break
		}
		j := defined[next]
		if at, loop := seen[j]; loop {
			cyc := path[at:]
			start := slices.Min(cyc)
			chain := ""
			for _, k := range cyc {
				chain += convs[k].GetUnit() + " → "
			}
			chain += convs[cyc[0]].GetUnit()
			return unit{}, cycleError{start: start, chain: chain}
		}
		seen[j] = len(path)
		path = append(path, j)
	}
	// Resolve from the top of the chain down.
	for k := len(path) - 1; k >= 0; k-- {
		c := convs[path[k]]
		parent := t.byKey[c.GetPerUnit()]
		f, ok := money.MulExact(factors[path[k]], parent.toBase)
		if !ok {
			return unit{}, fmt.Errorf("the chain from %s to the base unit multiplies to more than %d digits", c.GetUnit(), money.ExactDigits)
		}
		t.byKey[c.GetUnit()] = unit{code: c.GetUnit(), toBase: f, indivisible: c.GetIndivisible()}
	}
	return t.byKey[code], nil
}

// toBase converts v of unit from into the base unit. Multiplication by a
// factor always terminates, so this is exact.
func (t *units) toBase(v *money.Decimal, from unit) (*money.Decimal, bool) {
	return money.MulExact(v, from.toBase)
}

// fromBase converts a base quantity into unit to; false when the quotient
// does not terminate.
func (t *units) fromBase(base *money.Decimal, to unit) (*money.Decimal, bool) {
	return money.QuoExact(base, to.toBase)
}

// convertExact converts v from one unit to another through the base unit.
// It returns the result and the base quantity, both exact, or ok false when
// the result does not terminate.
func (t *units) convertExact(v *money.Decimal, from, to unit) (result, base *money.Decimal, ok bool) {
	base, ok = t.toBase(v, from)
	if !ok {
		return nil, nil, false
	}
	if from.code == to.code {
		var r money.Decimal
		r.Reduce(v)
		return &r, reduced(base), true
	}
	result, ok = t.fromBase(base, to)
	return result, reduced(base), ok
}

// convert converts v from one unit to another, exactly, without the base
// quantity convertExact also returns; false when the result does not
// terminate. A quantity already in the wanted unit is only reduced; other
// pairs multiply by the pair's factor once it is known to terminate.
func (t *units) convert(v *money.Decimal, from, to unit) (*money.Decimal, bool) {
	if from.code == to.code {
		return reduced(v), true
	}
	if f := t.pairFactor(from, to); f != nil {
		r, ok := money.MulExact(v, f)
		if !ok {
			return nil, false
		}
		return reduced(r), true
	}
	// The factor does not terminate, yet this quantity's result may
	// (0.45359237 KG is 1 LB).
	base, ok := t.toBase(v, from)
	if !ok {
		return nil, false
	}
	return t.fromBase(base, to)
}

// pairFactor returns the exact number of to in one from, or nil when it
// does not terminate.
func (t *units) pairFactor(from, to unit) *money.Decimal {
	key := [2]string{from.code, to.code}
	if f, ok := t.pairs.Load(key); ok {
		return f.(*money.Decimal)
	}
	f, ok := money.QuoExact(from.toBase, to.toBase)
	if !ok {
		f = nil
	}
	t.pairs.Store(key, f)
	return f
}

func reduced(d *money.Decimal) *money.Decimal {
	var r money.Decimal
	r.Reduce(d)
	return &r
}

// ConvertQuantity converts q into toUnit using the product's units, exactly.
//
// The answer is strict: it is given only when it is exact and fits the
// contract's Quantity (12 integer and 6 fraction digits), both in the target
// unit and in the base unit; nothing is ever rounded. So
//   - a result that is not whole in an indivisible unit is refused with
//     NOT_WHOLE_UNITS naming the unit (the input too: 0.1 CASE is 1.2 EA,
//     which cannot exist when EA is indivisible);
//   - a result that does not terminate (1 KG in LB is 2.2046226218…) or needs
//     more than 6 fraction digits (1 LB is 0.45359237 KG) is refused with
//     NOT_EXACT, naming the unit and carrying the value rounded to 6 digits in
//     the error metadata ("approximate_value") for a caller that wants to
//     choose a representable quantity itself.
//
// Rounding on the caller's behalf would make a converted quantity disagree
// with the one later shipped or invoiced; refusing keeps every quantity the
// service hands out exact.
func ConvertQuantity(p *productpricingv1.Product, q *typev1.Quantity, toUnit string) (*productpricingv1.ConvertQuantityResponse, error) {
	t, err := compileUnits(p, "")
	if err != nil {
		// A stored product always has valid units; this is a corrupt record.
		return nil, fmt.Errorf("product %s has invalid units: %w", p.GetSku(), err)
	}
	v, err := money.Parse(q.GetValue())
	if err != nil || v.Negative {
		return nil, invalid("quantity.value", "%q is not a non-negative decimal number", q.GetValue())
	}
	from, ok := t.lookup(q.GetUnit())
	if !ok {
		return nil, unknownUnit(t, p.GetSku(), "quantity.unit", q.GetUnit())
	}
	to, ok := t.lookup(toUnit)
	if !ok {
		return nil, unknownUnit(t, p.GetSku(), "to_unit", toUnit)
	}
	if err := checkWhole(t, v, from, "quantity.value"); err != nil {
		return nil, err
	}
	result, base, ok := t.convertExact(v, from, to)
	if !ok {
		// A quotient that does not terminate is not whole either; for an
		// indivisible target that is the more useful thing to say.
		if to.indivisible {
			return nil, notWhole("to_unit", to.code, approx(v, from, to))
		}
		return nil, notExact("to_unit", to.code, approx(v, from, to))
	}
	if to.indivisible && !money.IsInteger(result) {
		return nil, notWhole("to_unit", to.code, money.Format(result))
	}
	if err := checkFits(result, "to_unit", to.code); err != nil {
		return nil, err
	}
	if err := checkFits(base, "quantity", t.base); err != nil {
		return nil, err
	}
	return &productpricingv1.ConvertQuantityResponse{
		Quantity:     &typev1.Quantity{Value: money.Format(result), Unit: to.code},
		BaseQuantity: &typev1.Quantity{Value: money.Format(base), Unit: t.base},
	}, nil
}

// checkWhole refuses a quantity that is not whole in its own indivisible
// unit, or whose base quantity is not whole in an indivisible base unit.
func checkWhole(t *units, v *money.Decimal, u unit, field string) error {
	if u.indivisible && !money.IsInteger(v) {
		return notWhole(field, u.code, money.Format(v))
	}
	baseUnit, _ := t.lookup(t.base)
	if baseUnit.indivisible && u.code != t.base {
		if b, ok := t.toBase(v, u); ok && !money.IsInteger(b) {
			return notWhole(field, t.base, money.Format(b))
		}
	}
	return nil
}

func checkFits(d *money.Decimal, field, unitCode string) error {
	intOK, fracOK := fitsQuantity(d)
	switch {
	case !intOK:
		return invalidReason(ReasonOutOfRange, map[string]string{"unit": unitCode}, field,
			"the result in %s has more than %d integer digits", unitCode, maxQuantityIntDigits)
	case !fracOK:
		return notExact(field, unitCode, money.Format(money.RoundHalfEven(d, maxQuantityFracDigits)))
	}
	return nil
}

func notWhole(field, unitCode, value string) error {
	return invalidReason(ReasonNotWholeUnits, map[string]string{"unit": unitCode, "value": value}, field,
		"%s %s is not a whole number and %s is indivisible", value, unitCode, unitCode)
}

func notExact(field, unitCode, approximate string) error {
	meta := map[string]string{"unit": unitCode}
	desc := fmt.Sprintf("the quantity in %s cannot be written exactly with %d fraction digits", unitCode, maxQuantityFracDigits)
	if approximate != "" {
		meta["approximate_value"] = approximate
		desc += "; it is about " + approximate
	}
	return invalidReason(ReasonNotExact, meta, field, "%s", desc)
}

// approx renders v (in from) in unit to, rounded to 6 fraction digits, for
// the metadata of a NOT_EXACT refusal, or "" when the value is beyond what a
// Quantity can hold anyway. money's 40-digit division is plenty for a hint.
func approx(v *money.Decimal, from, to unit) string {
	num, ok := money.MulExact(v, from.toBase)
	if !ok {
		return ""
	}
	q, err := money.Quo(num, to.toBase)
	if err != nil {
		return ""
	}
	if intOK, _ := fitsQuantity(q); !intOK {
		return ""
	}
	return money.Format(money.RoundHalfEven(q, maxQuantityFracDigits))
}

func unknownUnit(t *units, sku, field, code string) error {
	return invalidReason("", map[string]string{"unit": code, "sku": sku}, field,
		"product %s has no unit %q; its units are %s", sku, code, strings.Join(t.codes(), ", "))
}
