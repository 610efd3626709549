package fulfillment

import (
	"errors"
	"testing"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/money"
)

func TestNewProductFactsChainsToBase(t *testing.T) {
	c := newFakeCatalog(t)
	tests := []struct {
		name, sku, unit, toBase string
		indivisible             bool
	}{
		{"base unit", "VALVE-100", "EA", "1", true},
		{"one step", "VALVE-100", "CASE", "12", true},
		{"two steps", "VALVE-100", "PALLET", "480", true},
		{"fraction of the base", "RESIN-5", "G", "0.001", false},
		{"divisible base", "RESIN-5", "KG", "1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, ok := c.products[tt.sku].Units[tt.unit]
			if !ok {
				t.Fatalf("%s has no unit %s", tt.sku, tt.unit)
			}
			if money.Cmp(u.ToBase, money.MustParse(tt.toBase)) != 0 || u.Indivisible != tt.indivisible {
				t.Errorf("%s = %s (indivisible %v), want %s (%v)", tt.unit, u.ToBase, u.Indivisible, tt.toBase, tt.indivisible)
			}
		})
	}
}

func TestNewProductFactsRefusesBrokenTables(t *testing.T) {
	conv := func(unit, factor, per string) *productpricingv1.UnitConversion {
		return &productpricingv1.UnitConversion{Unit: unit, Factor: factor, PerUnit: per}
	}
	tests := []struct {
		name string
		p    *productpricingv1.Product
	}{
		{"no base unit", &productpricingv1.Product{Sku: "X"}},
		{"cycle", &productpricingv1.Product{Sku: "X", BaseUnit: "EA", Conversions: []*productpricingv1.UnitConversion{conv("A", "2", "B"), conv("B", "2", "A")}}},
		{"unknown per unit", &productpricingv1.Product{Sku: "X", BaseUnit: "EA", Conversions: []*productpricingv1.UnitConversion{conv("A", "2", "NOPE")}}},
		{"zero factor", &productpricingv1.Product{Sku: "X", BaseUnit: "EA", Conversions: []*productpricingv1.UnitConversion{conv("A", "0", "EA")}}},
		{"unit defined twice", &productpricingv1.Product{Sku: "X", BaseUnit: "EA", Conversions: []*productpricingv1.UnitConversion{conv("A", "2", "EA"), conv("A", "3", "EA")}}},
		{"base unit converted", &productpricingv1.Product{Sku: "X", BaseUnit: "EA", Conversions: []*productpricingv1.UnitConversion{conv("EA", "2", "EA")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewProductFacts(tt.p); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestToBase(t *testing.T) {
	c := newFakeCatalog(t)
	tests := []struct {
		name, sku, value, unit string
		want                   string
		err                    error
	}{
		{"cases to each", "VALVE-100", "2", "CASE", "24", nil},
		{"pallet to each", "VALVE-100", "1", "PALLET", "480", nil},
		{"grams to kilograms", "RESIN-5", "250", "G", "0.25", nil},
		{"bags to kilograms", "RESIN-5", "3", "BAG", "75", nil},
		{"fraction of a divisible base", "RESIN-5", "0.5", "KG", "0.5", nil},
		{"half a case", "VALVE-100", "0.5", "CASE", "", ErrNotConvertible},
		{"fraction of an indivisible base", "VALVE-100", "1.5", "EA", "", ErrNotConvertible},
		{"fraction of a box is a fraction of an each", "GASKET-7", "0.005", "BOX", "", ErrNotConvertible},
		{"whole eaches from a fraction of a box", "GASKET-7", "0.25", "BOX", "25", nil},
		{"too many fraction digits in the base", "RESIN-5", "0.0001", "G", "", ErrNotConvertible},
		{"too large in the base", "VALVE-100", "999999999999", "PALLET", "", ErrNotConvertible},
		{"negative", "RESIN-5", "-1", "KG", "", ErrNotConvertible},
		{"unknown unit", "VALVE-100", "1", "DOZEN", "", ErrUnknownUnit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.products[tt.sku].ToBase(money.MustParse(tt.value), tt.unit)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ToBase = %v, %v; want %v", got, err, tt.err)
				}
				return
			}
			if err != nil || money.Format(got) != tt.want {
				t.Fatalf("ToBase = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestFromBase(t *testing.T) {
	c := newFakeCatalog(t)
	tests := []struct {
		name, sku, base, unit string
		want                  string
		ok                    bool
	}{
		{"whole cases", "VALVE-100", "24", "CASE", "2", true},
		{"half a case is not a case", "VALVE-100", "6", "CASE", "", false},
		{"a fraction of a whole-only unit", "RESIN-5", "1", "BAG", "", false},
		{"kilograms to grams", "RESIN-5", "0.25", "G", "250", true},
		{"unknown unit", "RESIN-5", "1", "LB", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.products[tt.sku].FromBase(money.MustParse(tt.base), tt.unit)
			if ok != tt.ok || (ok && money.Format(got) != tt.want) {
				t.Errorf("FromBase = %v, %v; want %s, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
