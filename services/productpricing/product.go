package productpricing

import (
	"fmt"
	"regexp"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

// skuPattern repeats the contract's rule for SKUs. The platform checks it
// before a handler runs; the domain checks it again because a SKU becomes a
// storage key and must never be malformed, whoever calls.
var skuPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9._-]{0,63}$`)

// productMaskPaths are the fields UpdateProduct may change. The SKU is the
// key and never changes; etag and times are the service's.
var productMaskPaths = map[string]bool{
	"name":                  true,
	"description":           true,
	"base_unit":             true,
	"base_unit_indivisible": true,
	"conversions":           true,
	"status":                true,
	"producing_site_ids":    true,
	"lead_time_days":        true,
	"external_refs":         true,
}

// validateProduct checks a product as it will be stored and compiles its
// units. Problems are reported together, each under path ("product").
func validateProduct(p *productpricingv1.Product, path string) (*units, error) {
	var v violations
	if !skuPattern.MatchString(p.GetSku()) {
		v.add(fieldPath(path, "sku"), "must be 1 to 64 characters of A-Z, 0-9, '.', '_' or '-', starting with a letter or digit")
	}
	if p.GetName() == "" {
		v.add(fieldPath(path, "name"), "is required")
	}
	switch p.GetStatus() {
	case productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE, productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED:
	default:
		v.add(fieldPath(path, "status"), "must be PRODUCT_STATUS_ACTIVE or PRODUCT_STATUS_DISCONTINUED")
	}
	if p.GetLeadTimeDays() < 0 {
		v.add(fieldPath(path, "lead_time_days"), "must not be negative")
	}
	sites := map[string]int{}
	for i, s := range p.GetProducingSiteIds() {
		at := fieldPath(path, indexed("producing_site_ids", i))
		if s == "" {
			v.add(at, "must not be empty")
		} else if j, dup := sites[s]; dup {
			v.add(at, "site %q is already listed at producing_site_ids[%d]", s, j)
		} else {
			sites[s] = i
		}
	}
	checkExternalRefs(&v, p.GetExternalRefs(), path)
	t, err := compileUnits(p, path)
	if err != nil {
		if ie, ok := err.(*InvalidError); ok {
			v = append(v, ie.Violations...)
		} else {
			return nil, err
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return t, nil
}

// checkExternalRefs enforces one reference per system on a record.
func checkExternalRefs(v *violations, refs []*typev1.ExternalRef, path string) {
	systems := map[string]int{}
	for i, r := range refs {
		at := fieldPath(path, indexed("external_refs", i))
		if r.GetSystem() == "" {
			v.add(fieldPath(at, "system"), "is required")
			continue
		}
		if r.GetId() == "" {
			v.add(fieldPath(at, "id"), "is required")
		}
		if j, dup := systems[r.GetSystem()]; dup {
			v.add(fieldPath(at, "system"), "a product has at most one reference per system; %q is already at external_refs[%d]", r.GetSystem(), j)
		} else {
			systems[r.GetSystem()] = i
		}
	}
}

// newProduct prepares a product from a create request: output-only fields
// are the service's, and a product without a status is active.
func newProduct(in *productpricingv1.Product, now time.Time) *productpricingv1.Product {
	p := proto.Clone(in).(*productpricingv1.Product)
	if p.GetStatus() == productpricingv1.ProductStatus_PRODUCT_STATUS_UNSPECIFIED {
		p.Status = productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE
	}
	ts := timestamppb.New(now)
	p.Etag, p.CreateTime, p.UpdateTime = "", ts, ts
	return p
}

// applyMask copies the fields named in paths from src to dst. "*" names
// every field in allowed. A path may be the proto field name or its JSON
// name ("lead_time_days" or "leadTimeDays"): the gateway passes an
// updateMask query parameter through as written, and JSON clients write
// lowerCamelCase. An unknown or read-only path is an error naming
// update_mask.paths[i]; an empty mask is refused, because the contract makes
// the mask required and an empty one would silently change nothing.
func applyMask(dst, src proto.Message, paths []string, allowed map[string]bool) error {
	if len(paths) == 0 {
		return invalid("update_mask", "name at least one field to change, or \"*\" for all")
	}
	fields := dst.ProtoReflect().Descriptor().Fields()
	var names []string
	for i, p := range paths {
		if p == "*" {
			for name := range allowed {
				names = append(names, name)
			}
			continue
		}
		name := p
		if fd := fields.ByJSONName(p); fd != nil {
			name = string(fd.Name())
		}
		if name == "etag" {
			// The etag is the update's precondition, not a field to change;
			// the gateway puts it in the mask it derives from a PATCH body.
			continue
		}
		if !allowed[name] {
			return invalid(indexed("update_mask.paths", i), "%q is not a field that can be updated", p)
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return invalid("update_mask", "name at least one field to change, or \"*\" for all")
	}
	src = proto.Clone(src)
	d, s := dst.ProtoReflect(), src.ProtoReflect()
	for _, name := range names {
		fd := d.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return fmt.Errorf("mask field %q missing from %s", name, d.Descriptor().FullName())
		}
		if s.Has(fd) {
			d.Set(fd, s.Get(fd))
		} else {
			d.Clear(fd)
		}
	}
	return nil
}

// sameContent reports whether two versions of a record differ only in the
// fields the service maintains (etag, times), so a no-op update can leave the
// record, its etag and the event stream alone.
func sameContent(a, b proto.Message) bool {
	a, b = proto.Clone(a), proto.Clone(b)
	for _, m := range []proto.Message{a, b} {
		r := m.ProtoReflect()
		for _, name := range []protoreflect.Name{"etag", "create_time", "update_time"} {
			if fd := r.Descriptor().Fields().ByName(name); fd != nil {
				r.Clear(fd)
			}
		}
	}
	return proto.Equal(a, b)
}

// removedUnits returns the units old defines that updated no longer does.
// A price list entry in one of them would lose its meaning.
func removedUnits(old, updated *productpricingv1.Product) []string {
	now := map[string]bool{updated.GetBaseUnit(): true}
	for _, c := range updated.GetConversions() {
		now[c.GetUnit()] = true
	}
	var gone []string
	if !now[old.GetBaseUnit()] {
		gone = append(gone, old.GetBaseUnit())
	}
	for _, c := range old.GetConversions() {
		if !now[c.GetUnit()] {
			gone = append(gone, c.GetUnit())
		}
	}
	return gone
}

// mergeUpsert builds the product an upsert by external reference stores:
// the caller's values, keyed by the reference. existing is nil when the
// reference is new. The reference itself is added to the product's
// references; a different reference of the same system is a contradiction
// and is refused rather than silently replaced.
func mergeUpsert(existing, in *productpricingv1.Product, ref *typev1.ExternalRef, now time.Time) (*productpricingv1.Product, error) {
	p := proto.Clone(in).(*productpricingv1.Product)
	found := false
	for i, r := range p.GetExternalRefs() {
		if r.GetSystem() != ref.GetSystem() {
			continue
		}
		if r.GetId() != ref.GetId() {
			return nil, invalid(fieldPath("product", indexed("external_refs", i), "id"),
				"contradicts external_ref: the product would carry two %q references (%q and %q)", ref.GetSystem(), r.GetId(), ref.GetId())
		}
		found = true
	}
	if !found {
		p.ExternalRefs = append(p.ExternalRefs, proto.Clone(ref).(*typev1.ExternalRef))
	}
	if existing == nil {
		return newProduct(p, now), nil
	}
	if p.GetSku() != "" && p.GetSku() != existing.GetSku() {
		return nil, invalid("product.sku", "the reference %s/%s belongs to SKU %s; a SKU never changes", ref.GetSystem(), ref.GetId(), existing.GetSku())
	}
	p.Sku = existing.GetSku()
	if p.GetStatus() == productpricingv1.ProductStatus_PRODUCT_STATUS_UNSPECIFIED {
		p.Status = existing.GetStatus()
	}
	p.CreateTime = existing.GetCreateTime()
	p.UpdateTime = timestamppb.New(now)
	return p, nil
}
