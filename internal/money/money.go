// Package money does Millrace's exact decimal arithmetic for amounts and
// quantities. Values are apd decimals parsed from the strict decimal strings
// of the contracts; nothing ever passes through a binary float. Amounts are
// rounded half-even to the currency's minor unit, once, where the domain
// says so.
package money

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/cockroachdb/apd/v3"
)

// Decimal is an exact decimal value.
type Decimal = apd.Decimal

// ctx has enough precision for 15 integer and 9 fraction digits multiplied
// together, so products of prices and quantities are exact.
var ctx = apd.Context{Precision: 60, MaxExponent: apd.MaxExponent, MinExponent: apd.MinExponent, Traps: apd.DefaultTraps, Rounding: apd.RoundHalfEven}

// ErrSyntax is returned for a string that is not a plain decimal.
var ErrSyntax = errors.New("not a decimal number (digits with an optional '.' and fraction, no exponent)")

// Parse parses a plain decimal string such as "12", "-4.5" or "0.125".
func Parse(s string) (*Decimal, error) {
	if len(s) > 64 || !plainDecimal(s) {
		return nil, ErrSyntax
	}
	if d, ok := parseSmall(s); ok {
		return d, nil
	}
	d, _, err := apd.NewFromString(s)
	if err != nil {
		return nil, ErrSyntax
	}
	return d, nil
}

// plainDecimal reports whether s is -?(0|[1-9][0-9]*)(\.[0-9]+)?: an
// optional minus, an integer part without leading zeros, and an optional
// fraction of at least one digit.
func plainDecimal(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	switch n := i - start; {
	case n == 0:
		return false
	case n > 1 && s[start] == '0':
		return false
	}
	if i == len(s) {
		return true
	}
	if s[i] != '.' {
		return false
	}
	i++
	frac := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i > frac && i == len(s)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseSmall parses a plain decimal of at most 18 digits without apd's
// general parser, which is what almost every quantity and price is. It
// declines negative zero, which apd keeps signed.
func parseSmall(s string) (*Decimal, bool) {
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	var (
		coeff  int64
		digits int
		exp    int32
		frac   bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			frac = true
			continue
		}
		digits++
		if digits > 18 {
			return nil, false
		}
		coeff = coeff*10 + int64(c-'0')
		if frac {
			exp--
		}
	}
	if neg {
		if coeff == 0 {
			return nil, false
		}
		coeff = -coeff
	}
	return apd.New(coeff, exp), true
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
	return text(&r)
}

// text is d.Text('f'), without apd's general formatter for finite values
// whose coefficient fits an int64.
func text(d *Decimal) string {
	if d.Form != apd.Finite || !d.Coeff.IsInt64() || d.Exponent > 0 || d.Exponent < -18 {
		return d.Text('f')
	}
	c := d.Coeff.Int64()
	if c == 0 && d.Negative {
		return d.Text('f')
	}
	scale := int(-d.Exponent)
	var buf [48]byte
	digits := strconv.AppendInt(buf[:0], c, 10)
	out := make([]byte, 0, len(digits)+scale+3)
	if d.Negative {
		out = append(out, '-')
	}
	if scale == 0 {
		return string(append(out, digits...))
	}
	if len(digits) <= scale {
		out = append(out, '0', '.')
		for range scale - len(digits) {
			out = append(out, '0')
		}
		return string(append(out, digits...))
	}
	cut := len(digits) - scale
	out = append(out, digits[:cut]...)
	out = append(out, '.')
	return string(append(out, digits[cut:]...))
}

// FormatScale renders d with exactly scale fraction digits, as amounts in a
// currency are shown ("12.5" with scale 2 → "12.50"). d must already be
// rounded to at most scale digits.
func FormatScale(d *Decimal, scale int) string {
	if s, ok := textScaleSmall(d, scale); ok {
		return s
	}
	var r Decimal
	_, _ = ctx.Quantize(&r, d, int32(-scale))
	return text(&r)
}

// textScaleSmall is FormatScale for a finite value that has no more than
// scale fraction digits and a small coefficient: padding with zeros needs
// no rounding.
func textScaleSmall(d *Decimal, scale int) (string, bool) {
	if d.Form != apd.Finite || !d.Coeff.IsInt64() || scale > 18 || int(-d.Exponent) > scale || d.Exponent > 0 {
		return "", false
	}
	c := d.Coeff.Int64()
	for range scale + int(d.Exponent) {
		if c > (1<<63-1)/10 {
			return "", false
		}
		c *= 10
	}
	var r Decimal
	r.Coeff.SetInt64(c)
	r.Exponent = int32(-scale)
	r.Negative = d.Negative
	return text(&r), true
}

// Add returns a + b.
func Add(a, b *Decimal) *Decimal { return op(ctx.Add, a, b) }

// Sub returns a − b.
func Sub(a, b *Decimal) *Decimal { return op(ctx.Sub, a, b) }

// Mul returns a × b, exactly.
func Mul(a, b *Decimal) *Decimal { return op(ctx.Mul, a, b) }

// Quo returns a ÷ b to 40 significant digits; callers check exactness with
// IsInteger or by multiplying back where it matters. A quotient that
// terminates within 40 digits (most: prices over unit factors of 12, 24 or
// 1000) is found by QuoExact, several times faster than the division.
func Quo(a, b *Decimal) (*Decimal, error) {
	if b.IsZero() {
		return nil, errors.New("division by zero")
	}
	if r, ok := QuoExact(a, b); ok && r.NumDigits() <= 40 {
		return r, nil
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

// ExactDigits is the most significant digits MulExact and QuoExact carry:
// any product of the contract's bounded factors and quantities many times
// over. Beyond it they report the result inexact rather than round it.
const ExactDigits = 100

// exactCtx is the context of MulExact and QuoExact, which never round.
var exactCtx = apd.Context{Precision: ExactDigits, MaxExponent: apd.MaxExponent, MinExponent: apd.MinExponent, Traps: apd.DefaultTraps, Rounding: apd.RoundHalfEven}

// MulExact returns a × b, and false if the product would need rounding
// (more than ExactDigits digits).
func MulExact(a, b *Decimal) (*Decimal, bool) {
	var r Decimal
	cond, err := exactCtx.Mul(&r, a, b)
	if err != nil || cond.Inexact() {
		return nil, false
	}
	return &r, true
}

// QuoExact returns a ÷ b, reduced, and false if the quotient does not
// terminate (1 ÷ 3, 1 KG in LB) or needs more than ExactDigits digits.
//
// Whether it terminates is decided first, with integers: a/b terminates iff
// b's coefficient, once the factors it shares with a's are cancelled, has
// no prime factors but 2 and 5. Only then is the division done, at just the
// precision the exact quotient needs: dividing by 2^x·5^y adds at most x+y
// digits. This keeps the common cases (dividing by 12, or by 1) cheap,
// where a blind 100-digit division and its reduction cost more than the
// rest of a priced line.
func QuoExact(a, b *Decimal) (*Decimal, bool) {
	if b.IsZero() {
		return nil, false
	}
	if a.IsZero() || (b.Coeff.IsUint64() && b.Coeff.Uint64() == 1 && b.Exponent == 0) {
		var r Decimal
		r.Reduce(a)
		r.Negative = a.Negative != b.Negative && !a.IsZero()
		return &r, true
	}
	var g, rest apd.BigInt
	g.GCD(nil, nil, &a.Coeff, &b.Coeff)
	rest.Quo(&b.Coeff, &g)
	twos, fives := stripFactor(&rest, 2), stripFactor(&rest, 5)
	if !rest.IsUint64() || rest.Uint64() != 1 {
		return nil, false
	}
	c := exactCtx
	c.Precision = uint32(a.NumDigits()) + uint32(twos+fives) + 1
	if c.Precision > exactCtx.Precision {
		return nil, false
	}
	var q, r Decimal
	cond, err := c.Quo(&q, a, b)
	if err != nil || cond.Inexact() {
		return nil, false
	}
	r.Reduce(&q)
	return &r, true
}

// stripFactor divides f out of n as often as it goes and says how often.
func stripFactor(n *apd.BigInt, f int64) int {
	var q, r apd.BigInt
	d := apd.NewBigInt(f)
	k := 0
	for n.Sign() != 0 {
		q.QuoRem(n, d, &r)
		if r.Sign() != 0 {
			break
		}
		n.Set(&q)
		k++
	}
	return k
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
