package money

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/cockroachdb/apd/v3"
)

// syntax is the contract's decimal syntax that plainDecimal implements.
var syntax = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// TestFastPathsMatchApd compares Parse, Format and FormatScale with apd's
// general parser and formatter on fixed edge cases and random values.
func TestFastPathsMatchApd(t *testing.T) {
	cases := []string{
		"0", "-0", "0.0", "-0.000", "1", "-1", "10", "0.5", "0.05", "12.345", "-12.345",
		"999999999999999999", "1000000000000000000", "-999999999999999999", "123456789012.123456",
		"0.000000000000000001", "0.0000000000000000001", "100000.000000", "7.10",
		"01", "1.", ".5", "-", "", "1e5", "+1", "1.2.3", "--1", "0x10", " 1", "1 ", "١",
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		cases = append(cases, randomDecimal(r))
	}
	for _, s := range cases {
		valid := len(s) <= 64 && syntax.MatchString(s)
		if got := plainDecimal(s); got != valid {
			t.Fatalf("plainDecimal(%q) = %v, want %v", s, got, valid)
		}
		d, err := Parse(s)
		if !valid {
			if err == nil {
				t.Fatalf("Parse(%q) accepted", s)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		want, _, _ := apd.NewFromString(s)
		if d.Cmp(want) != 0 || d.Exponent != want.Exponent || d.Negative != want.Negative {
			t.Fatalf("Parse(%q) = %s (exp %d, neg %v), want %s (exp %d, neg %v)", s, d, d.Exponent, d.Negative, want, want.Exponent, want.Negative)
		}
		var red apd.Decimal
		red.Reduce(want)
		wantFormat := red.Text('f')
		if red.IsZero() {
			wantFormat = "0"
		}
		if got := Format(d); got != wantFormat {
			t.Fatalf("Format(%q) = %q, want %q", s, got, wantFormat)
		}
		for _, scale := range []int{0, 2, 3, 6} {
			var q apd.Decimal
			_, _ = ctx.Quantize(&q, want, int32(-scale))
			if got, want := FormatScale(d, scale), q.Text('f'); got != want {
				t.Fatalf("FormatScale(%q, %d) = %q, want %q", s, scale, got, want)
			}
		}
		if got := text(d); got != d.Text('f') {
			t.Fatalf("text(%q) = %q, want %q", s, got, d.Text('f'))
		}
	}
}

func randomDecimal(r *rand.Rand) string {
	var b strings.Builder
	if r.IntN(3) == 0 {
		b.WriteByte('-')
	}
	intDigits := r.IntN(22)
	if intDigits == 0 {
		b.WriteByte('0')
	} else {
		b.WriteByte(byte('1' + r.IntN(9)))
		for range intDigits - 1 {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
	}
	if frac := r.IntN(22); frac > 0 {
		b.WriteByte('.')
		for range frac {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
	}
	return b.String()
}

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		_, _ = Parse("1234.5678")
	}
}

func BenchmarkFormatScale(b *testing.B) {
	d := MustParse("1234.5")
	for b.Loop() {
		_ = FormatScale(d, 2)
	}
}
