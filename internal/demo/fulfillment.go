package demo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

// demoSite is a demo site with the stock it receives for each demo SKU and
// the production it plans, in the SKU's base unit.
type demoSite struct {
	site     *fulfillmentv1.Site
	stock    []string // quantity per SKU, by position; the last repeats
	planned  string   // planned receipt per SKU; empty for none
	planDays int      // days from now the planned receipt is due
}

// demoSites are two plants and a warehouse in two regions. Lyon ships
// across Europe in a day; Rotterdam is the EU distribution warehouse; Ohio
// serves North America. Each names its transit time to the other region,
// so a promise for a short line shows the transatlantic alternative.
func demoSites() []demoSite {
	tt := func(region string, days int32) *fulfillmentv1.TransitTime {
		return &fulfillmentv1.TransitTime{Region: region, Days: days}
	}
	return []demoSite{
		{
			site: &fulfillmentv1.Site{Id: "plant-lyon", Name: "Lyon plant", Kind: fulfillmentv1.SiteKind_SITE_KIND_PLANT, Region: "eu",
				Address:      &typev1.Address{Lines: []string{"12 rue de l'Industrie"}, City: "Lyon", PostalCode: "69007", CountryCode: "FR"},
				TransitTimes: []*fulfillmentv1.TransitTime{tt("eu", 1), tt("na", 9)}},
			stock: []string{"960", "720", "480", "240"}, planned: "480", planDays: 14,
		},
		{
			site: &fulfillmentv1.Site{Id: "wh-rotterdam", Name: "Rotterdam distribution centre", Kind: fulfillmentv1.SiteKind_SITE_KIND_WAREHOUSE, Region: "eu",
				Address:      &typev1.Address{Lines: []string{"Waalhaven 210"}, City: "Rotterdam", PostalCode: "3089", CountryCode: "NL"},
				TransitTimes: []*fulfillmentv1.TransitTime{tt("eu", 2), tt("na", 8)}},
			stock: []string{"480", "240", "120"},
		},
		{
			site: &fulfillmentv1.Site{Id: "plant-ohio", Name: "Dayton plant", Kind: fulfillmentv1.SiteKind_SITE_KIND_PLANT, Region: "na",
				Address:      &typev1.Address{Lines: []string{"4400 Industrial Pkwy"}, City: "Dayton", State: "OH", PostalCode: "45414", CountryCode: "US"},
				TransitTimes: []*fulfillmentv1.TransitTime{tt("na", 2), tt("eu", 10)}},
			stock: []string{"600", "360", "240", "120"}, planned: "240", planDays: 21,
		},
	}
}

// LoadFulfillment creates the demo sites and receives stock for skus at
// each, with planned production at the two plants. It is idempotent: a
// site that exists is skipped with its stock and plans, so a restart with
// --demo changes nothing.
//
// Quantities are in each product's base unit, from baseUnits. For a SKU
// missing there the loader tries "EA" and, when the product counts in
// something else, uses the base unit the fulfillment service names in its
// UNKNOWN_UNIT error.
func LoadFulfillment(ctx context.Context, c fulfillmentv1.FulfillmentServiceClient, skus []string, baseUnits map[string]string) error {
	units := maps.Clone(baseUnits)
	if units == nil {
		units = map[string]string{}
	}
	for _, d := range demoSites() {
		_, err := c.CreateSite(ctx, &fulfillmentv1.CreateSiteRequest{Site: d.site})
		if status.Code(err) == codes.AlreadyExists {
			continue
		}
		if err != nil {
			return fmt.Errorf("create site %s: %w", d.site.GetId(), err)
		}
		for i, sku := range skus {
			qty := d.stock[min(i, len(d.stock)-1)]
			if err := receive(ctx, c, units, d.site.GetId(), sku, qty); err != nil {
				return err
			}
			if d.planned == "" || i > 1 {
				continue // plans for the first two SKUs only, as a plant would
			}
			_, err := c.CreateSupplyPlan(ctx, &fulfillmentv1.CreateSupplyPlanRequest{SupplyPlan: &fulfillmentv1.SupplyPlan{
				SiteId: d.site.GetId(), Sku: sku,
				Quantity: &typev1.Quantity{Value: d.planned, Unit: units[sku]},
				DueTime:  timestamppb.New(time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, d.planDays)),
			}})
			if err != nil {
				return fmt.Errorf("plan %s at %s: %w", sku, d.site.GetId(), err)
			}
		}
	}
	return nil
}

// receive posts a production receipt of qty base units of sku at a site,
// learning the SKU's base unit on first use.
func receive(ctx context.Context, c fulfillmentv1.FulfillmentServiceClient, units map[string]string, siteID, sku, qty string) error {
	unit, known := units[sku]
	if !known {
		unit = "EA"
	}
	req := &fulfillmentv1.AdjustInventoryRequest{
		SiteId: siteID, Sku: sku, Delta: qty, Unit: unit,
		Reason: fulfillmentv1.LedgerReason_LEDGER_REASON_PRODUCTION_RECEIPT, Note: "demo opening stock",
	}
	_, err := c.AdjustInventory(ctx, req)
	if base := baseUnitHint(err); !known && base != "" && base != unit {
		req.Unit = base
		_, err = c.AdjustInventory(ctx, req)
	}
	if err != nil {
		return fmt.Errorf("receive %s at %s: %w", sku, siteID, err)
	}
	units[sku] = req.GetUnit()
	return nil
}

// baseUnitHint returns the base unit an UNKNOWN_UNIT error names.
func baseUnitHint(err error) string {
	st, ok := status.FromError(err)
	if !ok || errors.Is(err, context.Canceled) {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == "UNKNOWN_UNIT" {
			return info.GetMetadata()["base_unit"]
		}
	}
	return ""
}
