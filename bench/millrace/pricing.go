package millrace

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/millrace/millrace/bench/ceilings"
	"github.com/millrace/millrace/bench/scenarios"
	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

// Pricing a 10-line basket: what every quote and order confirmation costs.
// Each call looks the customer up in the customer service (a second pass
// through the chain, in process), resolves every line against customer,
// tier-region, region and global lists, converts its quantity exactly and
// applies quantity breaks. The request is ~280 bytes and the answer ~1.1 KB
// in protobuf, more than the ceilings' 100 bytes: the ratio includes that.
func init() {
	scenarios.Register(scenarios.Scenario{
		Name: "simulate-10-lines-grpc", Ceiling: ceilings.GRPCEchoName, TargetPct: 50,
		Setup: func(ctx context.Context) (func(context.Context, int) error, func(), error) {
			n, req, err := startWithCatalog(ctx)
			if err != nil {
				return nil, nil, err
			}
			client := productpricingv1.NewProductPricingServiceClient(n.conn)
			op := func(ctx context.Context, _ int) error {
				_, err := client.SimulatePrices(authed(ctx), req)
				return err
			}
			return op, n.close, nil
		},
	})
	scenarios.Register(scenarios.Scenario{
		Name: "simulate-10-lines-rest", Ceiling: ceilings.HTTPJSONEchoName, TargetPct: 40,
		Setup: func(ctx context.Context) (func(context.Context, int) error, func(), error) {
			n, req, err := startWithCatalog(ctx)
			if err != nil {
				return nil, nil, err
			}
			body, err := protojson.Marshal(req)
			if err != nil {
				n.close()
				return nil, nil, err
			}
			op := func(ctx context.Context, _ int) error { return n.post(ctx, "/v1/prices:simulate", body) }
			return op, n.close, nil
		},
	})
}

// startWithCatalog starts a node with a small catalog (12 products, three
// price lists with quantity breaks, an eu gold customer) and returns the
// 10-line simulation to run, checked once to price every line.
func startWithCatalog(ctx context.Context) (*node, *productpricingv1.SimulatePricesRequest, error) {
	n, err := startNode(ctx, 64)
	if err != nil {
		return nil, nil, err
	}
	req, err := loadCatalog(ctx, n)
	if err != nil {
		n.close()
		return nil, nil, err
	}
	return n, req, nil
}

// benchProduct is a catalog product and the list price of its base unit.
type benchProduct struct {
	sku, base   string
	indivisible bool
	conversions []*productpricingv1.UnitConversion
	price       string
}

func conv(unit, factor, per string, indivisible bool) *productpricingv1.UnitConversion {
	return &productpricingv1.UnitConversion{Unit: unit, Factor: factor, PerUnit: per, Indivisible: indivisible}
}

var benchCatalog = func() []benchProduct {
	each := func(sku, price string) benchProduct {
		return benchProduct{sku: sku, base: "EA", indivisible: true, price: price,
			conversions: []*productpricingv1.UnitConversion{conv("CASE", "12", "EA", true), conv("PALLET", "40", "CASE", true)}}
	}
	metre := func(sku, price string) benchProduct {
		return benchProduct{sku: sku, base: "M", price: price,
			conversions: []*productpricingv1.UnitConversion{conv("ROLL", "50", "M", true), conv("KM", "1000", "M", false)}}
	}
	weight := func(sku, price string) benchProduct {
		return benchProduct{sku: sku, base: "KG", price: price,
			conversions: []*productpricingv1.UnitConversion{conv("LB", "0.45359237", "KG", false), conv("SACK", "25", "KG", true)}}
	}
	boxed := func(sku, price string) benchProduct {
		return benchProduct{sku: sku, base: "EA", indivisible: true, price: price,
			conversions: []*productpricingv1.UnitConversion{conv("BOX", "100", "EA", true)}}
	}
	return []benchProduct{
		each("VALVE-025", "18.40"), each("VALVE-050", "26.90"), each("VALVE-100", "54.10"),
		metre("CABLE-3G15", "0.87"), metre("CABLE-5G25", "2.315"),
		weight("FLOUR-T55", "0.62"), weight("SUGAR-FINE", "0.955"),
		boxed("GASKET-7", "0.12"), boxed("BOLT-M12", "0.085"), boxed("NUT-M12", "0.031"),
		{sku: "PAINT-RAL9010", base: "L", price: "7.45", conversions: []*productpricingv1.UnitConversion{conv("CAN", "5", "L", true)}},
		{sku: "PIPE-DN50", base: "M", price: "12.30", conversions: []*productpricingv1.UnitConversion{conv("LENGTH", "6", "M", true)}},
	}
}()

// loadCatalog creates the catalog, the lists and the customer through the
// API and returns the simulation the scenarios repeat.
func loadCatalog(ctx context.Context, n *node) (*productpricingv1.SimulatePricesRequest, error) {
	pp := productpricingv1.NewProductPricingServiceClient(n.conn)
	actx := authed(ctx)
	global := &productpricingv1.PriceList{Name: "EUR list", CurrencyCode: "EUR", ValidFrom: timestamppb.New(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))}
	region := &productpricingv1.PriceList{Name: "EU list", CurrencyCode: "EUR", Region: "eu", ValidFrom: global.ValidFrom}
	tier := &productpricingv1.PriceList{Name: "EU gold", CurrencyCode: "EUR", Region: "eu", CustomerTier: "gold", ValidFrom: global.ValidFrom}
	for i, p := range benchCatalog {
		_, err := pp.CreateProduct(actx, &productpricingv1.CreateProductRequest{Product: &productpricingv1.Product{
			Sku: p.sku, Name: "Product " + p.sku, BaseUnit: p.base, BaseUnitIndivisible: p.indivisible, Conversions: p.conversions,
		}})
		if err != nil {
			return nil, fmt.Errorf("create product %s: %w", p.sku, err)
		}
		global.Entries = append(global.Entries, &productpricingv1.PriceEntry{Sku: p.sku, Unit: p.base, UnitPrice: p.price, Breaks: []*productpricingv1.QuantityBreak{
			{MinQuantity: "100", UnitPrice: p.price + "0"}, // same price, one more digit: a break that changes nothing
			{MinQuantity: "1000", UnitPrice: "0.01"},
		}})
		switch {
		case i < 5: // valves and cables: the region's own prices, per pack
			unit := p.conversions[0].GetUnit()
			region.Entries = append(region.Entries, &productpricingv1.PriceEntry{Sku: p.sku, Unit: unit, UnitPrice: "95.50", Breaks: []*productpricingv1.QuantityBreak{
				{MinQuantity: "5", UnitPrice: "91.25"}, {MinQuantity: "20", UnitPrice: "88.00"},
			}})
		case i < 7: // flour and sugar: gold customers buy by the sack
			tier.Entries = append(tier.Entries, &productpricingv1.PriceEntry{Sku: p.sku, Unit: "SACK", UnitPrice: "14.90", Breaks: []*productpricingv1.QuantityBreak{
				{MinQuantity: "10", UnitPrice: "14.10"}, {MinQuantity: "40", UnitPrice: "13.35"},
			}})
		}
	}
	for _, pl := range []*productpricingv1.PriceList{global, region, tier} {
		if _, err := pp.CreatePriceList(actx, &productpricingv1.CreatePriceListRequest{PriceList: pl}); err != nil {
			return nil, fmt.Errorf("create price list %s: %w", pl.GetName(), err)
		}
	}
	cu, err := customerv1.NewCustomerServiceClient(n.conn).CreateCustomer(actx, &customerv1.CreateCustomerRequest{Customer: &customerv1.Customer{
		DisplayName: "Nordwerk Maschinenbau GmbH", Region: "eu", Tier: "gold", CurrencyCode: "EUR",
	}})
	if err != nil {
		return nil, fmt.Errorf("create customer: %w", err)
	}
	line := func(sku, value, unit string) *productpricingv1.SimulationLine {
		return &productpricingv1.SimulationLine{Sku: sku, Quantity: &typev1.Quantity{Value: value, Unit: unit}}
	}
	req := &productpricingv1.SimulatePricesRequest{CustomerId: cu.GetCustomer().GetId(), CurrencyCode: "EUR", Lines: []*productpricingv1.SimulationLine{
		line("VALVE-025", "36", "EA"),     // 3 CASE in the region list
		line("VALVE-050", "6", "CASE"),    // region break 5
		line("VALVE-100", "1", "PALLET"),  // 40 CASE: region break 20
		line("CABLE-3G15", "3", "ROLL"),   // region list, per roll
		line("CABLE-5G25", "0.5", "KM"),   // 10 ROLL
		line("FLOUR-T55", "250", "KG"),    // 10 SACK: tier break 10
		line("SUGAR-FINE", "40", "SACK"),  // tier break 40
		line("GASKET-7", "5", "BOX"),      // 500 EA: global break 100
		line("BOLT-M12", "250", "EA"),     // global break 100
		line("PIPE-DN50", "10", "LENGTH"), // 60 M, global list
	}}
	resp, err := pp.SimulatePrices(actx, req)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	for _, l := range resp.GetLines() {
		if l.GetStatus() != productpricingv1.LinePriceStatus_LINE_PRICE_STATUS_PRICED {
			return nil, fmt.Errorf("simulation line %d (%s) is %v %s, want priced", l.GetIndex(), l.GetSku(), l.GetStatus(), l.GetReason())
		}
	}
	return req, nil
}
