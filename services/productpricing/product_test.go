package productpricing

import (
	"testing"

	"google.golang.org/protobuf/proto"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

func TestValidateProduct(t *testing.T) {
	if _, err := validateProduct(valve(), "product"); err != nil {
		t.Fatalf("valid product refused: %v", err)
	}
	tests := []struct {
		name   string
		change func(*productpricingv1.Product)
		field  string
		desc   string
	}{
		{"lower-case SKU", func(p *productpricingv1.Product) { p.Sku = "valve" }, "product.sku", "A-Z"},
		{"no name", func(p *productpricingv1.Product) { p.Name = "" }, "product.name", "required"},
		{"no status", func(p *productpricingv1.Product) { p.Status = 0 }, "product.status", "PRODUCT_STATUS_ACTIVE"},
		{"two refs of one system", func(p *productpricingv1.Product) {
			p.ExternalRefs = []*typev1.ExternalRef{{System: "sap", Id: "1"}, {System: "sap", Id: "2"}}
		}, "product.external_refs[1].system", "at most one reference per system"},
		{"site twice", func(p *productpricingv1.Product) { p.ProducingSiteIds = []string{"site_a", "site_a"} },
			"product.producing_site_ids[1]", "already listed"},
		{"conversion problems are reported with the rest", func(p *productpricingv1.Product) {
			p.Name = ""
			p.Conversions[1].PerUnit = "BOX"
		}, "product.conversions[1].per_unit", "BOX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := valve()
			tt.change(p)
			_, err := validateProduct(p, "product")
			wantInvalid(t, err, "", tt.field, tt.desc)
		})
	}
}

func TestApplyMask(t *testing.T) {
	src := with(valve(), func(p *productpricingv1.Product) {
		p.Name, p.Description, p.LeadTimeDays = "New name", "", 9
		p.Conversions = nil
	})
	tests := []struct {
		name  string
		paths []string
		check func(t *testing.T, p *productpricingv1.Product)
		field string // error expected on this field
	}{
		{"one field", []string{"name"}, func(t *testing.T, p *productpricingv1.Product) {
			if p.GetName() != "New name" || p.GetLeadTimeDays() != 0 || len(p.GetConversions()) != 2 {
				t.Errorf("got %v", p)
			}
		}, ""},
		{"a field set to its zero value clears it", []string{"conversions", "description"}, func(t *testing.T, p *productpricingv1.Product) {
			if len(p.GetConversions()) != 0 || p.GetDescription() != "" || p.GetName() != "Ball valve DN25" {
				t.Errorf("got %v", p)
			}
		}, ""},
		{"wildcard", []string{"*"}, func(t *testing.T, p *productpricingv1.Product) {
			if p.GetName() != "New name" || p.GetLeadTimeDays() != 9 {
				t.Errorf("got %v", p)
			}
		}, ""},
		{"JSON names, as REST clients write them", []string{"leadTimeDays", "name"}, func(t *testing.T, p *productpricingv1.Product) {
			if p.GetName() != "New name" || p.GetLeadTimeDays() != 9 || p.GetDescription() != "old" {
				t.Errorf("got %v", p)
			}
		}, ""},
		{"the key is not updatable", []string{"name", "sku"}, nil, "update_mask.paths[1]"},
		{"output-only field by its JSON name", []string{"createTime"}, nil, "update_mask.paths[0]"},
		{"output-only field", []string{"create_time"}, nil, "update_mask.paths[0]"},
		{"unknown field", []string{"colour"}, nil, "update_mask.paths[0]"},
		{"empty mask", nil, nil, "update_mask"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := with(valve(), func(p *productpricingv1.Product) { p.Description = "old" })
			err := applyMask(dst, src, tt.paths, productMaskPaths)
			if tt.field != "" {
				wantInvalid(t, err, "", tt.field, "")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, dst)
			// The source must not be aliased into the destination.
			dst.Name = "changed"
			if src.GetName() != "New name" {
				t.Error("applyMask aliased the source")
			}
		})
	}
}

func TestMergeUpsert(t *testing.T) {
	ref := &typev1.ExternalRef{System: "sap", Id: "M-100"}
	existing := with(valve(), func(p *productpricingv1.Product) {
		p.ExternalRefs = []*typev1.ExternalRef{ref}
		p.Status = productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED
		p.CreateTime = ts(jan1)
	})
	t.Run("new product carries the reference", func(t *testing.T) {
		p, err := mergeUpsert(nil, with(valve(), func(p *productpricingv1.Product) { p.Status = 0 }), ref, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.GetExternalRefs()) != 1 || !proto.Equal(p.GetExternalRefs()[0], ref) {
			t.Errorf("refs %v", p.GetExternalRefs())
		}
		if p.GetStatus() != productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE || !p.GetCreateTime().AsTime().Equal(now) {
			t.Errorf("status %s create time %v", p.GetStatus(), p.GetCreateTime().AsTime())
		}
	})
	t.Run("existing keeps its SKU, creation time and status when none is sent", func(t *testing.T) {
		in := with(valve(), func(p *productpricingv1.Product) { p.Sku, p.Status, p.Name = "", 0, "Renamed" })
		p, err := mergeUpsert(existing, in, ref, now)
		if err != nil {
			t.Fatal(err)
		}
		if p.GetSku() != "VALVE-100" || p.GetName() != "Renamed" || !p.GetCreateTime().AsTime().Equal(jan1) ||
			p.GetStatus() != productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED {
			t.Errorf("got %v", p)
		}
	})
	t.Run("a different SKU is refused", func(t *testing.T) {
		_, err := mergeUpsert(existing, with(valve(), func(p *productpricingv1.Product) { p.Sku = "VALVE-200" }), ref, now)
		wantInvalid(t, err, "", "product.sku", "belongs to SKU VALVE-100")
	})
	t.Run("a contradicting reference of the same system is refused", func(t *testing.T) {
		in := with(valve(), func(p *productpricingv1.Product) {
			p.ExternalRefs = []*typev1.ExternalRef{{System: "crm", Id: "c1"}, {System: "sap", Id: "M-999"}}
		})
		_, err := mergeUpsert(nil, in, ref, now)
		wantInvalid(t, err, "", "product.external_refs[1].id", "contradicts external_ref")
	})
}
