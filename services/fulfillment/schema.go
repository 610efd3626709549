package fulfillment

import (
	"time"

	"github.com/millrace/millrace/internal/storage"
)

// The fulfillment store, declared once. Sites are stored as the contract's
// Site message; every other record is a JSON document of this package
// (quantities and amounts as exact decimal strings), because it carries
// facts the contract does not show (a reservation line's demand date, the
// region of an invoice). store.go is the only writer, and every secondary
// index below changes in the same transaction as its record.
var (
	// bucketSites holds sites keyed by their operator-chosen id.
	bucketSites = []byte("sites")
	// bucketSitesByRegion indexes KeyStrings(region) → site id.
	bucketSitesByRegion = []byte("sites_by_region")

	// bucketBalances holds one balance per KeyStrings(site id, SKU): on
	// hand and hard-reserved in the product's base unit. Site first, so a
	// site's balances are one prefix of the primary key.
	bucketBalances = []byte("balances")
	// bucketBalancesBySKU indexes KeyStrings(SKU) → site id: the sites
	// holding a SKU, for availability and ListInventory by SKU.
	bucketBalancesBySKU = []byte("balances_by_sku")

	// bucketLedger holds the inventory ledger, one entry per movement,
	// keyed by entry id (creation order).
	bucketLedger = []byte("ledger")
	// bucketLedgerByItem indexes KeyStrings(site id, SKU) → entry id.
	bucketLedgerByItem = []byte("ledger_by_item")

	// bucketPlans holds planned production receipts keyed by id.
	bucketPlans = []byte("supply_plans")
	// Open plans (not yet received in full) are indexed four ways, each
	// ending in the due date so a list pages by due date:
	// (SKU, site, due) for availability, (SKU, due), (site, due), (due).
	bucketPlansByItem = []byte("supply_plans_open_by_item")
	bucketPlansBySKU  = []byte("supply_plans_open_by_sku")
	bucketPlansBySite = []byte("supply_plans_open_by_site")
	bucketPlansByDue  = []byte("supply_plans_open_by_due")

	// bucketHardDemand holds the hard-reserved quantity still to ship per
	// Key(site, SKU, need date): the date the stock is needed at the site,
	// zero for stock reserved from on hand. Reservations add to it and
	// shipments and releases take from it, so availability reads one short
	// prefix instead of every reservation.
	bucketHardDemand = []byte("demand_hard")
	// bucketSoftDemand holds soft-held quantity per Key(site, SKU, expiry,
	// need date). Expiry sorts before the need date so that the live holds
	// of an item are one seek past "now".
	bucketSoftDemand = []byte("demand_soft")

	// bucketReservations holds reservations keyed by id.
	bucketReservations = []byte("reservations")
	// bucketReservationsByRef is the unique index KeyStrings(reference id)
	// → reservation id that makes CreateReservation idempotent.
	bucketReservationsByRef = []byte("reservations_by_ref")
	// bucketSoftExpiry indexes active soft holds by Key(expiry) → id, the
	// queue Run works through.
	bucketSoftExpiry = []byte("reservations_soft_expiry")

	// bucketShipments holds shipments keyed by id.
	bucketShipments = []byte("shipments")
	// bucketShipmentsByOrder indexes KeyStrings(order id) → shipment id.
	bucketShipmentsByOrder = []byte("shipments_by_order")

	// bucketInvoices holds invoices keyed by id.
	bucketInvoices = []byte("invoices")
	// bucketInvoicesByOrder indexes KeyStrings(order id) → invoice id.
	bucketInvoicesByOrder = []byte("invoices_by_order")
	// bucketInvoicesByCustomer indexes KeyStrings(customer id) → invoice id.
	bucketInvoicesByCustomer = []byte("invoices_by_customer")
	// bucketPayments holds payments keyed by KeyStrings(invoice id, payment id).
	bucketPayments = []byte("payments")
	// bucketPaymentsByRef is the unique index KeyStrings(invoice id,
	// reference) → payment id: a bank reference is recorded once.
	bucketPaymentsByRef = []byte("payments_by_ref")

	// bucketOrderLines holds, per Key(order id, line index), what was
	// shipped and invoiced for an order line and what came back: the
	// facts returns and credit memos are checked and priced against.
	bucketOrderLines = []byte("order_lines")

	// bucketReturns holds returns (RMAs) keyed by id.
	bucketReturns = []byte("returns")
	// bucketReturnsByOrder indexes KeyStrings(order id) → return id.
	bucketReturnsByOrder = []byte("returns_by_order")
)

// Schema is the fulfillment store's layout at its current version.
var Schema = storage.Schema{
	Name:    "fulfillment",
	Version: 1,
	Buckets: [][]byte{
		bucketSites,
		bucketSitesByRegion,
		bucketBalances,
		bucketBalancesBySKU,
		bucketLedger,
		bucketLedgerByItem,
		bucketPlans,
		bucketPlansByItem,
		bucketPlansBySKU,
		bucketPlansBySite,
		bucketPlansByDue,
		bucketHardDemand,
		bucketSoftDemand,
		bucketReservations,
		bucketReservationsByRef,
		bucketSoftExpiry,
		bucketShipments,
		bucketShipmentsByOrder,
		bucketInvoices,
		bucketInvoicesByOrder,
		bucketInvoicesByCustomer,
		bucketPayments,
		bucketPaymentsByRef,
		bucketOrderLines,
		bucketReturns,
		bucketReturnsByOrder,
	},
	// Keyed by time-ordered ids (a reservation's reference is its order's),
	// the ledger's index by time-ordered ids within an item.
	Appended: [][]byte{
		bucketLedger,
		bucketLedgerByItem,
		bucketReservations,
		bucketReservationsByRef,
		bucketShipments,
		bucketInvoices,
		bucketReturns,
	},
}

// The secondary indexes over the buckets above.
var (
	ixSitesByRegion      = storage.Index{Bucket: bucketSitesByRegion}
	ixBalancesBySKU      = storage.Index{Bucket: bucketBalancesBySKU}
	ixLedgerByItem       = storage.Index{Bucket: bucketLedgerByItem}
	ixPlansByItem        = storage.Index{Bucket: bucketPlansByItem}
	ixPlansBySKU         = storage.Index{Bucket: bucketPlansBySKU}
	ixPlansBySite        = storage.Index{Bucket: bucketPlansBySite}
	ixPlansByDue         = storage.Index{Bucket: bucketPlansByDue}
	ixReservationsByRef  = storage.Index{Bucket: bucketReservationsByRef, Unique: true}
	ixSoftExpiry         = storage.Index{Bucket: bucketSoftExpiry}
	ixShipmentsByOrder   = storage.Index{Bucket: bucketShipmentsByOrder}
	ixInvoicesByOrder    = storage.Index{Bucket: bucketInvoicesByOrder}
	ixInvoicesByCustomer = storage.Index{Bucket: bucketInvoicesByCustomer}
	ixPaymentsByRef      = storage.Index{Bucket: bucketPaymentsByRef, Unique: true}
	ixReturnsByOrder     = storage.Index{Bucket: bucketReturnsByOrder}
)

// Keys. Times are Uint64Key of Unix nanoseconds, so key order is time order.

func itemKey(siteID, sku string) []byte { return storage.KeyStrings(siteID, sku) }

func timeKey(t time.Time) []byte {
	if t.IsZero() || t.UnixNano() < 0 {
		return storage.Uint64Key(0)
	}
	return storage.Uint64Key(uint64(t.UnixNano()))
}

func timeFromKey(b []byte) time.Time {
	if len(b) != 8 {
		return time.Time{}
	}
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n)).UTC()
}

func orderLineKey(orderID string, index int32) []byte {
	return storage.Key([]byte(orderID), storage.Uint64Key(uint64(index)))
}
