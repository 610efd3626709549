package app

import (
	"context"
	"time"

	"google.golang.org/grpc"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/storage"
	"github.com/millrace/millrace/services/customer"
	"github.com/millrace/millrace/services/fulfillment"
	"github.com/millrace/millrace/services/order"
	"github.com/millrace/millrace/services/productpricing"
)

// runner is a service's background work (expiring holds, resuming sagas,
// consuming events); it returns when ctx ends.
type runner func(ctx context.Context) error

func allDomains() []domain {
	return []domain{
		{name: "customer", schema: customer.Schema, register: func(s grpc.ServiceRegistrar, db *storage.DB, w *wiring) (runner, error) {
			customerv1.RegisterCustomerServiceServer(s, customer.NewServer(db, customer.Options{Notify: w.notify}))
			return nil, nil
		}},
		{name: "productpricing", schema: productpricing.Schema, register: func(s grpc.ServiceRegistrar, db *storage.DB, w *wiring) (runner, error) {
			productpricingv1.RegisterProductPricingServiceServer(s, productpricing.NewServer(db, productpricing.Options{
				Notify: w.notify,
				// A customer's region and tier change rarely; pricing reads
				// them for every basket, so they are cached for 30 s.
				Customers: productpricing.NewCachedDirectory(productpricing.NewCustomerClient(w.peer("customer")), 30*time.Second, 0, nil),
			}))
			return nil, nil
		}},
		{name: "fulfillment", schema: fulfillment.Schema, register: func(s grpc.ServiceRegistrar, db *storage.DB, w *wiring) (runner, error) {
			srv := fulfillment.NewServer(db, fulfillment.Options{
				Notify:   w.notify,
				Products: fulfillment.NewProductClient(w.peer("productpricing")),
				Orders:   fulfillment.NewOrderClient(w.peer("order")),
			})
			fulfillmentv1.RegisterFulfillmentServiceServer(s, srv)
			return srv.Run, nil
		}},
		{name: "order", schema: order.Schema, register: func(s grpc.ServiceRegistrar, db *storage.DB, w *wiring) (runner, error) {
			srv := order.NewServer(db, order.Options{
				Notify:    w.notify,
				Pricing:   order.NewPricingClient(w.peer("productpricing")),
				Inventory: order.NewInventoryClient(w.peer("fulfillment")),
				Credit:    order.NewCreditClient(w.peer("customer")),
				Bus:       w.bus,
				Failpoint: w.failpoint,
				Metrics:   w.metrics,
			})
			orderv1.RegisterOrderServiceServer(s, srv)
			w.subscribe(srv.Subscribe)
			return srv.Run, nil
		}},
	}
}
