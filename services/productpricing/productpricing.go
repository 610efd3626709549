// Package productpricing is the product-pricing service: the system of record
// for products, their units of measure and conversions, and price lists, and
// the place where a basket is priced for a customer.
//
// The domain files (units.go, product.go, pricelist.go, pricing.go,
// errors.go) know nothing of gRPC or bbolt: they validate records, convert
// quantities exactly and resolve and round prices. schema.go declares the
// buckets and indexes; store.go keeps the records in the service's bbolt
// file with their indexes and events, one transaction per operation, and
// cache.go keeps what pricing reads decoded in memory; server.go translates
// the gRPC contract and maps domain errors in one function; customers.go
// adapts the customer service to the CustomerDirectory port.
//
// Price resolution ranks list scopes CUSTOMER > TIER_REGION > REGION > TIER
// > GLOBAL, then priority (see scopeRank for why a tier list without a
// region sits below the region's list).
package productpricing

import (
	"context"
	"errors"
	"time"
)

// Options configure a Server.
type Options struct {
	// Notify is called after a commit that appended events, so the outbox
	// relay publishes at once. May be nil.
	Notify func()
	// Now returns the current time; nil means time.Now. Tests pin it.
	Now func() time.Time
	// Customers answers the customer facts pricing depends on (region and
	// tier). SimulatePrices and customer-specific price lists need it.
	Customers CustomerDirectory
}

// CustomerFacts are the facts about a customer that decide which price lists
// apply to it.
type CustomerFacts struct {
	ID     string
	Region string
	Tier   string
}

// CustomerDirectory looks customers up for pricing. It is the port to the
// customer service; NewCustomerClient is its gRPC adapter.
type CustomerDirectory interface {
	// Lookup returns the facts of one customer, ErrCustomerNotFound for an
	// unknown one, and a *PeerUnavailableError when the directory cannot be
	// reached.
	Lookup(ctx context.Context, customerID string) (CustomerFacts, error)
}

// ErrCustomerNotFound reports a customer id the directory does not know.
var ErrCustomerNotFound = errors.New("customer not found")

// Scopes of a price list, from the most to the least specific. A list's
// scope is decided by which of customer, tier and region it names.
const (
	ScopeCustomer   = "CUSTOMER"    // one customer, in every region
	ScopeTierRegion = "TIER_REGION" // one tier in one region
	ScopeRegion     = "REGION"      // every customer of one region
	ScopeTier       = "TIER"        // one tier in every region
	ScopeGlobal     = "GLOBAL"      // everyone
)

// Stable reasons this service adds to apierr's shared ones. Clients branch on
// them, so they never change once released.
const (
	ReasonExternalRefTaken = "EXTERNAL_REF_TAKEN"
	ReasonPriceListOverlap = "PRICE_LIST_OVERLAP"
	ReasonNotWholeUnits    = "NOT_WHOLE_UNITS"
	ReasonNotExact         = "NOT_EXACT"
	ReasonOutOfRange       = "OUT_OF_RANGE"
	ReasonUnitInUse        = "UNIT_IN_USE"
	ReasonRegionOutOfScope = "REGION_OUT_OF_SCOPE"
	// ReasonUnknownCustomer names a customer the directory does not know,
	// or one the caller's key may not see.
	ReasonUnknownCustomer = "UNKNOWN_CUSTOMER"

	// Reasons on a simulated line that has no price.
	ReasonNoPrice        = "NO_PRICE"
	ReasonDiscontinued   = "DISCONTINUED"
	ReasonUnknownProduct = "UNKNOWN_PRODUCT"
	ReasonUnknownUnit    = "UNKNOWN_UNIT"
	ReasonNotConvertible = "NOT_CONVERTIBLE"
)
