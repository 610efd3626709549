package fulfillment

import (
	"context"
	"fmt"
	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"time"

	"google.golang.org/protobuf/proto"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	"github.com/millrace/millrace/internal/money"
)

// The records the domain keeps. Quantities are in the product's base unit
// and, like amounts, are exact decimal strings written by money.Format;
// num reads them back.

// balance is the stock of one SKU at one site.
type balance struct {
	SiteID     string    `json:"site_id"`
	SKU        string    `json:"sku"`
	Unit       string    `json:"unit"`
	OnHand     string    `json:"on_hand"`
	Reserved   string    `json:"reserved"` // hard-reserved, not yet shipped
	UpdateTime time.Time `json:"update_time"`
}

// ledgerEntry is one movement of stock. A reservation moves stock between
// on hand and reserved, so an entry carries a delta for each.
type ledgerEntry struct {
	ID            string                     `json:"id"`
	SiteID        string                     `json:"site_id"`
	SKU           string                     `json:"sku"`
	Unit          string                     `json:"unit"`
	Reason        fulfillmentv1.LedgerReason `json:"reason"`
	OnHandDelta   string                     `json:"on_hand_delta"`
	ReservedDelta string                     `json:"reserved_delta"`
	OnHandAfter   string                     `json:"on_hand_after"`
	ReservedAfter string                     `json:"reserved_after"`
	// Reference names what caused the movement: a reservation, shipment
	// or return id; empty for adjustments.
	Reference string    `json:"reference,omitempty"`
	Note      string    `json:"note,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	Time      time.Time `json:"time"`
}

// supplyPlan is a planned production receipt. Production receipts posted
// at its site reduce Open, earliest due first, so stock is never counted
// both as received and as planned.
type supplyPlan struct {
	ID         string    `json:"id"`
	SiteID     string    `json:"site_id"`
	SKU        string    `json:"sku"`
	Unit       string    `json:"unit"`
	Planned    string    `json:"planned"`
	Open       string    `json:"open"`
	DueTime    time.Time `json:"due_time"`
	CreateTime time.Time `json:"create_time"`
}

// reservation holds stock for an order (hard) or a quote (soft).
type reservation struct {
	ID           string                          `json:"id"`
	Kind         fulfillmentv1.ReservationKind   `json:"kind"`
	Status       fulfillmentv1.ReservationStatus `json:"status"`
	ReferenceID  string                          `json:"reference_id"`
	ShipToRegion string                          `json:"ship_to_region"`
	Lines        []reservedLine                  `json:"lines"`
	ExpireTime   time.Time                       `json:"expire_time,omitzero"`
	CreateTime   time.Time                       `json:"create_time"`
	UpdateTime   time.Time                       `json:"update_time"`
}

// reservedLine is the stock held for one request line at one site.
type reservedLine struct {
	LineIndex int32  `json:"line_index"`
	SKU       string `json:"sku"`
	SiteID    string `json:"site_id"`
	Unit      string `json:"unit"`
	Quantity  string `json:"quantity"`
	// NeedTime is the date the stock is needed at the site: zero for stock
	// promised from on hand, a receipt's due date otherwise. It is the
	// demand date availability nets against.
	NeedTime time.Time `json:"need_time,omitzero"`
	// AvailableTime, SourceKind and TransitDays are the supply source the
	// line was promised from; PromisedTime is its arrival in the ship-to
	// region.
	AvailableTime time.Time `json:"available_time"`
	SourceKind    string    `json:"source_kind"`
	TransitDays   int32     `json:"transit_days"`
	PromisedTime  time.Time `json:"promised_time"`
	// Allocated is held by planned shipments, Shipped by confirmed ones.
	Allocated string `json:"allocated"`
	Shipped   string `json:"shipped"`
}

// remaining is what the line still holds for new shipments.
func (l reservedLine) remaining() *money.Decimal {
	return money.Sub(money.Sub(num(l.Quantity), num(l.Allocated)), num(l.Shipped))
}

// unshipped is what the line still holds in stock.
func (l reservedLine) unshipped() *money.Decimal {
	return money.Sub(num(l.Quantity), num(l.Shipped))
}

// liveSoft reports whether r is a soft hold still holding stock at now.
func (r *reservation) liveSoft(now time.Time) bool {
	return r.Kind == fulfillmentv1.ReservationKind_RESERVATION_KIND_SOFT &&
		r.Status == fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE && now.Before(r.ExpireTime)
}

// shipment is goods for an order leaving one site.
type shipment struct {
	ID            string                       `json:"id"`
	OrderID       string                       `json:"order_id"`
	SiteID        string                       `json:"site_id"`
	ReservationID string                       `json:"reservation_id"`
	Region        string                       `json:"region"` // ship-to region
	Lines         []shipmentLine               `json:"lines"`
	Status        fulfillmentv1.ShipmentStatus `json:"status"`
	Carrier       string                       `json:"carrier,omitempty"`
	Tracking      string                       `json:"tracking_number,omitempty"`
	InvoiceID     string                       `json:"invoice_id,omitempty"`
	CreateTime    time.Time                    `json:"create_time"`
	ConfirmTime   time.Time                    `json:"confirm_time,omitzero"`
}

type shipmentLine struct {
	Index    int32  `json:"order_line_index"`
	SKU      string `json:"sku"`
	Unit     string `json:"unit"`
	Quantity string `json:"quantity"`
}

// invoice bills the lines of one confirmed shipment.
type invoice struct {
	ID         string                      `json:"id"`
	OrderID    string                      `json:"order_id"`
	ShipmentID string                      `json:"shipment_id"`
	CustomerID string                      `json:"customer_id"`
	Region     string                      `json:"region"`
	Currency   string                      `json:"currency"`
	Lines      []invoiceLine               `json:"lines"`
	Net        string                      `json:"net_total"`
	TaxRate    string                      `json:"tax_rate"`
	Tax        string                      `json:"tax_total"`
	Gross      string                      `json:"gross_total"`
	Paid       string                      `json:"paid_total"`
	Status     fulfillmentv1.InvoiceStatus `json:"status"`
	PostTime   time.Time                   `json:"post_time"`
	PaidTime   time.Time                   `json:"paid_time,omitzero"`
}

type invoiceLine struct {
	Index     int32  `json:"order_line_index"`
	SKU       string `json:"sku"`
	Quantity  string `json:"quantity"`
	Unit      string `json:"unit"`
	UnitPrice string `json:"unit_price"` // per Unit
	Net       string `json:"net_amount"`
}

// payment is one payment recorded against an invoice.
type payment struct {
	ID        string    `json:"id"`
	InvoiceID string    `json:"invoice_id"`
	Amount    string    `json:"amount"`
	Reference string    `json:"reference,omitempty"`
	Time      time.Time `json:"time"`
}

// orderLine is what fulfillment knows of an order line once some of it
// shipped: how much shipped and came back, and its price, which returns
// are checked and credited against.
type orderLine struct {
	OrderID  string `json:"order_id"`
	Index    int32  `json:"index"`
	SKU      string `json:"sku"`
	BaseUnit string `json:"base_unit"`
	Shipped  string `json:"shipped"`
	Returned string `json:"returned"` // authorized for return, received or not
	// UnitPrice is per PriceUnit, which is PriceUnitToBase base units.
	UnitPrice       string `json:"unit_price"`
	PriceUnit       string `json:"price_unit"`
	PriceUnitToBase string `json:"price_unit_to_base"`
	Currency        string `json:"currency"`
	TaxRate         string `json:"tax_rate"`
	CustomerID      string `json:"customer_id"`
	Region          string `json:"region"`
}

// returnRec is a return merchandise authorization.
type returnRec struct {
	ID             string                     `json:"id"`
	OrderID        string                     `json:"order_id"`
	CustomerID     string                     `json:"customer_id"`
	Region         string                     `json:"region"`
	Reason         string                     `json:"reason,omitempty"`
	Lines          []shipmentLine             `json:"lines"`
	Status         fulfillmentv1.ReturnStatus `json:"status"`
	ReceivedSiteID string                     `json:"received_site_id,omitempty"`
	Disposition    fulfillmentv1.Disposition  `json:"disposition,omitempty"`
	Memo           *creditMemo                `json:"credit_memo,omitempty"`
	CreateTime     time.Time                  `json:"create_time"`
	ReceiveTime    time.Time                  `json:"receive_time,omitzero"`
}

type creditMemo struct {
	ID        string    `json:"id"`
	Currency  string    `json:"currency"`
	Net       string    `json:"net"`
	Tax       string    `json:"tax"`
	Amount    string    `json:"amount"`
	IssueTime time.Time `json:"issue_time"`
}

// num reads a decimal this package wrote. Records are written only with
// money.Format, so a value that does not parse is a corrupt store: the
// panic is turned into INTERNAL by the server and logged.
func num(s string) *money.Decimal {
	if s == "" {
		return money.Zero()
	}
	d, err := money.Parse(s)
	if err != nil {
		panic(fmt.Sprintf("fulfillment: corrupt decimal %q in the store", s))
	}
	return d
}

// ---------------------------------------------------------------------------
// The ports the domain runs on; store.go implements them.

// txn is one store transaction as the domain sees it. Reads see the
// transaction's own writes. Getters return nil, nil for a missing record.
type txn interface {
	// attach records on the request's idempotency claim, when it has one,
	// that the request created id (see idempotency.Attach).
	attach(id string) error
	site(id string) (*fulfillmentv1.Site, error)
	// siteInfo returns a site as availability needs it, nil when there is
	// no such site, decoding each site once per transaction.
	siteInfo(id string) (*siteInfo, error)
	putSite(s *fulfillmentv1.Site) error
	// scanSites calls fn with sites in id order after afterID, only those
	// of region when it is set, until fn returns false.
	scanSites(region, afterID string, fn func(*fulfillmentv1.Site) bool) error

	balance(siteID, sku string) (*balance, error)
	putBalance(b *balance) error
	// scanBalances calls fn with balances in (site, SKU) order after the
	// position (afterSite, afterSKU): all of them, one site's, or one
	// SKU's (through the SKU index), until fn returns false.
	scanBalances(siteID, sku, afterSite, afterSKU string, fn func(*balance) bool) error
	// supply returns the supply of sku at every site that has a balance
	// or an open plan for it, in site id order, sites that do not exist
	// left out. The result may be shared with other transactions: it must
	// not be changed.
	supply(sku string) ([]itemSupply, error)
	appendLedger(e *ledgerEntry) error

	plan(id string) (*supplyPlan, error)
	// putPlan writes p; open plans are indexed, received ones are not.
	putPlan(old, p *supplyPlan) error
	// openPlans calls fn with the open plans of one item by due date.
	openPlans(siteID, sku string, fn func(*supplyPlan) bool) error
	// scanOpenPlans pages through open plans by due date, filtered by SKU
	// and/or site, after the plan (afterDue, afterID).
	scanOpenPlans(sku, siteID string, afterDue time.Time, afterID string, fn func(*supplyPlan) bool) error

	// softHeld returns the soft demand of one item live at now.
	softHeld(siteID, sku string, now time.Time) (*money.Decimal, error)
	// addHardDemand and addSoftDemand change the demand of one item on a
	// need date by delta; an entry that reaches zero is removed.
	addHardDemand(siteID, sku string, need time.Time, delta *money.Decimal) error
	addSoftDemand(siteID, sku string, expire, need time.Time, delta *money.Decimal) error

	reservation(id string) (*reservation, error)
	reservationByRef(ref string) (*reservation, error)
	// putReservation writes r and moves its index entries from old.
	putReservation(old, r *reservation) error
	// dueSoftHolds returns up to limit ids of active soft holds expiring
	// at or before now, earliest first.
	dueSoftHolds(now time.Time, limit int) ([]string, error)

	shipment(id string) (*shipment, error)
	putShipment(s *shipment) error
	scanShipments(orderID, afterID string, fn func(*shipment) bool) error

	invoice(id string) (*invoice, error)
	putInvoice(inv *invoice) error
	scanInvoices(orderID, customerID, afterID string, fn func(*invoice) bool) error
	paymentByRef(invoiceID, reference string) (*payment, error)
	putPayment(p *payment) error

	orderLine(orderID string, index int32) (*orderLine, error)
	putOrderLine(l *orderLine) error

	returnRec(id string) (*returnRec, error)
	putReturn(r *returnRec) error
	scanReturns(orderID, afterID string, fn func(*returnRec) bool) error

	// emit appends an event to the outbox in this transaction.
	emit(subject, region string, event proto.Message) error
	// emitInventoryChanged appends ev for its balance, or supersedes the
	// InventoryChanged this transaction appended for that balance last when
	// it has the same reason and is still the balance's latest event: many
	// reservations of one SKU at one site committed together (a group
	// commit) are one event with the balance after the last of them.
	emitInventoryChanged(region string, ev *eventsv1.InventoryChanged) error
}

// repository runs transactions. update may run fn more than once (group
// commit retries the others when one function of a shared commit fails),
// so fn must reset whatever it reports at its start.
type repository interface {
	view(ctx context.Context, fn func(txn) error) error
	update(ctx context.Context, fn func(txn) error) error
}
