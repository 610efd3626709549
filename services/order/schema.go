package order

import (
	"time"

	"github.com/millrace/millrace/internal/storage"
)

// The order store, declared once. Every bucket below is written only through
// store.go; secondary indexes change in the same transaction as the record
// they point at, and so do the outgoing events.
var (
	// bucketOrders holds each order as a protobuf-marshaled orderv1.Order
	// keyed by its id.
	bucketOrders = []byte("orders")

	// bucketOrderState holds, per order id, what the saga and the event
	// consumers keep beside the contract's Order (the next saga step, what
	// was taken from peers, invoices seen), as JSON. It is never shown to
	// callers.
	bucketOrderState = []byte("order_state")

	// bucketOrdersByRef is the unique index KeyStrings(system, ref id) →
	// order id: one CRM reference names at most one order, which is what
	// makes CreateOrder idempotent by external reference.
	bucketOrdersByRef = []byte("orders_by_ref")

	// The list indexes. Each key ends with the creation time (Uint64Key of
	// Unix nanoseconds) so that a list pages in creation order and a
	// created_after/created_before filter is a range of the index, never a
	// scan of records outside it.
	//
	// bucketOrdersByCreated: Key(created).
	bucketOrdersByCreated = []byte("orders_by_created")
	// bucketOrdersByCustomer: Key(customer id, created).
	bucketOrdersByCustomer = []byte("orders_by_customer")
	// bucketOrdersByStatus: Key(status, created).
	bucketOrdersByStatus = []byte("orders_by_status")
	// bucketOrdersByCustomerStatus: Key(customer id, status, created).
	bucketOrdersByCustomerStatus = []byte("orders_by_customer_status")

	// bucketOrdersDue is the set of orders the background must drive: a
	// PENDING order (its saga has not finished) or an order ON_HOLD for
	// CREDIT_PENDING. Key: order id, empty value. It is small, so the
	// re-validator reads it whole instead of scanning orders.
	bucketOrdersDue = []byte("orders_due")

	// bucketTimeline holds the status changes of every order, keyed by
	// Key(order id, Uint64Key(bucket sequence)): one order's entries are
	// contiguous and in commit order. Values are protobuf-marshaled
	// orderv1.TimelineEntry.
	bucketTimeline = []byte("order_timeline")

	// bucketQuotes holds each quote as a protobuf-marshaled orderv1.Quote
	// keyed by its id.
	bucketQuotes = []byte("quotes")
	// bucketQuotesByRef is the unique index KeyStrings(system, ref id) →
	// quote id.
	bucketQuotesByRef = []byte("quotes_by_ref")
	// bucketQuotesByCustomer: Key(customer id, created).
	bucketQuotesByCustomer = []byte("quotes_by_customer")
	// bucketQuotesByStatus: Key(status, created).
	bucketQuotesByStatus = []byte("quotes_by_status")
	// bucketQuotesByCustomerStatus: Key(customer id, status, created).
	bucketQuotesByCustomerStatus = []byte("quotes_by_customer_status")
	// bucketQuotesByCreated: Key(created).
	bucketQuotesByCreated = []byte("quotes_by_created")
	// bucketQuotesByExpiry indexes the quotes that can still expire (DRAFT,
	// SUBMITTED, APPROVED) under Key(valid_until); the expiry sweep reads
	// it from the start up to now and nothing else.
	bucketQuotesByExpiry = []byte("quotes_by_expiry")

	// bucketCompensations is the queue of releases owed to peers: stock
	// reservations and credit reservations that a cancelled order, an
	// expired or rejected quote or a converted quote no longer needs. The
	// entry is written in the same transaction as the change that makes the
	// release due, so a release is never forgotten; it is removed once the
	// peer confirms. Key: KeyStrings(kind, target id); value: JSON.
	bucketCompensations = []byte("compensations")
)

// Schema is the order store's layout at its current version.
var Schema = storage.Schema{
	Name:    "order",
	Version: 1,
	Buckets: [][]byte{
		bucketOrders,
		bucketOrderState,
		bucketOrdersByRef,
		bucketOrdersByCreated,
		bucketOrdersByCustomer,
		bucketOrdersByStatus,
		bucketOrdersByCustomerStatus,
		bucketOrdersDue,
		bucketTimeline,
		bucketQuotes,
		bucketQuotesByRef,
		bucketQuotesByCustomer,
		bucketQuotesByStatus,
		bucketQuotesByCustomerStatus,
		bucketQuotesByCreated,
		bucketQuotesByExpiry,
		bucketCompensations,
	},
	// Keyed by time-ordered ids and creation times, the status indexes by
	// creation time within a status.
	Appended: [][]byte{
		bucketOrders,
		bucketOrderState,
		bucketOrdersByCreated,
		bucketOrdersByStatus,
		bucketTimeline,
		bucketQuotes,
		bucketQuotesByCreated,
		bucketQuotesByStatus,
	},
}

// The secondary indexes over the buckets above.
var (
	ixOrderRef            = storage.Index{Bucket: bucketOrdersByRef, Unique: true}
	ixOrderCreated        = storage.Index{Bucket: bucketOrdersByCreated}
	ixOrderCustomer       = storage.Index{Bucket: bucketOrdersByCustomer}
	ixOrderStatus         = storage.Index{Bucket: bucketOrdersByStatus}
	ixOrderCustomerStatus = storage.Index{Bucket: bucketOrdersByCustomerStatus}

	ixQuoteRef            = storage.Index{Bucket: bucketQuotesByRef, Unique: true}
	ixQuoteCreated        = storage.Index{Bucket: bucketQuotesByCreated}
	ixQuoteCustomer       = storage.Index{Bucket: bucketQuotesByCustomer}
	ixQuoteStatus         = storage.Index{Bucket: bucketQuotesByStatus}
	ixQuoteCustomerStatus = storage.Index{Bucket: bucketQuotesByCustomerStatus}
	ixQuoteExpiry         = storage.Index{Bucket: bucketQuotesByExpiry}
)

// refKey is the unique-index key of an external reference.
func refKey(system, id string) []byte { return storage.KeyStrings(system, id) }

// timePart is a point in time as one part of a composite key: Unix
// nanoseconds, big-endian, so byte order is time order.
func timePart(t time.Time) []byte {
	n := t.UnixNano()
	if n < 0 || t.IsZero() {
		n = 0
	}
	return storage.Uint64Key(uint64(n))
}
