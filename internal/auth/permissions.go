package auth

import (
	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
)

// Permission is what a method requires. Admin keys hold every permission
// except the mesh-only ones; Public methods need no key at all.
type Permission struct {
	// Name is the permission's stable name, for example "customers.write".
	Name string
	// Roles may call the method; admin is implied unless ServiceOnly.
	Roles []Role
	// Public methods (health, reflection) are callable without a key.
	Public bool
}

// Allows reports whether role r holds the permission.
func (p Permission) Allows(r Role) bool {
	if p.Public {
		return true
	}
	if r == RoleAdmin && !p.serviceOnly() {
		return true
	}
	for _, allowed := range p.Roles {
		if allowed == r {
			return true
		}
	}
	return false
}

func (p Permission) serviceOnly() bool { return len(p.Roles) == 1 && p.Roles[0] == RoleService }

var (
	crm = RoleCRM
	erp = RoleERP
	ops = RoleOps
	svc = RoleService
)

func perm(name string, roles ...Role) Permission { return Permission{Name: name, Roles: roles} }

// Permissions is the one place every RPC's permission is declared. A test
// walks every method registered on the server and fails when one is
// missing here; the interceptor refuses a method it cannot find.
var Permissions = map[string]Permission{
	// Health and reflection: probes and grpcurl work without a key.
	"/grpc.health.v1.Health/Check":                                   {Name: "health", Public: true},
	"/grpc.health.v1.Health/List":                                    {Name: "health", Public: true},
	"/grpc.health.v1.Health/Watch":                                   {Name: "health", Public: true},
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {Name: "reflection", Public: true},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {Name: "reflection", Public: true},

	customerv1.CustomerService_CreateCustomer_FullMethodName:              perm("customers.write", crm, erp),
	customerv1.CustomerService_GetCustomer_FullMethodName:                 perm("customers.read", crm, erp, ops, svc),
	customerv1.CustomerService_ListCustomers_FullMethodName:               perm("customers.read", crm, erp, ops),
	customerv1.CustomerService_UpdateCustomer_FullMethodName:              perm("customers.write", crm, erp),
	customerv1.CustomerService_UpsertCustomerByExternalRef_FullMethodName: perm("customers.write", crm, erp),
	customerv1.CustomerService_BatchUpsertCustomers_FullMethodName:        perm("customers.write", crm, erp),
	customerv1.CustomerService_GetCustomerHierarchy_FullMethodName:        perm("customers.read", crm, erp, ops),
	customerv1.CustomerService_BlockCustomer_FullMethodName:               perm("customers.block", erp),
	customerv1.CustomerService_UnblockCustomer_FullMethodName:             perm("customers.block", erp),
	customerv1.CustomerService_CheckCredit_FullMethodName:                 perm("credit.check", crm, erp, ops, svc),
	customerv1.CustomerService_ReserveCredit_FullMethodName:               perm("credit.reserve", erp, svc),
	customerv1.CustomerService_ReleaseCredit_FullMethodName:               perm("credit.reserve", erp, svc),

	productpricingv1.ProductPricingService_CreateProduct_FullMethodName:              perm("products.write", erp),
	productpricingv1.ProductPricingService_GetProduct_FullMethodName:                 perm("products.read", crm, erp, ops, svc),
	productpricingv1.ProductPricingService_ListProducts_FullMethodName:               perm("products.read", crm, erp, ops, svc),
	productpricingv1.ProductPricingService_UpdateProduct_FullMethodName:              perm("products.write", erp),
	productpricingv1.ProductPricingService_UpsertProductByExternalRef_FullMethodName: perm("products.write", erp),
	productpricingv1.ProductPricingService_ConvertQuantity_FullMethodName:            perm("products.read", crm, erp, ops, svc),
	productpricingv1.ProductPricingService_CreatePriceList_FullMethodName:            perm("prices.write", erp),
	productpricingv1.ProductPricingService_GetPriceList_FullMethodName:               perm("prices.read", crm, erp, ops),
	productpricingv1.ProductPricingService_ListPriceLists_FullMethodName:             perm("prices.read", crm, erp, ops),
	productpricingv1.ProductPricingService_UpdatePriceList_FullMethodName:            perm("prices.write", erp),
	productpricingv1.ProductPricingService_DeletePriceList_FullMethodName:            perm("prices.write", erp),
	productpricingv1.ProductPricingService_SimulatePrices_FullMethodName:             perm("prices.simulate", crm, erp, ops, svc),

	fulfillmentv1.FulfillmentService_CreateSite_FullMethodName:         perm("sites.write", erp),
	fulfillmentv1.FulfillmentService_GetSite_FullMethodName:            perm("sites.read", crm, erp, ops, svc),
	fulfillmentv1.FulfillmentService_ListSites_FullMethodName:          perm("sites.read", crm, erp, ops, svc),
	fulfillmentv1.FulfillmentService_AdjustInventory_FullMethodName:    perm("inventory.write", erp),
	fulfillmentv1.FulfillmentService_ListInventory_FullMethodName:      perm("inventory.read", crm, erp, ops),
	fulfillmentv1.FulfillmentService_CreateSupplyPlan_FullMethodName:   perm("inventory.write", erp),
	fulfillmentv1.FulfillmentService_ListSupplyPlans_FullMethodName:    perm("inventory.read", crm, erp, ops),
	fulfillmentv1.FulfillmentService_CheckAvailability_FullMethodName:  perm("availability.check", crm, erp, ops, svc),
	fulfillmentv1.FulfillmentService_CreateReservation_FullMethodName:  perm("reservations.write", erp, svc),
	fulfillmentv1.FulfillmentService_ReleaseReservation_FullMethodName: perm("reservations.write", erp, ops, svc),
	fulfillmentv1.FulfillmentService_CreateShipment_FullMethodName:     perm("shipments.write", erp),
	fulfillmentv1.FulfillmentService_GetShipment_FullMethodName:        perm("shipments.read", crm, erp, ops, svc),
	fulfillmentv1.FulfillmentService_ListShipments_FullMethodName:      perm("shipments.read", crm, erp, ops, svc),
	fulfillmentv1.FulfillmentService_ConfirmShipment_FullMethodName:    perm("shipments.write", erp),
	fulfillmentv1.FulfillmentService_GetInvoice_FullMethodName:         perm("invoices.read", crm, erp, ops, svc),
	fulfillmentv1.FulfillmentService_ListInvoices_FullMethodName:       perm("invoices.read", crm, erp, ops, svc),
	fulfillmentv1.FulfillmentService_RecordPayment_FullMethodName:      perm("invoices.write", erp),
	fulfillmentv1.FulfillmentService_CreateReturn_FullMethodName:       perm("returns.write", crm, erp),
	fulfillmentv1.FulfillmentService_GetReturn_FullMethodName:          perm("returns.read", crm, erp, ops),
	fulfillmentv1.FulfillmentService_ListReturns_FullMethodName:        perm("returns.read", crm, erp, ops),
	fulfillmentv1.FulfillmentService_ReceiveReturn_FullMethodName:      perm("returns.receive", erp),

	orderv1.OrderService_CreateQuote_FullMethodName:      perm("quotes.write", crm, erp),
	orderv1.OrderService_GetQuote_FullMethodName:         perm("quotes.read", crm, erp, ops),
	orderv1.OrderService_ListQuotes_FullMethodName:       perm("quotes.read", crm, erp, ops),
	orderv1.OrderService_SubmitQuote_FullMethodName:      perm("quotes.write", crm, erp),
	orderv1.OrderService_ApproveQuote_FullMethodName:     perm("quotes.approve", erp, ops),
	orderv1.OrderService_RejectQuote_FullMethodName:      perm("quotes.approve", erp, ops),
	orderv1.OrderService_ConvertQuote_FullMethodName:     perm("orders.write", crm, erp),
	orderv1.OrderService_CreateOrder_FullMethodName:      perm("orders.write", crm, erp),
	orderv1.OrderService_GetOrder_FullMethodName:         perm("orders.read", crm, erp, ops, svc),
	orderv1.OrderService_ListOrders_FullMethodName:       perm("orders.read", crm, erp, ops),
	orderv1.OrderService_CancelOrder_FullMethodName:      perm("orders.write", crm, erp, ops),
	orderv1.OrderService_ReleaseOrder_FullMethodName:     perm("orders.release", erp, ops),
	orderv1.OrderService_GetOrderTimeline_FullMethodName: perm("orders.read", crm, erp, ops),

	integrationv1.ApiKeyService_CreateApiKey_FullMethodName:      perm("apikeys.admin"),
	integrationv1.ApiKeyService_ListApiKeys_FullMethodName:       perm("apikeys.admin"),
	integrationv1.ApiKeyService_GetApiKey_FullMethodName:         perm("apikeys.admin"),
	integrationv1.ApiKeyService_RevokeApiKey_FullMethodName:      perm("apikeys.admin"),
	integrationv1.ApiKeyService_GetCallerIdentity_FullMethodName: perm("identity.read", crm, erp, ops, svc),
	integrationv1.ApiKeyService_VerifyApiKey_FullMethodName:      perm("apikeys.verify", svc),

	integrationv1.SubscriptionService_CreateSubscription_FullMethodName:       perm("subscriptions.write", crm, ops),
	integrationv1.SubscriptionService_GetSubscription_FullMethodName:          perm("subscriptions.read", crm, ops),
	integrationv1.SubscriptionService_ListSubscriptions_FullMethodName:        perm("subscriptions.read", crm, ops),
	integrationv1.SubscriptionService_UpdateSubscription_FullMethodName:       perm("subscriptions.write", crm, ops),
	integrationv1.SubscriptionService_DeleteSubscription_FullMethodName:       perm("subscriptions.write", crm, ops),
	integrationv1.SubscriptionService_RotateSubscriptionSecret_FullMethodName: perm("subscriptions.write", crm, ops),
	integrationv1.SubscriptionService_SendTestEvent_FullMethodName:            perm("subscriptions.write", crm, ops),
	integrationv1.SubscriptionService_ListDeliveries_FullMethodName:           perm("subscriptions.read", crm, ops),
	integrationv1.SubscriptionService_ReplaySubscription_FullMethodName:       perm("deliveries.replay", ops),
	integrationv1.SubscriptionService_ListDeadLetters_FullMethodName:          perm("deliveries.read", ops),
	integrationv1.SubscriptionService_ReplayDeadLetter_FullMethodName:         perm("deliveries.replay", ops),
	integrationv1.SubscriptionService_BatchReplayDeadLetters_FullMethodName:   perm("deliveries.replay", ops),

	integrationv1.EventService_ListEvents_FullMethodName:  perm("events.read", crm, erp, ops, svc),
	integrationv1.EventService_WatchEvents_FullMethodName: perm("events.read", crm, erp, ops, svc),

	integrationv1.OperationsService_Backup_FullMethodName: perm("operations.backup", ops),
}

// Lookup returns the permission of a full method name.
func Lookup(fullMethod string) (Permission, bool) {
	p, ok := Permissions[fullMethod]
	return p, ok
}
