package productpricing

import (
	"sync"
	"testing"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/money"
)

func conv(unit, factor, per string) *productpricingv1.UnitConversion {
	return &productpricingv1.UnitConversion{Unit: unit, Factor: factor, PerUnit: per}
}

func TestCompileUnitsRejects(t *testing.T) {
	tests := []struct {
		name  string
		base  string
		convs []*productpricingv1.UnitConversion
		field string
		desc  string
		count int // violations expected; 0 means do not check
	}{
		{"per_unit neither base nor defined", "EA", []*productpricingv1.UnitConversion{conv("CASE", "12", "EA"), conv("PALLET", "40", "BOX")},
			"product.conversions[1].per_unit", `"BOX" is neither the base unit EA`, 1},
		{"two units defined by each other", "EA", []*productpricingv1.UnitConversion{conv("A", "2", "B"), conv("B", "3", "A")},
			"product.conversions[0].per_unit", "A → B → A", 1},
		{"unit defined by itself", "EA", []*productpricingv1.UnitConversion{conv("A", "2", "A")},
			"product.conversions[0].per_unit", "A → A", 1},
		{"chain into a cycle is reported once, at the cycle", "EA", []*productpricingv1.UnitConversion{conv("C", "2", "A"), conv("A", "2", "B"), conv("B", "2", "A")},
			"product.conversions[1].per_unit", "every chain must end at the base unit EA", 1},
		{"duplicate unit", "EA", []*productpricingv1.UnitConversion{conv("CASE", "12", "EA"), conv("CASE", "6", "EA")},
			"product.conversions[1].unit", "already defined by conversions[0]", 1},
		{"unit is the base unit", "EA", []*productpricingv1.UnitConversion{conv("EA", "1", "EA")},
			"product.conversions[0].unit", "is the base unit", 0},
		{"zero factor", "EA", []*productpricingv1.UnitConversion{conv("CASE", "0", "EA")},
			"product.conversions[0].factor", "greater than zero", 1},
		{"factor not a number", "EA", []*productpricingv1.UnitConversion{conv("CASE", "1e3", "EA")},
			"product.conversions[0].factor", "not a decimal", 1},
		{"negative factor", "EA", []*productpricingv1.UnitConversion{conv("CASE", "-2", "EA")},
			"product.conversions[0].factor", "greater than zero", 1},
		{"no base unit", "", nil, "product.base_unit", "required", 1},
		{"every problem at once", "EA", []*productpricingv1.UnitConversion{conv("CASE", "0", "EA"), conv("CASE", "2", "BOX")},
			"product.conversions[1].per_unit", "BOX", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &productpricingv1.Product{Sku: "X", BaseUnit: tt.base, Conversions: tt.convs}
			_, err := compileUnits(p, "product")
			inv := wantInvalid(t, err, "", tt.field, tt.desc)
			if tt.count > 0 && len(inv.Violations) != tt.count {
				t.Errorf("got %d violations %+v, want %d", len(inv.Violations), inv.Violations, tt.count)
			}
		})
	}
}

func TestCompileUnitsChains(t *testing.T) {
	// Conversions may be listed in any order; chains resolve through
	// other units down to the base.
	p := &productpricingv1.Product{Sku: "X", BaseUnit: "EA", Conversions: []*productpricingv1.UnitConversion{
		conv("TRUCK", "20", "PALLET"), conv("PALLET", "40", "CASE"), conv("CASE", "12", "EA"),
	}}
	u, err := compileUnits(p, "product")
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[string]string{"EA": "1", "CASE": "12", "PALLET": "480", "TRUCK": "9600"} {
		got, ok := u.lookup(code)
		if !ok {
			t.Fatalf("unit %s missing", code)
		}
		if s := got.toBase.Text('f'); s != want {
			t.Errorf("%s = %s EA, want %s", code, s, want)
		}
	}
}

func TestConvertQuantity(t *testing.T) {
	tests := []struct {
		name     string
		product  *productpricingv1.Product
		value    string
		from, to string
		want     string // "value UNIT"
		wantBase string
	}{
		{"each to case", valve(), "24", "EA", "CASE", "2 CASE", "24 EA"},
		{"pallet to each through case", valve(), "1", "PALLET", "EA", "480 EA", "480 EA"},
		{"case to pallet", valve(), "80", "CASE", "PALLET", "2 PALLET", "960 EA"},
		{"same unit", valve(), "7", "CASE", "CASE", "7 CASE", "84 EA"},
		{"pound to kilogram, exact", resin(), "100", "LB", "KG", "45.359237 KG", "45.359237 KG"},
		{"kilogram back to pound, exact", resin(), "45.359237", "KG", "LB", "100 LB", "45.359237 KG"},
		{"fraction of a pound", resin(), "2.5", "LB", "KG", "1.133980925 KG", ""}, // refused: 9 digits
		{"kilogram to bags", resin(), "50", "KG", "BAG", "2 BAG", "50 KG"},
		{"bags to pounds", resin(), "0", "BAG", "LB", "0 LB", "0 KG"},
		{"trailing zeros dropped", resin(), "2.000", "BAG", "KG", "50 KG", "50 KG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := ConvertQuantity(tt.product, qty(tt.value, tt.from), tt.to)
			if tt.wantBase == "" {
				wantInvalid(t, err, ReasonNotExact, "to_unit", "cannot be written exactly")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetQuantity().GetValue() + " " + resp.GetQuantity().GetUnit(); got != tt.want {
				t.Errorf("quantity %s, want %s", got, tt.want)
			}
			if got := resp.GetBaseQuantity().GetValue() + " " + resp.GetBaseQuantity().GetUnit(); got != tt.wantBase {
				t.Errorf("base quantity %s, want %s", got, tt.wantBase)
			}
		})
	}
}

func TestConvertQuantityRefuses(t *testing.T) {
	tests := []struct {
		name     string
		product  *productpricingv1.Product
		value    string
		from, to string
		reason   string
		field    string
		unit     string // metadata "unit"
		approx   string // metadata "approximate_value" or "value"
	}{
		{"eaches that are not whole cases", valve(), "5", "EA", "CASE", ReasonNotWholeUnits, "to_unit", "CASE", "0.416667"},
		{"half an each", valve(), "2.5", "EA", "CASE", ReasonNotWholeUnits, "quantity.value", "EA", "2.5"},
		{"a tenth of a case is 1.2 eaches", with(valve(), func(p *productpricingv1.Product) { p.Conversions[0].Indivisible = false }),
			"0.1", "CASE", "CASE", ReasonNotWholeUnits, "quantity.value", "EA", "1.2"},
		{"one pound in kilograms needs 8 digits", resin(), "1", "LB", "KG", ReasonNotExact, "to_unit", "KG", "0.453592"},
		{"one kilogram in pounds does not terminate", resin(), "1", "KG", "LB", ReasonNotExact, "to_unit", "LB", "2.204623"},
		{"a pound is a fraction of a bag", resin(), "1", "LB", "BAG", ReasonNotWholeUnits, "to_unit", "BAG", "0.0181436948"},
		{"kilograms that are not whole bags", resin(), "30", "KG", "BAG", ReasonNotWholeUnits, "to_unit", "BAG", "1.2"},
		{"result beyond 12 integer digits", valve(), "999999999999", "PALLET", "EA", ReasonOutOfRange, "to_unit", "EA", ""},
		{"unknown source unit", valve(), "1", "BOX", "EA", "", "quantity.unit", "BOX", ""},
		{"unknown target unit", valve(), "1", "EA", "KG", "", "to_unit", "KG", ""},
		{"not a number", valve(), "1e3", "EA", "EA", "", "quantity.value", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ConvertQuantity(tt.product, qty(tt.value, tt.from), tt.to)
			inv := wantInvalid(t, err, tt.reason, tt.field, "")
			if tt.unit != "" && inv.Meta["unit"] != tt.unit {
				t.Errorf("metadata unit %q, want %q", inv.Meta["unit"], tt.unit)
			}
			if tt.approx != "" {
				got := inv.Meta["approximate_value"]
				if got == "" {
					got = inv.Meta["value"]
				}
				if got != tt.approx {
					t.Errorf("metadata value %q, want %q", got, tt.approx)
				}
			}
		})
	}
}

func TestExactArithmetic(t *testing.T) {
	u, err := compileUnits(resin(), "")
	if err != nil {
		t.Fatal(err)
	}
	lb, _ := u.lookup("LB")
	kg, _ := u.lookup("KG")
	// Round trip through a non-terminating direction is refused, never
	// approximated: 1 KG → LB has no exact answer.
	if _, _, ok := u.convertExact(money.MustParse("1"), kg, lb); ok {
		t.Error("1 KG → LB reported exact")
	}
	// Every pound amount converts exactly to kilograms (multiplication).
	for _, v := range []string{"1", "0.000001", "999999999999.999999"} {
		got, _, ok := u.convertExact(money.MustParse(v), lb, kg)
		if !ok {
			t.Fatalf("%s LB → KG reported inexact", v)
		}
		back, _, ok := u.convertExact(got, kg, lb)
		if !ok || back.Cmp(money.MustParse(v)) != 0 {
			t.Errorf("%s LB → %s KG → %v LB (exact %v)", v, got.Text('f'), back, ok)
		}
	}
}

// TestHugeUnitChains checks that extreme but valid definitions are refused
// or answered with an error, never with a panic or a rounded number.
func TestHugeUnitChains(t *testing.T) {
	const big = "999999999999.999999999"
	chain := func(n int) *productpricingv1.Product {
		p := &productpricingv1.Product{Sku: "HUGE", Name: "Huge", BaseUnit: "EA", Status: productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE,
			Conversions: []*productpricingv1.UnitConversion{conv("WEEK", "7", "EA")}}
		per := "EA"
		for i := range n {
			u := string(rune('A'+i)) + "X"
			p.Conversions = append(p.Conversions, conv(u, big, per))
			per = u
		}
		return p
	}
	t.Run("a chain beyond 100 digits is refused", func(t *testing.T) {
		_, err := compileUnits(chain(6), "product")
		wantInvalid(t, err, "", "product.conversions[5].factor", "more than 100 digits")
	})
	p := chain(4) // the top unit is about 10^48 EA
	top := "DX"
	t.Run("conversion out of range", func(t *testing.T) {
		_, err := ConvertQuantity(p, qty("999999999999", top), "EA")
		wantInvalid(t, err, ReasonOutOfRange, "to_unit", "")
		// 1 DX in sevens does not terminate, and is too large for a hint.
		_, err = ConvertQuantity(p, qty("1", top), "WEEK")
		inv := wantInvalid(t, err, ReasonNotExact, "to_unit", "")
		if _, ok := inv.Meta["approximate_value"]; ok {
			t.Errorf("approximation given for a value beyond a Quantity: %v", inv.Meta)
		}
	})
	t.Run("pricing out of range", func(t *testing.T) {
		cat := newCatalog([]*productpricingv1.Product{p}, list("pl_1", "EUR", entry("HUGE", "EA", "999999999999999.999999")))
		resp, err := Simulate(cat, acmeEU, "EUR", now, []*productpricingv1.SimulationLine{
			line("HUGE", "999999999999", top), line("HUGE", "1", "EA"),
		})
		if err != nil {
			t.Fatal(err)
		}
		// Line 1 is 999999999999999.999999, which rounds up to 16 digits.
		for i, l := range resp.GetLines() {
			if l.GetReason() != ReasonOutOfRange {
				t.Errorf("line %d: %v", i, l)
			}
		}
		if resp.GetTotal().GetAmount() != "0.00" {
			t.Errorf("total %s", resp.GetTotal().GetAmount())
		}
	})
}

// TestConvertAgreesWithTheBaseUnitPath checks convert, which multiplies by
// a cached factor per unit pair when the factor terminates, against
// convertExact's way through the base unit: the same exact answer, the
// same refusals (1 KG in LB), and the same text, for every pair of units
// of two products, many quantities, from many goroutines at once so that
// the cache is filled concurrently.
func TestConvertAgreesWithTheBaseUnitPath(t *testing.T) {
	packs := &productpricingv1.Product{Sku: "X", BaseUnit: "EA", Conversions: []*productpricingv1.UnitConversion{
		conv("TRUCK", "20", "PALLET"), conv("PALLET", "40", "CASE"), conv("CASE", "12", "EA"), conv("DOZEN", "12", "EA"), conv("SIXTH", "6", "EA"),
	}}
	quantities := []string{"0", "1", "2.5", "3", "7", "12", "0.000001", "0.45359237", "25", "480", "999999999999.999999", "0.333333"}
	for _, p := range []*productpricingv1.Product{packs, resin()} {
		u, err := compileUnits(p, "")
		if err != nil {
			t.Fatal(err)
		}
		var codes []string
		for c := range u.byKey {
			codes = append(codes, c)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for _, fc := range codes {
					for _, tc := range codes {
						from, _ := u.lookup(fc)
						to, _ := u.lookup(tc)
						for _, q := range quantities {
							v := money.MustParse(q)
							want, _, wantOK := u.convertExact(v, from, to)
							got, ok := u.convert(v, from, to)
							if ok != wantOK || (ok && got.Text('f') != want.Text('f')) {
								t.Errorf("%s %s → %s: convert %v (%v), through the base unit %v (%v)", q, fc, tc, got, ok, want, wantOK)
							}
						}
					}
				}
			})
		}
		wg.Wait()
	}
}
