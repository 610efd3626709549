package app

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
)

// pricingREST wraps the product-pricing calls the tests repeat.
type pricingREST struct {
	*restClient
	keys apiKeys
}

// product reads a product with the admin key; nil when there is none.
func (c pricingREST) product(t *testing.T, sku string) *productpricingv1.Product {
	t.Helper()
	r := c.do(t, "GET", "/v1/products/"+url.PathEscape(sku), c.keys.admin, "")
	if r.code == 404 {
		return nil
	}
	out := &productpricingv1.Product{}
	r.ok(t, out)
	return out
}

// priceLists lists every price list the admin sees, without entries.
func (c pricingREST) priceLists(t *testing.T) []*productpricingv1.PriceList {
	t.Helper()
	var out productpricingv1.ListPriceListsResponse
	c.do(t, "GET", "/v1/priceLists?pageSize=200", c.keys.admin, "").ok(t, &out)
	if out.GetNextPageToken() != "" {
		t.Fatal("more than one page of price lists")
	}
	return out.GetPriceLists()
}

func TestRESTProductPricing(t *testing.T) {
	inst := startTestNode(t, "--rate-limit", "0")
	rc := newRESTClient(inst)
	var keys apiKeys
	if !t.Run("api keys", func(t *testing.T) { keys = createAPIKeys(t, rc) }) {
		t.FailNow()
	}
	c := pricingREST{restClient: rc, keys: keys}

	t.Run("products", func(t *testing.T) {
		tests := []struct {
			name       string
			key        string
			sku        string
			body       string
			wantCode   int
			wantReason string
			wantField  string
		}{
			{
				name: "erp creates a product counted in each, sold by case and pallet", key: keys.erp, sku: "VALVE-100", wantCode: 200,
				body: `{"sku":"VALVE-100","name":"Ball valve DN100","baseUnit":"EA","baseUnitIndivisible":true,"leadTimeDays":14,
					"conversions":[{"unit":"CASE","factor":"12","perUnit":"EA","indivisible":true},{"unit":"PALLET","factor":"40","perUnit":"CASE","indivisible":true}],
					"externalRefs":[{"system":"sap","id":"MAT-100"}]}`,
			},
			{
				name: "erp creates a product by the metre", key: keys.erp, sku: "CABLE-XL", wantCode: 200,
				body: `{"sku":"CABLE-XL","name":"Cable XL","baseUnit":"M","conversions":[{"unit":"ROLL","factor":"50","perUnit":"M","indivisible":true},{"unit":"KM","factor":"1000","perUnit":"M"}]}`,
			},
			{
				name: "erp creates a product by weight with a pound", key: keys.erp, sku: "FLOUR-T55", wantCode: 200,
				body: `{"sku":"FLOUR-T55","name":"Flour T55","baseUnit":"KG","conversions":[{"unit":"LB","factor":"0.45359237","perUnit":"KG"},{"unit":"SACK","factor":"25","perUnit":"KG","indivisible":true}]}`,
			},
			{name: "a product no list prices", key: keys.erp, sku: "GASKET-7", wantCode: 200, body: `{"sku":"GASKET-7","name":"Gasket 7","baseUnit":"EA","baseUnitIndivisible":true}`},
			{name: "a discontinued product", key: keys.erp, sku: "OLD-PUMP", wantCode: 200, body: `{"sku":"OLD-PUMP","name":"Old pump","baseUnit":"EA","status":"PRODUCT_STATUS_DISCONTINUED"}`},
			{name: "crm may not create products", key: keys.crm, sku: "CRM-MADE", wantCode: 403, wantReason: "PERMISSION_DENIED", body: `{"sku":"CRM-MADE","name":"From the CRM","baseUnit":"EA"}`},
			{name: "ops may not create products", key: keys.ops, sku: "OPS-MADE", wantCode: 403, wantReason: "PERMISSION_DENIED", body: `{"sku":"OPS-MADE","name":"From ops","baseUnit":"EA"}`},
			{name: "SKU taken", key: keys.erp, sku: "VALVE-100", wantCode: 409, wantReason: "ALREADY_EXISTS", body: `{"sku":"VALVE-100","name":"Another valve","baseUnit":"EA"}`},
			{
				name: "conversion to an undefined unit", key: keys.erp, sku: "BOXED-1", wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "product.conversions[0].per_unit",
				body: `{"sku":"BOXED-1","name":"Boxed","baseUnit":"EA","conversions":[{"unit":"CASE","factor":"12","perUnit":"BOX"}]}`,
			},
			{
				name: "zero factor", key: keys.erp, sku: "ZERO-1", wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "product.conversions[0].factor",
				body: `{"sku":"ZERO-1","name":"Zero","baseUnit":"EA","conversions":[{"unit":"CASE","factor":"0","perUnit":"EA"}]}`,
			},
			{
				name: "lowercase SKU", key: keys.erp, sku: "valve-9", wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "product.sku",
				body: `{"sku":"valve-9","name":"Lower","baseUnit":"EA"}`,
			},
			{
				name: "factor as a JSON number", key: keys.erp, sku: "NUM-1", wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "body",
				body: `{"sku":"NUM-1","name":"Number","baseUnit":"EA","conversions":[{"unit":"CASE","factor":12,"perUnit":"EA"}]}`,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := c.product(t, tt.sku)
				r := c.do(t, "POST", "/v1/products", tt.key, tt.body)
				if tt.wantCode == 200 {
					got := &productpricingv1.Product{}
					r.ok(t, got)
					if got.GetSku() != tt.sku || got.GetEtag() == "" {
						t.Fatalf("created %v", got)
					}
					if stored := c.product(t, tt.sku); !proto.Equal(stored, got) {
						t.Fatalf("stored %v, answered %v", stored, got)
					}
					return
				}
				e := r.fails(t, tt.wantCode, tt.wantReason)
				if tt.wantField != "" {
					e.wantField(t, tt.wantField)
				}
				if after := c.product(t, tt.sku); !proto.Equal(before, after) {
					t.Fatalf("a refused create changed %s: %v → %v", tt.sku, before, after)
				}
			})
		}
		t.Run("crm reads products", func(t *testing.T) {
			var got productpricingv1.Product
			c.do(t, "GET", "/v1/products/VALVE-100", keys.crm, "").ok(t, &got)
			if len(got.GetConversions()) != 2 || got.GetConversions()[1].GetPerUnit() != "CASE" {
				t.Fatalf("conversions %v", got.GetConversions())
			}
		})
	})

	t.Run("convert quantity", func(t *testing.T) {
		tests := []struct {
			name       string
			sku        string
			body       string
			wantCode   int
			wantQty    string // value and unit, "960 EA"
			wantBase   string
			wantReason string
			wantField  string
			wantMeta   map[string]string
		}{
			{name: "pallets to each through cases", sku: "VALVE-100", body: `{"quantity":{"value":"2","unit":"PALLET"},"toUnit":"EA"}`, wantCode: 200, wantQty: "960 EA", wantBase: "960 EA"},
			{name: "each to whole cases", sku: "VALVE-100", body: `{"quantity":{"value":"36","unit":"EA"},"toUnit":"CASE"}`, wantCode: 200, wantQty: "3 CASE", wantBase: "36 EA"},
			{name: "kilometres to rolls", sku: "CABLE-XL", body: `{"quantity":{"value":"1.5","unit":"KM"},"toUnit":"ROLL"}`, wantCode: 200, wantQty: "30 ROLL", wantBase: "1500 M"},
			{name: "pounds to kilograms, exactly", sku: "FLOUR-T55", body: `{"quantity":{"value":"100","unit":"LB"},"toUnit":"KG"}`, wantCode: 200, wantQty: "45.359237 KG", wantBase: "45.359237 KG"},
			{name: "more fraction digits than a quantity carries", sku: "FLOUR-T55", body: `{"quantity":{"value":"10","unit":"LB"},"toUnit":"KG"}`,
				wantCode: 400, wantReason: "NOT_EXACT", wantField: "to_unit", wantMeta: map[string]string{"approximate_value": "4.535924"}},
			{name: "half a case is refused, not rounded", sku: "VALVE-100", body: `{"quantity":{"value":"30","unit":"EA"},"toUnit":"CASE"}`,
				wantCode: 400, wantReason: "NOT_WHOLE_UNITS", wantField: "to_unit", wantMeta: map[string]string{"unit": "CASE", "value": "2.5"}},
			{name: "fractional each", sku: "VALVE-100", body: `{"quantity":{"value":"2.5","unit":"EA"},"toUnit":"CASE"}`,
				wantCode: 400, wantReason: "NOT_WHOLE_UNITS", wantField: "quantity.value", wantMeta: map[string]string{"unit": "EA"}},
			{name: "a sack in pounds does not terminate", sku: "FLOUR-T55", body: `{"quantity":{"value":"3","unit":"SACK"},"toUnit":"LB"}`,
				wantCode: 400, wantReason: "NOT_EXACT", wantField: "to_unit"},
			{name: "unknown unit", sku: "VALVE-100", body: `{"quantity":{"value":"1","unit":"DRUM"},"toUnit":"EA"}`,
				wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "quantity.unit"},
			{name: "value with a comma", sku: "VALVE-100", body: `{"quantity":{"value":"1,5","unit":"EA"},"toUnit":"EA"}`,
				wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "quantity.value"},
			{name: "unknown product", sku: "NOPE-1", body: `{"quantity":{"value":"1","unit":"EA"},"toUnit":"EA"}`, wantCode: 404, wantReason: "NOT_FOUND"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := c.do(t, "POST", "/v1/products/"+tt.sku+":convertQuantity", keys.crm, tt.body)
				if tt.wantCode != 200 {
					e := r.fails(t, tt.wantCode, tt.wantReason)
					if tt.wantField != "" {
						e.wantField(t, tt.wantField)
					}
					for k, v := range tt.wantMeta {
						if e.meta()[k] != v {
							t.Fatalf("metadata %v, want %s=%s", e.meta(), k, v)
						}
					}
					return
				}
				var got productpricingv1.ConvertQuantityResponse
				r.ok(t, &got)
				q, b := got.GetQuantity(), got.GetBaseQuantity()
				if s := q.GetValue() + " " + q.GetUnit(); s != tt.wantQty {
					t.Fatalf("quantity %s, want %s", s, tt.wantQty)
				}
				if s := b.GetValue() + " " + b.GetUnit(); s != tt.wantBase {
					t.Fatalf("base quantity %s, want %s", s, tt.wantBase)
				}
			})
		}
	})

	// Lists are valid from 2026 on; simulations pin their pricing date.
	var global, euList, old *productpricingv1.PriceList
	t.Run("price lists", func(t *testing.T) {
		tests := []struct {
			name       string
			key        string
			body       string
			wantCode   int
			wantReason string
			wantField  string
			into       **productpricingv1.PriceList
			check      func(t *testing.T, e restError)
		}{
			{
				name: "erp creates a global list with quantity breaks", key: keys.erp, wantCode: 200, into: &global,
				body: `{"name":"EUR list 2026","currencyCode":"EUR","validFrom":"2026-01-01T00:00:00Z","entries":[
					{"sku":"VALVE-100","unit":"EA","unitPrice":"10.00","breaks":[{"minQuantity":"100","unitPrice":"9.50"},{"minQuantity":"500","unitPrice":"9.00"}]},
					{"sku":"CABLE-XL","unit":"M","unitPrice":"0.125"}]}`,
			},
			{
				name: "erp creates a region list priced per kilogram", key: keys.erp, wantCode: 200, into: &euList,
				body: `{"name":"EU bakery 2026","currencyCode":"EUR","region":"eu","validFrom":"2026-01-01T00:00:00Z","entries":[{"sku":"FLOUR-T55","unit":"KG","unitPrice":"2.00"}]}`,
			},
			{
				name: "a window ending where the 2026 list starts does not overlap", key: keys.erp, wantCode: 200, into: &old,
				body: `{"name":"EUR list 2025","currencyCode":"EUR","validFrom":"2025-01-01T00:00:00Z","validTo":"2026-01-01T00:00:00Z","entries":[{"sku":"VALVE-100","unit":"EA","unitPrice":"20.00"}]}`,
			},
			{
				name: "crm may not create price lists", key: keys.crm, wantCode: 403, wantReason: "PERMISSION_DENIED",
				body: `{"name":"CRM discount","currencyCode":"EUR","validFrom":"2026-01-01T00:00:00Z","priority":999,"entries":[{"sku":"VALVE-100","unit":"EA","unitPrice":"0.01"}]}`,
			},
			{
				name: "same scope and priority overlapping is a conflict naming the other list", key: keys.erp, wantCode: 409, wantReason: "PRICE_LIST_OVERLAP",
				body: `{"name":"EUR mid-year","currencyCode":"EUR","validFrom":"2026-06-01T00:00:00Z","validTo":"2026-07-01T00:00:00Z","entries":[{"sku":"VALVE-100","unit":"EA","unitPrice":"11.00"}]}`,
				check: func(t *testing.T, e restError) {
					if e.meta()["price_list_id"] != global.GetId() {
						t.Fatalf("metadata %v, want the 2026 list %s", e.meta(), global.GetId())
					}
				},
			},
			{
				name: "entry for an unknown product", key: keys.erp, wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "price_list.entries[0].sku",
				body: `{"name":"USD list","currencyCode":"USD","validFrom":"2026-01-01T00:00:00Z","entries":[{"sku":"NOPE-1","unit":"EA","unitPrice":"1"}]}`,
			},
			{
				name: "entry in a unit the product lacks", key: keys.erp, wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "price_list.entries[0].unit",
				body: `{"name":"USD list","currencyCode":"USD","validFrom":"2026-01-01T00:00:00Z","entries":[{"sku":"CABLE-XL","unit":"EA","unitPrice":"1"}]}`,
			},
			{
				name: "no validity start", key: keys.erp, wantCode: 400, wantReason: "INVALID_ARGUMENT", wantField: "price_list.valid_from",
				body: `{"name":"USD list","currencyCode":"USD","entries":[{"sku":"CABLE-XL","unit":"M","unitPrice":"1"}]}`,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := c.priceLists(t)
				r := c.do(t, "POST", "/v1/priceLists", tt.key, tt.body)
				if tt.wantCode == 200 {
					got := &productpricingv1.PriceList{}
					r.ok(t, got)
					var stored productpricingv1.PriceList
					c.do(t, "GET", "/v1/priceLists/"+got.GetId(), keys.crm, "").ok(t, &stored)
					if !proto.Equal(&stored, got) {
						t.Fatalf("stored %v, answered %v", &stored, got)
					}
					*tt.into = got
					return
				}
				e := r.fails(t, tt.wantCode, tt.wantReason)
				if tt.wantField != "" {
					e.wantField(t, tt.wantField)
				}
				if tt.check != nil {
					tt.check(t, e)
				}
				if after := c.priceLists(t); len(after) != len(before) {
					t.Fatalf("%d price lists after a refused create, want %d", len(after), len(before))
				}
			})
		}
	})
	if global == nil || euList == nil || old == nil {
		t.Fatal("the price lists the simulation needs were not created")
	}

	gold := &customerv1.Customer{}
	c.do(t, "POST", "/v1/customers", keys.crm, `{"displayName":"Boulangerie Dupont","region":"eu","tier":"gold","currencyCode":"EUR"}`).ok(t, gold)
	na := &customerv1.Customer{}
	c.do(t, "POST", "/v1/customers", keys.crm, `{"displayName":"Prairie Mills","region":"na","currencyCode":"USD"}`).ok(t, na)

	t.Run("simulate", func(t *testing.T) {
		type line struct {
			status    string
			reason    string
			scope     string
			listID    string
			priced    string // priced quantity, "120 EA"
			breakMin  string
			unitPrice string
			total     string
		}
		const priced = "LINE_PRICE_STATUS_PRICED"
		tests := []struct {
			name      string
			key       string
			customer  string
			priceTime string
			lines     string
			want      []line
			wantTotal string
		}{
			{
				name: "a basket with breaks, conversions, half-even rounding and lines without a price", key: keys.crm, customer: gold.GetId(), priceTime: "2026-06-01T00:00:00Z",
				lines: `[{"sku":"VALVE-100","quantity":{"value":"5","unit":"EA"}},
					{"sku":"VALVE-100","quantity":{"value":"10","unit":"CASE"}},
					{"sku":"VALVE-100","quantity":{"value":"2","unit":"PALLET"}},
					{"sku":"CABLE-XL","quantity":{"value":"1","unit":"M"}},
					{"sku":"CABLE-XL","quantity":{"value":"3","unit":"M"}},
					{"sku":"CABLE-XL","quantity":{"value":"0.5","unit":"KM"}},
					{"sku":"FLOUR-T55","quantity":{"value":"50","unit":"LB"}},
					{"sku":"GASKET-7","quantity":{"value":"1","unit":"EA"}},
					{"sku":"OLD-PUMP","quantity":{"value":"1","unit":"EA"}},
					{"sku":"NOPE-1","quantity":{"value":"1","unit":"EA"}},
					{"sku":"VALVE-100","quantity":{"value":"2.5","unit":"EA"}}]`,
				want: []line{
					{status: priced, scope: "GLOBAL", listID: global.GetId(), priced: "5 EA", unitPrice: "10.00", total: "50.00"},
					{status: priced, scope: "GLOBAL", listID: global.GetId(), priced: "120 EA", breakMin: "100", unitPrice: "9.50", total: "1140.00"},
					{status: priced, scope: "GLOBAL", listID: global.GetId(), priced: "960 EA", breakMin: "500", unitPrice: "9.00", total: "8640.00"},
					{status: priced, scope: "GLOBAL", listID: global.GetId(), priced: "1 M", unitPrice: "0.125", total: "0.12"},    // 0.125 → 0.12, not 0.13
					{status: priced, scope: "GLOBAL", listID: global.GetId(), priced: "3 M", unitPrice: "0.125", total: "0.38"},    // 0.375 → 0.38
					{status: priced, scope: "GLOBAL", listID: global.GetId(), priced: "500 M", unitPrice: "0.125", total: "62.50"}, // exact
					{status: priced, scope: "REGION", listID: euList.GetId(), priced: "22.6796185 KG", unitPrice: "2.00", total: "45.36"},
					{status: "LINE_PRICE_STATUS_NO_PRICE", reason: "NO_PRICE"},
					{status: "LINE_PRICE_STATUS_DISCONTINUED", reason: "DISCONTINUED"},
					{status: "LINE_PRICE_STATUS_INVALID", reason: "UNKNOWN_PRODUCT"},
					{status: "LINE_PRICE_STATUS_INVALID", reason: "NOT_WHOLE_UNITS"},
				},
				wantTotal: "9938.36",
			},
			{
				name: "the list valid at the pricing date applies", key: keys.erp, customer: gold.GetId(), priceTime: "2025-12-31T23:59:59Z",
				lines: `[{"sku":"VALVE-100","quantity":{"value":"1","unit":"CASE"}},{"sku":"CABLE-XL","quantity":{"value":"1","unit":"M"}}]`,
				want: []line{
					{status: priced, scope: "GLOBAL", listID: old.GetId(), priced: "12 EA", unitPrice: "20.00", total: "240.00"},
					{status: "LINE_PRICE_STATUS_NO_PRICE", reason: "NO_PRICE"},
				},
				wantTotal: "240.00",
			},
			{
				name: "a region list does not price another region", key: keys.ops, customer: na.GetId(), priceTime: "2026-06-01T00:00:00Z",
				lines:     `[{"sku":"FLOUR-T55","quantity":{"value":"1","unit":"SACK"}}]`,
				want:      []line{{status: "LINE_PRICE_STATUS_NO_PRICE", reason: "NO_PRICE"}},
				wantTotal: "0.00",
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				body := fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","priceTime":%q,"lines":%s}`, tt.customer, tt.priceTime, tt.lines)
				var got productpricingv1.SimulatePricesResponse
				c.do(t, "POST", "/v1/prices:simulate", tt.key, body).ok(t, &got)
				if len(got.GetLines()) != len(tt.want) {
					t.Fatalf("%d lines, want %d", len(got.GetLines()), len(tt.want))
				}
				for i, want := range tt.want {
					l := got.GetLines()[i]
					g := line{
						status: l.GetStatus().String(), reason: l.GetReason(), scope: l.GetPriceListScope(), listID: l.GetPriceListId(),
						breakMin: l.GetAppliedBreakMinQuantity(), unitPrice: l.GetUnitPrice().GetAmount(), total: l.GetLineTotal().GetAmount(),
					}
					if l.GetPricedQuantity() != nil {
						g.priced = l.GetPricedQuantity().GetValue() + " " + l.GetPricedQuantity().GetUnit()
					}
					if want.status != priced {
						// An unpriced line explains itself and carries no
						// price, whatever list it may have been matched to.
						g.scope, g.listID = "", ""
					}
					if g != want || l.GetIndex() != int32(i) {
						t.Errorf("lines[%d] = %+v (index %d), want %+v", i, g, l.GetIndex(), want)
					}
				}
				if got.GetTotal().GetAmount() != tt.wantTotal || got.GetTotal().GetCurrencyCode() != "EUR" {
					t.Fatalf("total %v, want %s EUR", got.GetTotal(), tt.wantTotal)
				}
				if got.GetPriceTime().AsTime().Format("2006-01-02T15:04:05Z") != tt.priceTime {
					t.Fatalf("priced at %v, want %s", got.GetPriceTime().AsTime(), tt.priceTime)
				}
			})
		}

		refused := []struct {
			name       string
			key        string
			body       string
			wantCode   int
			wantReason string
			wantField  string
		}{
			{"unknown customer", keys.crm, `{"customerId":"cus_01JF3Z6Q4C8W8N3T9A0E2K5R7B","currencyCode":"EUR","lines":[{"sku":"VALVE-100","quantity":{"value":"1","unit":"EA"}}]}`,
				400, "UNKNOWN_CUSTOMER", "customer_id"},
			{"customer outside the key's region", keys.crmEU, fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","lines":[{"sku":"VALVE-100","quantity":{"value":"1","unit":"EA"}}]}`, na.GetId()),
				400, "UNKNOWN_CUSTOMER", "customer_id"},
			{"currency not ISO", keys.crm, fmt.Sprintf(`{"customerId":%q,"currencyCode":"EURO","lines":[{"sku":"VALVE-100","quantity":{"value":"1","unit":"EA"}}]}`, gold.GetId()),
				400, "INVALID_ARGUMENT", "currency_code"},
			{"no lines", keys.crm, fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","lines":[]}`, gold.GetId()),
				400, "INVALID_ARGUMENT", "lines"},
			{"negative quantity", keys.crm, fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","lines":[{"sku":"VALVE-100","quantity":{"value":"1","unit":"EA"}},{"sku":"VALVE-100","quantity":{"value":"-1","unit":"EA"}}]}`, gold.GetId()),
				400, "INVALID_ARGUMENT", "lines[1].quantity.value"},
			{"no key", "", fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","lines":[{"sku":"VALVE-100","quantity":{"value":"1","unit":"EA"}}]}`, gold.GetId()),
				401, "UNAUTHENTICATED", ""},
		}
		for _, tt := range refused {
			t.Run(tt.name, func(t *testing.T) {
				e := c.do(t, "POST", "/v1/prices:simulate", tt.key, tt.body).fails(t, tt.wantCode, tt.wantReason)
				if tt.wantField != "" {
					e.wantField(t, tt.wantField)
				}
			})
		}
	})

	t.Run("update product", func(t *testing.T) {
		// The JSON a CRM or ERP writes names fields in lowerCamelCase, in the
		// body and in updateMask alike.
		tests := []struct {
			name, mask, body string
			check            func(t *testing.T, p *productpricingv1.Product)
		}{
			{"proto names in the mask", "lead_time_days", `{"sku":"VALVE-100","name":"Ball valve DN100","baseUnit":"EA","leadTimeDays":21,"etag":"{{etag}}"}`,
				func(t *testing.T, p *productpricingv1.Product) {
					if p.GetLeadTimeDays() != 21 {
						t.Fatalf("lead time %d", p.GetLeadTimeDays())
					}
				}},
			{"JSON names in the mask", "leadTimeDays,name", `{"sku":"VALVE-100","name":"Ball valve DN100 PN16","baseUnit":"EA","leadTimeDays":28,"etag":"{{etag}}"}`,
				func(t *testing.T, p *productpricingv1.Product) {
					if p.GetLeadTimeDays() != 28 || p.GetName() != "Ball valve DN100 PN16" {
						t.Fatalf("lead time %d name %q", p.GetLeadTimeDays(), p.GetName())
					}
				}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := c.product(t, "VALVE-100")
				body := strings.ReplaceAll(tt.body, "{{etag}}", before.GetEtag())
				got := &productpricingv1.Product{}
				c.do(t, "PATCH", "/v1/products/VALVE-100?updateMask="+url.QueryEscape(tt.mask), keys.erp, body).ok(t, got)
				tt.check(t, got)
				if stored := c.product(t, "VALVE-100"); !proto.Equal(stored, got) || stored.GetEtag() == before.GetEtag() {
					t.Fatalf("stored %v, answered %v", stored, got)
				}
			})
		}
		t.Run("crm may not", func(t *testing.T) {
			before := c.product(t, "VALVE-100")
			c.do(t, "PATCH", "/v1/products/VALVE-100?updateMask=name", keys.crm, `{"sku":"VALVE-100","name":"Cheap valve","baseUnit":"EA"}`).fails(t, 403, "PERMISSION_DENIED")
			if after := c.product(t, "VALVE-100"); !proto.Equal(before, after) {
				t.Fatalf("changed: %v", after)
			}
		})
	})
}
