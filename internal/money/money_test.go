package money

import "testing"

func TestRoundHalfEven(t *testing.T) {
	tests := []struct {
		name, in, currency, want string
	}{
		{"tie rounds to even down", "2.345", "EUR", "2.34"},
		{"tie rounds to even up", "2.355", "EUR", "2.36"},
		{"above tie", "2.3451", "EUR", "2.35"},
		{"zero-decimal currency", "1250.5", "JPY", "1250"},
		{"zero-decimal currency odd", "1251.5", "JPY", "1252"},
		{"three-decimal currency", "1.23450", "KWD", "1.234"},
		{"negative tie", "-2.345", "USD", "-2.34"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Round(MustParse(tt.in), tt.currency)
			if err != nil {
				t.Fatal(err)
			}
			scale, _ := MinorUnits(tt.currency)
			if s := FormatScale(got, scale); s != tt.want {
				t.Fatalf("Round(%s, %s) = %s, want %s", tt.in, tt.currency, s, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{"", "1e3", "1.", ".5", "01", "NaN", "Infinity", "1,5", " 1", "+1", "--1"} {
		t.Run(s, func(t *testing.T) {
			if _, err := Parse(s); err == nil {
				t.Fatalf("Parse(%q) succeeded, want an error", s)
			}
		})
	}
}

func TestExactArithmetic(t *testing.T) {
	// 0.1 + 0.2 is exactly 0.3 in decimal, unlike float64.
	if got := Format(Add(MustParse("0.1"), MustParse("0.2"))); got != "0.3" {
		t.Fatalf("0.1+0.2 = %s", got)
	}
	if got := Format(Mul(MustParse("19.99"), MustParse("3"))); got != "59.97" {
		t.Fatalf("19.99*3 = %s", got)
	}
	q, err := Quo(MustParse("1"), MustParse("3"))
	if err != nil || IsInteger(q) {
		t.Fatalf("1/3 = %s, %v", q, err)
	}
	if _, err := Round(MustParse("1"), "XXX"); err == nil {
		t.Fatal("unknown currency accepted")
	}
	if Cmp(MustParse("1.50"), MustParse("1.5")) != 0 {
		t.Fatal("1.50 != 1.5")
	}
}

// TestQuoAgreesWithTheDivision checks that Quo, which takes QuoExact's
// answer when the quotient terminates within 40 digits, gives what the
// 40-digit division gives, for quotients that terminate and ones that do
// not, of either sign.
func TestQuoAgreesWithTheDivision(t *testing.T) {
	values := []string{"1", "2", "3", "7", "12", "-12", "40", "0.45359237", "25", "0.001", "1000", "36", "0.125", "6.25", "99.99", "480", "999999999999999.999999", "0.000003", "-0.5"}
	for _, x := range values {
		for _, y := range values {
			a, b := MustParse(x), MustParse(y)
			var r, want Decimal
			c := ctx
			c.Precision = 40
			if _, err := c.Quo(&r, a, b); err != nil {
				t.Fatal(err)
			}
			want.Reduce(&r)
			got, err := Quo(a, b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Text('f') != want.Text('f') {
				t.Errorf("Quo(%s, %s) = %s, the division gives %s", x, y, got.Text('f'), want.Text('f'))
			}
		}
	}
	if _, err := Quo(MustParse("1"), MustParse("0")); err == nil {
		t.Error("Quo by zero gave no error")
	}
}

// TestQuoExact checks exact division: the quotients that terminate, the
// ones that do not, and agreement with a 200-digit division.
func TestQuoExact(t *testing.T) {
	tests := []struct {
		name, a, b string
		want       string // "" when the quotient does not terminate
	}{
		{"by one", "12.50", "1", "12.5"},
		{"by twelve, whole", "24", "12", "2"},
		{"by twelve, repeating", "5", "12", ""},
		{"by a pound", "45.359237", "0.45359237", "100"},
		{"kilogram in pounds", "1", "0.45359237", ""},
		{"by powers of two and five", "1", "0.0016", "625"},
		{"halving many times", "1", "1024", "0.0009765625"},
		{"shared factors cancel", "21", "0.7", "30"},
		{"zero", "0", "7", "0"},
		{"large coefficients", "999999999999.999999", "0.000003", "333333333333333333"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := QuoExact(MustParse(tt.a), MustParse(tt.b))
			if tt.want == "" {
				if ok {
					t.Fatalf("%s / %s = %s reported exact", tt.a, tt.b, got.Text('f'))
				}
				return
			}
			if !ok || got.Text('f') != tt.want {
				t.Fatalf("%s / %s = %v (exact %v), want %s", tt.a, tt.b, got, ok, tt.want)
			}
		})
	}
	t.Run("agrees with a 200-digit division", func(t *testing.T) {
		ref := exactCtx
		ref.Precision = 200
		values := []string{"1", "2", "3", "7", "12", "40", "0.45359237", "25", "0.001", "1000", "36", "0.125", "6.25", "99.99", "480"}
		for _, x := range values {
			for _, y := range values {
				a, b := MustParse(x), MustParse(y)
				var r Decimal
				cond, err := ref.Quo(&r, a, b)
				wantExact := err == nil && !cond.Inexact()
				got, ok := QuoExact(a, b)
				if ok != wantExact {
					t.Errorf("%s / %s: exact %v, reference %v", x, y, ok, wantExact)
					continue
				}
				if ok && got.Cmp(&r) != 0 {
					t.Errorf("%s / %s = %s, reference %s", x, y, got.Text('f'), r.Text('f'))
				}
			}
		}
	})
}
