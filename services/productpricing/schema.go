package productpricing

import (
	"fmt"

	productpricingv1 "github.com/millrace/millrace/gen/go/millrace/productpricing/v1"
	"github.com/millrace/millrace/internal/storage"
)

// The product-pricing store, declared once. Records are protobuf-encoded.
// Every index changes in the same transaction as its record.
var (
	// bucketProducts holds products keyed by SKU, so the primary order is
	// SKU order. Its bucket sequence numbers product etags.
	bucketProducts = []byte("products")
	// bucketProductsByRef maps KeyStrings(system, id) of an external
	// reference to the SKU holding it (unique).
	bucketProductsByRef = []byte("products_by_ref")
	// bucketProductsByStatus indexes KeyStrings(status) → SKU, in SKU order
	// within a status.
	bucketProductsByStatus = []byte("products_by_status")

	// bucketPriceLists holds price list headers (everything but the
	// entries) keyed by id, which sorts by creation time. Its bucket
	// sequence numbers price list etags.
	bucketPriceLists = []byte("price_lists")
	// bucketPriceEntries holds entries keyed by KeyStrings(list id, SKU):
	// a list's entries in SKU order, and one entry read without decoding
	// the whole list when a basket is priced.
	bucketPriceEntries = []byte("price_entries")
	// bucketPriceListsBySKU indexes KeyStrings(SKU, currency) → list id:
	// the candidate lists for a line of a basket, and the lists to check
	// before a product drops a unit.
	bucketPriceListsBySKU = []byte("price_lists_by_sku")
	// bucketPriceListsByScope indexes scopeKey (currency, region, tier,
	// customer, priority) → list id: the lists a new list could overlap.
	bucketPriceListsByScope = []byte("price_lists_by_scope")
	// bucketPriceListsByCurrency indexes KeyStrings(currency, region) → id.
	bucketPriceListsByCurrency = []byte("price_lists_by_currency")
	// bucketPriceListsByRegion indexes KeyStrings(region, currency) → id.
	bucketPriceListsByRegion = []byte("price_lists_by_region")
)

// Schema is the product-pricing store's schema.
var Schema = storage.Schema{
	Name:    "productpricing",
	Version: 1,
	Buckets: [][]byte{
		bucketProducts,
		bucketProductsByRef,
		bucketProductsByStatus,
		bucketPriceLists,
		bucketPriceEntries,
		bucketPriceListsBySKU,
		bucketPriceListsByScope,
		bucketPriceListsByCurrency,
		bucketPriceListsByRegion,
	},
}

// The indexes over those buckets.
var (
	ixProductsByRef        = storage.Index{Bucket: bucketProductsByRef, Unique: true}
	ixProductsByStatus     = storage.Index{Bucket: bucketProductsByStatus}
	ixPriceListsBySKU      = storage.Index{Bucket: bucketPriceListsBySKU}
	ixPriceListsByScope    = storage.Index{Bucket: bucketPriceListsByScope}
	ixPriceListsByCurrency = storage.Index{Bucket: bucketPriceListsByCurrency}
	ixPriceListsByRegion   = storage.Index{Bucket: bucketPriceListsByRegion}
)

// Index keys. Priority is zero-padded so that key order is numeric order.

func refKey(system, id string) []byte { return storage.KeyStrings(system, id) }

func statusKey(status string) []byte { return storage.KeyStrings(status) }

func entryKey(listID, sku string) []byte { return storage.KeyStrings(listID, sku) }

func skuKey(sku, currency string) []byte { return storage.KeyStrings(sku, currency) }

// scopeKey is the overlap index key of a list: its scope identity and
// priority.
func scopeKey(pl *productpricingv1.PriceList) []byte {
	currency, region, tier, customer := scopeIdentity(pl)
	return storage.KeyStrings(currency, region, tier, customer, fmt.Sprintf("%04d", pl.GetPriority()))
}

func currencyKey(currency, region string) []byte { return storage.KeyStrings(currency, region) }

func regionKey(region, currency string) []byte { return storage.KeyStrings(region, currency) }
