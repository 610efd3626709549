// Package fulfillment is the fulfillment service: the system of record for
// sites (plants and warehouses), the inventory ledger and balances, planned
// production receipts, reservations, shipments, invoices and payments, and
// returns with their credit memos.
//
// The package has three layers. The domain files (core.go, units.go,
// atp.go, inventory.go, reservations.go, shipping.go, returns.go) hold the
// rules and know nothing of gRPC or bbolt: they run against the txn and
// repository interfaces of records.go. store.go implements those on a
// storage.DB, one bbolt transaction per operation, with index entries and
// outgoing events in the same transaction as the change; supplycache.go
// keeps the decoded supply of SKUs for read transactions, keyed by the
// committed state they see. server.go implements
// fulfillmentv1.FulfillmentServiceServer, maps domain errors in one
// function and runs the background expiry of soft holds; clients.go adapts
// productpricing and order to the ProductCatalog and OrderDirectory ports.
//
// Rules a reader of the contract may want to find quickly:
//   - Every stock quantity is kept in the product's base unit; requests may
//     use any unit the product defines and are converted exactly (a
//     non-whole result in an indivisible unit is refused, never rounded).
//   - On hand never goes negative, at any site, for any reason.
//   - Availability is time-phased: a site's supply is its on hand plus open
//     planned receipts on their due dates, its demand is every active hard
//     reservation and live soft hold on the date it needs the stock. What
//     can be promised on a date is the least net supply from that date on,
//     so a new promise never takes stock an earlier promise counts on.
//   - Transit from a site to a region is the site's transit entry for that
//     region, else DefaultTransitDaysSameRegion inside the site's own region
//     and DefaultTransitDaysOtherRegion elsewhere.
//   - Among sites, the earliest arrival wins; ties go to a site in the
//     ship-to region, then to the lower site id. A line is split across
//     sites only when the caller allows it and a split arrives earlier or
//     is the only way to cover the line.
//   - A soft hold is ignored by availability from its expire_time on, even
//     before Run marks it EXPIRED.
//   - Invoice lines are priced with the order's unit price, per the ordered
//     unit; each line's net amount and the tax are rounded half-even to the
//     currency's minor unit once.
package fulfillment

import (
	"context"
	"errors"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"time"

	"github.com/millrace/millrace/internal/money"
)

// serviceName is the event source and the store's schema name.
const serviceName = "fulfillment"

// Defaults of the service.
const (
	// DefaultTransitDaysSameRegion is the transit time from a site to its
	// own region when the site names none.
	DefaultTransitDaysSameRegion = 1
	// DefaultTransitDaysOtherRegion is the transit time from a site to any
	// other region it names no transit time for.
	DefaultTransitDaysOtherRegion = 7
	// MaxSoftHold is how far in the future a soft hold may expire.
	MaxSoftHold = 366 * 24 * time.Hour
	// DefaultExpiryInterval is how often Run looks for expired soft holds.
	DefaultExpiryInterval = time.Second
	// expiryChunk bounds the holds one expiry transaction handles, so Run
	// never holds the write lock for long.
	expiryChunk = 100
	// maxListScan bounds the index entries one list page examines when
	// records are filtered after the index (region scope, a second
	// filter); a page that hits it is returned short with a token.
	maxListScan = 2000
)

// DefaultTaxRates is the tax rate per ship-to region used when
// Options.TaxRates is nil. Regions not listed are taxed at zero.
var DefaultTaxRates = map[string]string{
	"eu": "0.2",
	"na": "0.07",
}

// Stable reasons the fulfillment service adds to apierr's shared ones.
// Clients branch on them, so they never change once released.
const (
	ReasonSiteExists             = "SITE_EXISTS"
	ReasonInsufficientStock      = "INSUFFICIENT_STOCK"
	ReasonNoReservation          = "NO_ACTIVE_RESERVATION"
	ReasonOrderNotShippable      = "ORDER_NOT_SHIPPABLE"
	ReasonExceedsReservation     = "EXCEEDS_RESERVATION"
	ReasonReservationRefTaken    = "RESERVATION_REFERENCE_TAKEN"
	ReasonShipmentConfirmed      = "SHIPMENT_ALREADY_CONFIRMED"
	ReasonReservationNotActive   = "RESERVATION_NOT_ACTIVE"
	ReasonOrderUnknown           = "ORDER_UNKNOWN"
	ReasonOrderMismatch          = "ORDER_MISMATCH"
	ReasonOrderNotPriced         = "ORDER_NOT_PRICED"
	ReasonInvoicePaid            = "INVOICE_ALREADY_PAID"
	ReasonOverpayment            = "OVERPAYMENT"
	ReasonCurrencyMismatch       = "CURRENCY_MISMATCH"
	ReasonPaymentReferenceReused = "PAYMENT_REFERENCE_REUSED"
	ReasonNothingShipped         = "NOTHING_SHIPPED"
	ReasonExceedsShipped         = "EXCEEDS_SHIPPED"
	ReasonReturnReceived         = "RETURN_ALREADY_RECEIVED"
	ReasonRegionOutOfScope       = "REGION_OUT_OF_SCOPE"
	ReasonBaseUnitChanged        = "BASE_UNIT_CHANGED"

	// Reasons on an availability line (LineAvailability.reason); the
	// same words name unknown products and units in errors.
	LineShort          = "SHORT"
	LineUnknownProduct = "UNKNOWN_PRODUCT"
	LineUnknownUnit    = "UNKNOWN_UNIT"
	LineNotConvertible = "NOT_CONVERTIBLE"
)

// Kinds of a supply source.
const (
	SourceOnHand         = "ON_HAND"
	SourcePlannedReceipt = "PLANNED_RECEIPT"
)

// Options configure a Server.
type Options struct {
	// Notify is called after a commit that appended events, so the outbox
	// relay publishes at once. May be nil.
	Notify func()
	// Now returns the current time; nil means time.Now. Tests pin it.
	Now func() time.Time
	// Products answers product facts (base unit, conversions). Every
	// operation that takes a quantity needs it.
	Products ProductCatalog
	// Orders answers the priced lines of an order; ConfirmShipment needs
	// it to invoice.
	Orders OrderDirectory
	// TaxRates is the tax rate per ship-to region as a decimal fraction
	// ("0.2"); nil means DefaultTaxRates. Regions not listed pay no tax.
	TaxRates map[string]string
	// ExpiryInterval is how often Run expires soft holds; zero means
	// DefaultExpiryInterval.
	ExpiryInterval time.Duration
}

// ProductCatalog answers the facts fulfillment needs about products. It is
// the port to the productpricing service; NewProductClient is its gRPC
// adapter.
type ProductCatalog interface {
	// Product returns the facts of one product, ErrUnknownProduct for an
	// unknown SKU, and a *PeerUnavailableError when the catalog cannot be
	// reached.
	Product(ctx context.Context, sku string) (ProductFacts, error)
}

// OrderDirectory answers the priced lines of an order. It is the port to
// the order service; NewOrderClient is its gRPC adapter.
type OrderDirectory interface {
	// OrderLines returns the lines of an order with their prices,
	// ErrUnknownOrder for an unknown order, and a *PeerUnavailableError
	// when the directory cannot be reached.
	OrderLines(ctx context.Context, orderID string) ([]PricedLine, error)
}

// PricedLine is one line of an order as invoicing needs it. The order-level
// facts (currency, customer, ship-to region) repeat on every line.
type PricedLine struct {
	// Index is the line's position in the order, from 0.
	Index int32
	SKU   string
	// Unit is the unit the line was ordered and priced in.
	Unit string
	// UnitPrice is the confirmed price of one Unit; nil while the order is
	// not priced.
	UnitPrice    *money.Decimal
	Currency     string
	CustomerID   string
	ShipToRegion string
	// OrderStatus is the order's status; UNSPECIFIED when the directory
	// does not say. Only ACCEPTED and PARTIALLY_SHIPPED orders may ship:
	// an order on hold (credit pending or declined) holds stock but must
	// not leave the site.
	OrderStatus orderv1.OrderStatus
}

// Errors of the ports.
var (
	// ErrUnknownProduct reports a SKU the catalog does not know.
	ErrUnknownProduct = errors.New("unknown product")
	// ErrUnknownUnit reports a unit the product does not define.
	ErrUnknownUnit = errors.New("unknown unit")
	// ErrNotConvertible reports a quantity that has no exact, representable
	// value in the base unit (a fraction of an indivisible unit, more than
	// 6 fraction digits, more than 12 integer digits).
	ErrNotConvertible = errors.New("quantity not convertible")
	// ErrUnknownOrder reports an order the directory does not know.
	ErrUnknownOrder = errors.New("unknown order")
)
