// Package money does Millrace's exact decimal arithmetic for amounts and
// quantities. Values are apd decimals parsed from the strict decimal strings
// of the contracts; nothing ever passes through a binary float. Amounts are
// rounded half-even to the currency's minor unit, once, where the domain
// says so.
package money

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/cockroachdb/apd/v3"
)

// Decimal is an exact decimal value.
type Decimal = apd.Decimal

// ctx has enough precision for 15 integer and 9 fraction digits multiplied
// together, so products of prices and quantities are exact.
var ctx = apd.Context{Precision: 60, MaxExponent: apd.MaxExponent, MinExponent: apd.MinExponent, Traps: apd.DefaultTraps, Rounding: apd.RoundHalfEven}

var decimalPattern = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// ErrSyntax is returned for a string that is not a plain decimal.
var ErrSyntax = errors.New("not a decimal number (digits with an optional '.' and fraction, no exponent)")

// Parse parses a plain decimal string such as "12", "-4.5" or "0.125".
func Parse(s string) (*Decimal, error) {
	if len(s) > 64 || !decimalPattern.MatchString(s) {
		return nil, ErrSyntax
	}
	d, _, err := apd.NewFromString(s)
	if err != nil {
		return nil, ErrSyntax
	}
	return d, nil
}

// MustParse parses s or panics; for constants in code and tests.
func MustParse(s string) *Decimal {
	d, err := Parse(s)
	if err != nil {
		panic(fmt.Sprintf("money.MustParse(%q): %v", s, err))
	}
	return d
}

// Format renders d as a plain decimal string without exponent. Trailing
// fraction zeros are removed ("12.500" → "12.5", "3.000" → "3").
func Format(d *Decimal) string {
	var r Decimal
	r.Reduce(d)
	if r.IsZero() {
		return "0"
	}
	return r.Text('f')
}

// FormatScale renders d with exactly scale fraction digits, as amounts in a
// currency are shown ("12.5" with scale 2 → "12.50"). d must already be
// rounded to at most scale digits.
func FormatScale(d *Decimal, scale int) string {
	var r Decimal
	_, _ = ctx.Quantize(&r, d, int32(-scale))
	return r.Text('f')
}

// Add returns a + b.
func Add(a, b *Decimal) *Decimal { return op(ctx.Add, a, b) }

// Sub returns a − b.
func Sub(a, b *Decimal) *Decimal { return op(ctx.Sub, a, b) }

// Mul returns a × b, exactly.
func Mul(a, b *Decimal) *Decimal { return op(ctx.Mul, a, b) }

// Quo returns a ÷ b to 40 significant digits; callers check exactness with
// IsInteger or by multiplying back where it matters.
func Quo(a, b *Decimal) (*Decimal, error) {
	if b.IsZero() {
		return nil, errors.New("division by zero")
	}
	var r Decimal
	c := ctx
	c.Precision = 40
	if _, err := c.Quo(&r, a, b); err != nil {
		return nil, err
	}
	var red Decimal
	red.Reduce(&r)
	return &red, nil
}

func op(f func(d, x, y *apd.Decimal) (apd.Condition, error), a, b *Decimal) *Decimal {
	var r Decimal
	if _, err := f(&r, a, b); err != nil {
		// With 60 digits of precision the contract's bounds never overflow;
		// reaching this is a programming error.
		panic(fmt.Sprintf("money: arithmetic on %s and %s: %v", a, b, err))
	}
	return &r
}

// Cmp compares a and b: -1, 0 or +1.
func Cmp(a, b *Decimal) int { return a.Cmp(b) }

// Zero returns a new zero.
func Zero() *Decimal { return apd.New(0, 0) }

// IsInteger reports whether d has no fractional part.
func IsInteger(d *Decimal) bool {
	var frac, integ Decimal
	d.Modf(&integ, &frac)
	return frac.IsZero()
}

// Scale returns the number of fraction digits d is written with.
func Scale(d *Decimal) int {
	if d.Exponent >= 0 {
		return 0
	}
	return int(-d.Exponent)
}

// RoundHalfEven rounds d to scale fraction digits, ties to even.
func RoundHalfEven(d *Decimal, scale int) *Decimal {
	var r Decimal
	c := ctx
	c.Rounding = apd.RoundHalfEven
	if _, err := c.Quantize(&r, d, int32(-scale)); err != nil {
		panic(fmt.Sprintf("money: round %s to %d places: %v", d, scale, err))
	}
	return &r
}

// Round rounds an amount half-even to its currency's minor unit.
func Round(d *Decimal, currency string) (*Decimal, error) {
	scale, ok := MinorUnits(currency)
	if !ok {
		return nil, fmt.Errorf("unknown currency %q", currency)
	}
	return RoundHalfEven(d, scale), nil
}
