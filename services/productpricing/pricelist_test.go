package productpricing

import (
	"errors"
	"testing"
	"time"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
)

func catalogLookup(products ...*productpricingv1.Product) productLookup {
	bySKU := map[string]*productpricingv1.Product{}
	for _, p := range products {
		bySKU[p.GetSku()] = p
	}
	return func(sku string) (*productpricingv1.Product, error) { return bySKU[sku], nil }
}

func TestValidatePriceList(t *testing.T) {
	valid := func() *productpricingv1.PriceList {
		return list("pl_1", "EUR", entry("VALVE-100", "CASE", "120", "10", "110", "50", "100"), entry("RESIN-PP", "LB", "0.995"))
	}
	lookup := catalogLookup(valve(), resin())
	if err := validatePriceList(valid(), lookup); err != nil {
		t.Fatalf("valid list refused: %v", err)
	}
	tests := []struct {
		name   string
		change func(*productpricingv1.PriceList)
		field  string
		desc   string
	}{
		{"unknown SKU", func(p *productpricingv1.PriceList) { p.Entries[1].Sku = "NOPE" },
			"price_list.entries[1].sku", `no product has SKU "NOPE"`},
		{"unit the product does not define", func(p *productpricingv1.PriceList) { p.Entries[0].Unit = "KG" },
			"price_list.entries[0].unit", "product VALVE-100 has no unit \"KG\"; its units are EA, CASE, PALLET"},
		{"same SKU twice", func(p *productpricingv1.PriceList) { p.Entries[1] = entry("VALVE-100", "EA", "1") },
			"price_list.entries[1].sku", "already priced at entries[0]"},
		{"unknown currency", func(p *productpricingv1.PriceList) { p.CurrencyCode = "EUX" },
			"price_list.currency_code", "ISO 4217"},
		{"customer and tier together", func(p *productpricingv1.PriceList) { p.CustomerId, p.CustomerTier = "cus_1", "gold" },
			"price_list.customer_tier", "cannot also name a tier"},
		{"validity ends before it starts", func(p *productpricingv1.PriceList) { p.ValidTo = ts(jan1.Add(-time.Hour)) },
			"price_list.valid_to", "after valid_from"},
		{"empty validity window", func(p *productpricingv1.PriceList) { p.ValidTo = ts(jan1) },
			"price_list.valid_to", "after valid_from"},
		{"no start", func(p *productpricingv1.PriceList) { p.ValidFrom = nil },
			"price_list.valid_from", "required"},
		{"price with seven decimals", func(p *productpricingv1.PriceList) { p.Entries[1].UnitPrice = "0.9950001" },
			"price_list.entries[1].unit_price", "more than 6 fraction digits"},
		{"negative price", func(p *productpricingv1.PriceList) { p.Entries[1].UnitPrice = "-1" },
			"price_list.entries[1].unit_price", "negative"},
		{"breaks out of order", func(p *productpricingv1.PriceList) { p.Entries[0].Breaks[1].MinQuantity = "10" },
			"price_list.entries[0].breaks[1].min_quantity", "must ascend"},
		{"break at zero", func(p *productpricingv1.PriceList) { p.Entries[0].Breaks[0].MinQuantity = "0" },
			"price_list.entries[0].breaks[0].min_quantity", "greater than zero"},
		{"break price not a number", func(p *productpricingv1.PriceList) { p.Entries[0].Breaks[0].UnitPrice = "ten" },
			"price_list.entries[0].breaks[0].unit_price", "not a decimal"},
		{"priority out of range", func(p *productpricingv1.PriceList) { p.Priority = 1001 },
			"price_list.priority", "between 0 and 1000"},
		{"no name", func(p *productpricingv1.PriceList) { p.Name = "" }, "price_list.name", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := valid()
			tt.change(pl)
			wantInvalid(t, validatePriceList(pl, lookup), "", tt.field, tt.desc)
		})
	}
}

func TestValidatePriceListCapsViolations(t *testing.T) {
	pl := list("pl_1", "EUR")
	for range 500 {
		pl.Entries = append(pl.Entries, entry("NOPE", "EA", "-1"))
	}
	var inv *InvalidError
	if !errors.As(validatePriceList(pl, catalogLookup()), &inv) {
		t.Fatal("want an InvalidError")
	}
	if n := len(inv.Violations); n > maxViolations+2 {
		t.Errorf("%d violations reported, want about %d", n, maxViolations)
	}
}

func TestConflicts(t *testing.T) {
	at := func(from time.Time, to *time.Time) *productpricingv1.PriceList {
		pl := scoped("pl_a", "eu", "", "", 1, "1")
		pl.ValidFrom = ts(from)
		if to != nil {
			pl.ValidTo = ts(*to)
		}
		return pl
	}
	base := at(feb1, &mar1)
	apr1 := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		other *productpricingv1.PriceList
		want  bool
	}{
		{"same window", at(feb1, &mar1), true},
		{"starts inside", at(now, &apr1), true},
		{"open-ended from before", at(jan1, nil), true},
		{"ends exactly when the other starts", at(jan1, &feb1), false},
		{"starts exactly when the other ends", at(mar1, nil), false},
		{"other priority", with(at(feb1, &mar1), func(p *productpricingv1.PriceList) { p.Priority = 2 }), false},
		{"other currency", with(at(feb1, &mar1), func(p *productpricingv1.PriceList) { p.CurrencyCode = "USD" }), false},
		{"other region", with(at(feb1, &mar1), func(p *productpricingv1.PriceList) { p.Region = "na" }), false},
		{"with a tier", with(at(feb1, &mar1), func(p *productpricingv1.PriceList) { p.CustomerTier = "gold" }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.other.Id = "pl_b"
			if got := conflictsWith(base, tt.other); got != tt.want {
				t.Errorf("conflictsWith = %v, want %v", got, tt.want)
			}
			if got := conflictsWith(tt.other, base); got != tt.want {
				t.Errorf("conflictsWith is not symmetric")
			}
		})
	}
	t.Run("a list never conflicts with itself", func(t *testing.T) {
		if conflictsWith(base, base) {
			t.Error("self conflict")
		}
	})
	t.Run("customer lists with and without the region compete", func(t *testing.T) {
		a := scoped("pl_a", "", "", "cus_1", 0, "1")
		b := scoped("pl_b", "eu", "", "cus_1", 0, "1")
		if !conflictsWith(a, b) {
			t.Error("no conflict between two lists of one customer at one priority")
		}
	})
}
