package customer

import "github.com/millrace/millrace/internal/storage"

// The customer store, declared once. Every bucket below is written only
// through store.go, and every secondary index changes in the same
// transaction as the record it points at.
var (
	// bucketCustomers holds each account as a protobuf-marshaled
	// customerv1.Customer keyed by its id. Ids sort by creation time, so
	// key order is creation order.
	bucketCustomers = []byte("customers")

	// bucketByRef is the unique index KeyStrings(system, ref id) → account
	// id: one external reference belongs to at most one account.
	bucketByRef = []byte("customers_by_ref")

	// bucketByParent indexes accounts under KeyStrings(parent id), for
	// children lists and hierarchy walks down.
	bucketByParent = []byte("customers_by_parent")

	// bucketByRegion indexes accounts under KeyStrings(region).
	bucketByRegion = []byte("customers_by_region")

	// bucketByStatus indexes accounts under KeyStrings(status).
	bucketByStatus = []byte("customers_by_status")

	// bucketByRegionStatus indexes accounts under KeyStrings(region,
	// status), so a list filtered by both pages in creation order without
	// reading the records it skips.
	bucketByRegionStatus = []byte("customers_by_region_status")

	// bucketExposure holds the credit exposure of each credit account (an
	// account carrying a limit) as a protobuf-marshaled typev1.Money. An
	// account with no exposure has no entry.
	bucketExposure = []byte("credit_exposure")

	// bucketReservations holds credit reservations keyed by order id, which
	// is what makes ReserveCredit and ReleaseCredit idempotent.
	bucketReservations = []byte("credit_reservations")

	// bucketReservationsByCustomer indexes reservations under
	// KeyStrings(customer id), so a hierarchy change can move the exposure
	// of the accounts it affects onto their new credit account.
	bucketReservationsByCustomer = []byte("credit_reservations_by_customer")
)

// Schema is the customer store's layout at its current version.
var Schema = storage.Schema{
	Name:    "customer",
	Version: 1,
	Buckets: [][]byte{
		bucketCustomers,
		bucketByRef,
		bucketByParent,
		bucketByRegion,
		bucketByStatus,
		bucketByRegionStatus,
		bucketExposure,
		bucketReservations,
		bucketReservationsByCustomer,
	},
	// Keyed by time-ordered ids (a reservation by its order's).
	Appended: [][]byte{
		bucketCustomers,
		bucketReservations,
	},
}

// The secondary indexes over the buckets above.
var (
	ixRef                    = storage.Index{Bucket: bucketByRef, Unique: true}
	ixParent                 = storage.Index{Bucket: bucketByParent}
	ixRegion                 = storage.Index{Bucket: bucketByRegion}
	ixStatus                 = storage.Index{Bucket: bucketByStatus}
	ixRegionStatus           = storage.Index{Bucket: bucketByRegionStatus}
	ixReservationsByCustomer = storage.Index{Bucket: bucketReservationsByCustomer}
)
