// Package demo loads a small, realistic data set into a running Millrace
// through its public API, the way an integration would: customers in two
// regions with a credit group, products with unit conversions, and price
// lists for two regions and currencies. Every loader is idempotent, so a
// restart with --demo changes nothing that is already there.
package demo

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
)

// Summary says what the demo data set holds.
type Summary struct {
	Customers []*customerv1.Customer
	SKUs      []string
}

// Load loads the demo data over conn with the given API key.
func Load(ctx context.Context, conn grpc.ClientConnInterface, apiKey string) (*Summary, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+apiKey, "x-correlation-id", "demo-load")
	customers, err := LoadCustomers(ctx, customerv1.NewCustomerServiceClient(conn))
	if err != nil {
		return nil, fmt.Errorf("demo customers: %w", err)
	}
	pp := productpricingv1.NewProductPricingServiceClient(conn)
	if err := LoadProductsAndPrices(ctx, pp, customers); err != nil {
		return nil, fmt.Errorf("demo products and prices: %w", err)
	}
	products, err := pp.ListProducts(ctx, &productpricingv1.ListProductsRequest{PageSize: 100})
	if err != nil {
		return nil, fmt.Errorf("demo products: %w", err)
	}
	skus := make([]string, 0, len(products.GetProducts()))
	var sellable []string // what quotes and orders may carry
	baseUnits := make(map[string]string, len(products.GetProducts()))
	for _, p := range products.GetProducts() {
		skus = append(skus, p.GetSku())
		baseUnits[p.GetSku()] = p.GetBaseUnit()
		if p.GetStatus() != productpricingv1.ProductStatus_PRODUCT_STATUS_DISCONTINUED {
			sellable = append(sellable, p.GetSku())
		}
	}
	if err := LoadFulfillment(ctx, fulfillmentv1.NewFulfillmentServiceClient(conn), skus, baseUnits); err != nil {
		return nil, fmt.Errorf("demo sites and inventory: %w", err)
	}
	if err := LoadOrders(ctx, orderv1.NewOrderServiceClient(conn), customers, sellable, baseUnits); err != nil {
		return nil, fmt.Errorf("demo quotes and orders: %w", err)
	}
	return &Summary{Customers: customers, SKUs: skus}, nil
}
