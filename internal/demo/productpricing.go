package demo

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

// priceValidFrom is when every demo price list starts: a fixed date in the
// past, so the lists are valid now and a re-run builds the very same lists.
var priceValidFrom = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func unitConv(unit, factor, per string, indivisible bool) *productpricingv1.UnitConversion {
	return &productpricingv1.UnitConversion{Unit: unit, Factor: factor, PerUnit: per, Indivisible: indivisible}
}

// Conversions shared by the demo products. A pound is exactly 0.45359237 kg.
var (
	poundInKG = unitConv("LB", "0.45359237", "KG", false)
	bagOf25KG = unitConv("BAG", "25", "KG", true)
)

func productRefs(material, crmID string) []*typev1.ExternalRef {
	return []*typev1.ExternalRef{{System: "sap", Id: material}, {System: "salesforce", Id: crmID}}
}

// demoProducts is the demo catalogue: valves and fittings counted in
// indivisible eaches and packed in boxes, cases and pallets; pumps; and
// resins sold by weight, in kilograms, pounds and 25 kg bags. The last
// product is discontinued, so a basket shows a line that cannot be priced.
func demoProducts() []*productpricingv1.Product {
	const active, discontinued = productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE, productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED
	return []*productpricingv1.Product{
		{
			Sku: "VALVE-BV25", Name: "Ball valve DN25 PN40, stainless steel",
			Description: "Full-bore two-piece ball valve, 1.4408, threaded Rp 1\", PTFE seats.",
			BaseUnit:    "EA", BaseUnitIndivisible: true,
			Conversions:      []*productpricingv1.UnitConversion{unitConv("CASE", "12", "EA", true), unitConv("PALLET", "40", "CASE", true)},
			Status:           active,
			ProducingSiteIds: []string{"plant-lyon", "plant-ohio"}, LeadTimeDays: 10,
			ExternalRefs: productRefs("MAT-100234", "01t5g00000BV25AAA"),
		},
		{
			Sku: "VALVE-GV50", Name: "Gate valve DN50 PN16, ductile iron",
			Description: "Resilient-seated gate valve, flanged EN 1092-2, epoxy coated.",
			BaseUnit:    "EA", BaseUnitIndivisible: true,
			Conversions:      []*productpricingv1.UnitConversion{unitConv("CASE", "4", "EA", true), unitConv("PALLET", "30", "CASE", true)},
			Status:           active,
			ProducingSiteIds: []string{"plant-lyon"}, LeadTimeDays: 15,
			ExternalRefs: productRefs("MAT-100310", "01t5g00000GV50AAA"),
		},
		{
			Sku: "PUMP-CP200", Name: "Centrifugal pump 2.2 kW",
			Description: "End-suction centrifugal pump, 2.2 kW IE3 motor, 32 m³/h at 20 m.",
			BaseUnit:    "EA", BaseUnitIndivisible: true,
			Conversions:      []*productpricingv1.UnitConversion{unitConv("PALLET", "4", "EA", true)},
			Status:           active,
			ProducingSiteIds: []string{"plant-ohio"}, LeadTimeDays: 21,
			ExternalRefs: productRefs("MAT-200115", "01t5g00000CP200AA"),
		},
		{
			Sku: "PUMP-DP40", Name: "Diaphragm dosing pump 40 l/h",
			Description: "Solenoid diaphragm dosing pump, PVDF head, 40 l/h at 7 bar.",
			BaseUnit:    "EA", BaseUnitIndivisible: true,
			Status:           active,
			ProducingSiteIds: []string{"plant-ohio"}, LeadTimeDays: 28,
			ExternalRefs: productRefs("MAT-200140", "01t5g00000DP40AAA"),
		},
		{
			Sku: "FIT-ELB25", Name: "Elbow 90° 1\", stainless steel",
			Description: "Butt-weld elbow 90°, 1\" sch. 10S, 316L.",
			BaseUnit:    "EA", BaseUnitIndivisible: true,
			Conversions: []*productpricingv1.UnitConversion{
				unitConv("BOX", "25", "EA", true), unitConv("CASE", "10", "BOX", true), unitConv("PALLET", "48", "CASE", true),
			},
			Status:           active,
			ProducingSiteIds: []string{"plant-lyon"}, LeadTimeDays: 5,
			ExternalRefs: productRefs("MAT-300021", "01t5g00000ELB25AA"),
		},
		{
			Sku: "FIT-TEE25", Name: "Equal tee 1\", stainless steel",
			Description: "Butt-weld equal tee, 1\" sch. 10S, 316L.",
			BaseUnit:    "EA", BaseUnitIndivisible: true,
			Conversions:      []*productpricingv1.UnitConversion{unitConv("BOX", "20", "EA", true), unitConv("CASE", "8", "BOX", true)},
			Status:           active,
			ProducingSiteIds: []string{"plant-lyon"}, LeadTimeDays: 5,
			ExternalRefs: productRefs("MAT-300045", "01t5g00000TEE25AA"),
		},
		{
			Sku: "RESIN-PP-H", Name: "Polypropylene homopolymer resin, MFI 12",
			Description: "Injection-moulding grade PP homopolymer pellets, natural.",
			BaseUnit:    "KG",
			Conversions: []*productpricingv1.UnitConversion{poundInKG, bagOf25KG,
				unitConv("OCTABIN", "1000", "KG", true)},
			Status:           active,
			ProducingSiteIds: []string{"plant-lyon", "plant-ohio"}, LeadTimeDays: 7,
			ExternalRefs: productRefs("MAT-400012", "01t5g00000PPHAAA1"),
		},
		{
			Sku: "RESIN-HDPE", Name: "HDPE blow-moulding resin",
			Description:      "High-density polyethylene pellets for blow moulding, density 0.954.",
			BaseUnit:         "KG",
			Conversions:      []*productpricingv1.UnitConversion{poundInKG, bagOf25KG},
			Status:           active,
			ProducingSiteIds: []string{"plant-ohio"}, LeadTimeDays: 7,
			ExternalRefs: productRefs("MAT-400031", "01t5g00000HDPEAA2"),
		},
		{
			Sku: "VALVE-BV25-G1", Name: "Ball valve DN25 PN40, first generation",
			Description: "Superseded by VALVE-BV25.",
			BaseUnit:    "EA", BaseUnitIndivisible: true,
			Conversions:  []*productpricingv1.UnitConversion{unitConv("CASE", "12", "EA", true)},
			Status:       discontinued,
			ExternalRefs: productRefs("MAT-100101", "01t5g00000BV25G1A"),
		},
	}
}

// ProductSKUs returns the SKUs of the demo products, the sellable ones
// first, for loaders that stock them.
func ProductSKUs() []string {
	var out []string
	for _, p := range demoProducts() {
		if p.GetStatus() == productpricingv1.ProductStatus_PRODUCT_STATUS_ACTIVE {
			out = append(out, p.GetSku())
		}
	}
	return out
}

// priceEntry is an entry: a SKU priced per unit, with optional quantity breaks
// given as minimum quantity and unit price pairs.
func priceEntry(sku, unit, unitPrice string, breaks ...string) *productpricingv1.PriceEntry {
	e := &productpricingv1.PriceEntry{Sku: sku, Unit: unit, UnitPrice: unitPrice}
	for i := 0; i+1 < len(breaks); i += 2 {
		e.Breaks = append(e.Breaks, &productpricingv1.QuantityBreak{MinQuantity: breaks[i], UnitPrice: breaks[i+1]})
	}
	return e
}

// demoPriceLists are the demo lists. Resolution for a customer picks, per
// SKU, its own list over its tier in its region, over its region, over the
// global list, so:
//   - "Global list prices" (USD, every region) prices everything sold, the
//     fallback for a customer of any region buying in dollars;
//   - "Europe 2025" (EUR, eu) and "North America 2025" (USD, na) are the
//     regional lists, with quantity breaks; fittings sell by the box, resin
//     by the kilogram, so an order in pounds or bags converts exactly;
//   - "Europe gold 2025" (EUR, eu, gold) discounts valves and pumps for gold
//     accounts;
//   - the contract list of one customer (added by contractPriceList) beats
//     them all for the SKUs it carries.
func demoPriceLists() []*productpricingv1.PriceList {
	from := timestamppb.New(priceValidFrom)
	return []*productpricingv1.PriceList{
		{
			Name: "Global list prices", CurrencyCode: "USD", ValidFrom: from,
			Entries: []*productpricingv1.PriceEntry{
				priceEntry("VALVE-BV25", "EA", "54.00"),
				priceEntry("VALVE-GV50", "EA", "189.00"),
				priceEntry("PUMP-CP200", "EA", "1480.00"),
				priceEntry("PUMP-DP40", "EA", "865.00"),
				priceEntry("FIT-ELB25", "BOX", "118.75"),
				priceEntry("FIT-TEE25", "BOX", "142.00"),
				priceEntry("RESIN-PP-H", "KG", "2.15"),
				priceEntry("RESIN-HDPE", "KG", "2.05"),
			},
		},
		{
			Name: "Europe 2025", CurrencyCode: "EUR", Region: "eu", ValidFrom: from, Priority: 10,
			Entries: []*productpricingv1.PriceEntry{
				priceEntry("VALVE-BV25", "EA", "48.50", "24", "46.20", "120", "43.90"),
				priceEntry("VALVE-GV50", "EA", "172.00", "8", "165.00"),
				priceEntry("PUMP-CP200", "EA", "1345.00", "4", "1290.00"),
				priceEntry("PUMP-DP40", "EA", "789.00"),
				priceEntry("FIT-ELB25", "BOX", "104.50", "10", "98.00"),
				priceEntry("FIT-TEE25", "BOX", "126.00", "8", "119.50"),
				priceEntry("RESIN-PP-H", "KG", "1.865", "1000", "1.74", "5000", "1.655"),
				priceEntry("RESIN-HDPE", "KG", "1.79", "1000", "1.68"),
			},
		},
		{
			Name: "North America 2025", CurrencyCode: "USD", Region: "na", ValidFrom: from, Priority: 10,
			Entries: []*productpricingv1.PriceEntry{
				priceEntry("VALVE-BV25", "EA", "52.90", "24", "50.40", "120", "47.80"),
				priceEntry("VALVE-GV50", "EA", "184.00", "8", "176.00"),
				priceEntry("PUMP-CP200", "EA", "1425.00", "4", "1369.00"),
				priceEntry("PUMP-DP40", "EA", "839.00"),
				priceEntry("FIT-ELB25", "BOX", "112.00", "10", "105.00"),
				priceEntry("FIT-TEE25", "BOX", "136.00"),
				priceEntry("RESIN-PP-H", "KG", "2.02", "1000", "1.89"),
				priceEntry("RESIN-HDPE", "KG", "1.94", "1000", "1.82"),
			},
		},
		{
			Name: "Europe gold 2025", CurrencyCode: "EUR", Region: "eu", CustomerTier: "gold", ValidFrom: from, Priority: 10,
			Entries: []*productpricingv1.PriceEntry{
				priceEntry("VALVE-BV25", "EA", "45.10", "24", "43.00", "120", "40.80"),
				priceEntry("VALVE-GV50", "EA", "160.00", "8", "153.50"),
				priceEntry("PUMP-CP200", "EA", "1250.00", "4", "1199.00"),
				priceEntry("PUMP-DP40", "EA", "735.00"),
			},
		},
	}
}

// contractPriceList is the negotiated list of one customer: the first gold
// account of the demo set (else the first account), in its region's
// currency: resin with a break at 5 tonnes, and valves by the case.
func contractPriceList(customers []*customerv1.Customer) *productpricingv1.PriceList {
	var chosen *customerv1.Customer
	for _, c := range customers {
		if c.GetTier() == "gold" {
			chosen = c
			break
		}
	}
	if chosen == nil && len(customers) > 0 {
		chosen = customers[0]
	}
	if chosen == nil || chosen.GetId() == "" {
		return nil
	}
	currency := "EUR"
	if chosen.GetRegion() != "eu" {
		currency = "USD"
	}
	return &productpricingv1.PriceList{
		Name:         "Contract " + chosen.GetDisplayName() + " 2025",
		CurrencyCode: currency, CustomerId: chosen.GetId(), Region: chosen.GetRegion(),
		ValidFrom: timestamppb.New(priceValidFrom), Priority: 10,
		Entries: []*productpricingv1.PriceEntry{
			priceEntry("RESIN-PP-H", "KG", "1.69", "5000", "1.61"),
			priceEntry("VALVE-BV25", "CASE", "498.00"),
		},
	}
}

// LoadProductsAndPrices loads the demo catalogue and price lists. Products
// are upserted by their ERP material number, so a re-run changes nothing; a
// price list that already exists is refused by the service as overlapping
// one of equal scope and priority (ALREADY_EXISTS) and skipped, so lists are
// not added twice either. customers are the demo accounts (LoadCustomers);
// the first gold one gets a contract list.
func LoadProductsAndPrices(ctx context.Context, c productpricingv1.ProductPricingServiceClient, customers []*customerv1.Customer) error {
	for _, p := range demoProducts() {
		_, err := c.UpsertProductByExternalRef(ctx, &productpricingv1.UpsertProductByExternalRefRequest{
			ExternalRef: p.GetExternalRefs()[0],
			Product:     p,
		})
		if err != nil && status.Code(err) != codes.AlreadyExists {
			return fmt.Errorf("upsert demo product %s: %w", p.GetSku(), err)
		}
	}
	lists := demoPriceLists()
	if pl := contractPriceList(customers); pl != nil {
		lists = append(lists, pl)
	}
	for _, pl := range lists {
		_, err := c.CreatePriceList(ctx, &productpricingv1.CreatePriceListRequest{PriceList: pl})
		if err != nil && status.Code(err) != codes.AlreadyExists {
			return fmt.Errorf("create demo price list %q: %w", pl.GetName(), err)
		}
	}
	return nil
}
