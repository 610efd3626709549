package fulfillment

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/money"
)

// core applies the fulfillment rules on top of a repository and the peers.
type core struct {
	repo     repository
	now      func() time.Time // UTC, truncated to microseconds
	products ProductCatalog
	orders   OrderDirectory
	taxRates map[string]*money.Decimal
}

// parseTaxRates checks a rate table: every rate a decimal in [0, 1).
func parseTaxRates(in map[string]string) (map[string]*money.Decimal, error) {
	out := make(map[string]*money.Decimal, len(in))
	for region, s := range in {
		r, err := money.Parse(s)
		if err != nil || r.Negative || money.Cmp(r, money.MustParse("1")) >= 0 {
			return nil, fmt.Errorf("fulfillment: tax rate %q of region %q is not a decimal fraction in [0, 1)", s, region)
		}
		out[region] = r
	}
	return out, nil
}

// taxRate is the rate of a ship-to region; zero for regions not listed.
func (k *core) taxRate(region string) *money.Decimal {
	if r, ok := k.taxRates[region]; ok {
		return r
	}
	return money.Zero()
}

// ---------------------------------------------------------------------------
// Region scope.

// checkScope refuses a write into a region the principal does not see.
func checkScope(p auth.Principal, field, region string) error {
	if !p.SeesRegion(region) {
		return &regionError{Field: field, Region: region, Scope: p.Region}
	}
	return nil
}

// visibleSite loads a site the principal may see; any other is not found.
func visibleSite(tx txn, p auth.Principal, id string) (*fulfillmentv1.Site, error) {
	s, err := tx.site(id)
	if err != nil {
		return nil, err
	}
	if s == nil || !p.SeesRegion(s.GetRegion()) {
		return nil, &notFoundError{Kind: "site", ID: id}
	}
	return s, nil
}

// ---------------------------------------------------------------------------
// Quantities and products.

// parseQuantity reads a request quantity: present, a non-negative decimal,
// and, unless zeroOK, greater than zero. field is the Quantity's path.
func parseQuantity(field string, q *typev1.Quantity, zeroOK bool) (*money.Decimal, error) {
	if q == nil {
		return nil, invalid(field, "is required")
	}
	v, err := money.Parse(q.GetValue())
	switch {
	case err != nil:
		return nil, invalid(path(field, "value"), "%q is not a decimal number", q.GetValue())
	case v.Negative && !v.IsZero():
		return nil, invalid(path(field, "value"), "must not be negative")
	case !zeroOK && v.IsZero():
		return nil, invalid(path(field, "value"), "must be greater than zero")
	case q.GetUnit() == "":
		return nil, invalid(path(field, "unit"), "is required")
	}
	return v, nil
}

// catalog resolves the distinct SKUs of a request. Unknown SKUs are
// reported per SKU in unknown; a peer outage or any other failure fails
// the whole call.
func (k *core) catalog(ctx context.Context, skus ...string) (facts map[string]ProductFacts, unknown map[string]bool, err error) {
	if k.products == nil {
		return nil, nil, &PeerUnavailableError{Peer: "productpricing", Err: errors.New("no product catalog is configured")}
	}
	facts, unknown = map[string]ProductFacts{}, map[string]bool{}
	for _, sku := range skus {
		if _, done := facts[sku]; done || unknown[sku] {
			continue
		}
		f, err := k.products.Product(ctx, sku)
		switch {
		case errors.Is(err, ErrUnknownProduct):
			unknown[sku] = true
		case err != nil:
			return nil, nil, err
		default:
			facts[sku] = f
		}
	}
	return facts, unknown, nil
}

// baseQuantity converts one request quantity of sku to the base unit, for
// operations where any problem fails the call. skuField and qtyField are
// the paths of the SKU and the Quantity in the request.
func (k *core) baseQuantity(ctx context.Context, skuField, sku, qtyField string, q *typev1.Quantity) (*money.Decimal, ProductFacts, error) {
	v, err := parseQuantity(qtyField, q, false)
	if err != nil {
		return nil, ProductFacts{}, err
	}
	facts, unknown, err := k.catalog(ctx, sku)
	if err != nil {
		return nil, ProductFacts{}, err
	}
	if unknown[sku] {
		return nil, ProductFacts{}, invalidReason(LineUnknownProduct, skuField, "no product has SKU %q", sku)
	}
	f := facts[sku]
	base, err := convertField(f, v, q.GetUnit(), qtyField)
	return base, f, err
}

// convertField converts v of unit to f's base unit and names the field at
// fault when it cannot.
func convertField(f ProductFacts, v *money.Decimal, unit, qtyField string) (*money.Decimal, error) {
	base, err := f.ToBase(v, unit)
	switch {
	case errors.Is(err, ErrUnknownUnit):
		return nil, unknownUnit(f, path(qtyField, "unit"), err)
	case errors.Is(err, ErrNotConvertible):
		return nil, invalidReason(LineNotConvertible, path(qtyField, "value"), "%s", trimSentinel(err, ErrNotConvertible))
	case err != nil:
		return nil, err
	}
	return base, nil
}

// unknownUnit reports a unit the product does not define, with the
// product's units in the metadata so a client can pick one.
func unknownUnit(f ProductFacts, field string, err error) error {
	e := invalidReason(LineUnknownUnit, field, "%s", trimSentinel(err, ErrUnknownUnit)).(*invalidError)
	e.Meta = map[string]string{"sku": f.SKU, "base_unit": f.BaseUnit, "units": strings.Join(f.UnitCodes(), ",")}
	return e
}

// trimSentinel drops the "sentinel: " prefix of a wrapped error message.
func trimSentinel(err, sentinel error) string {
	msg, prefix := err.Error(), sentinel.Error()+": "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		return msg[len(prefix):]
	}
	return msg
}

func quantity(d *money.Decimal, unit string) *typev1.Quantity {
	return &typev1.Quantity{Value: money.Format(d), Unit: unit}
}

func moneyOf(amount, currency string) *typev1.Money {
	if amount == "" {
		return nil
	}
	scale, _ := money.MinorUnits(currency)
	return &typev1.Money{CurrencyCode: currency, Amount: money.FormatScale(num(amount), scale)}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// ---------------------------------------------------------------------------
// Events.

// inventorySubject names the aggregate of one balance.
func inventorySubject(siteID, sku string) string { return events.Subject("inventory", siteID+":"+sku) }

// balanceProto renders a balance with its live soft holds at now.
func balanceProto(tx txn, b *balance, now time.Time) (*fulfillmentv1.InventoryBalance, error) {
	softHeld, err := tx.softHeld(b.SiteID, b.SKU, now)
	if err != nil {
		return nil, err
	}
	avail := money.Sub(money.Sub(num(b.OnHand), num(b.Reserved)), softHeld)
	if avail.Sign() < 0 {
		// Reservations may count on planned receipts, so more can be
		// reserved than is on hand; nothing is available now then.
		avail = money.Zero()
	}
	return &fulfillmentv1.InventoryBalance{
		SiteId:     b.SiteID,
		Sku:        b.SKU,
		OnHand:     quantity(num(b.OnHand), b.Unit),
		Reserved:   quantity(num(b.Reserved), b.Unit),
		SoftHeld:   quantity(softHeld, b.Unit),
		Available:  quantity(avail, b.Unit),
		UpdateTime: ts(b.UpdateTime),
	}, nil
}

// emitInventory reports a balance's change with InventoryChanged; changes
// of one balance for one reason that commit together are one event
// (txn.emitInventoryChanged).
func emitInventory(tx txn, b *balance, region string, reason fulfillmentv1.LedgerReason, now time.Time) error {
	bp, err := balanceProto(tx, b, now)
	if err != nil {
		return err
	}
	return tx.emitInventoryChanged(region, &eventsv1.InventoryChanged{Balance: bp, Reason: reason})
}

// ---------------------------------------------------------------------------
// Pages.

// pageSize applies a list's default and maximum.
func pageSize(n int32, def, maxSize int) int {
	switch {
	case n <= 0:
		return def
	case int(n) > maxSize:
		return maxSize
	}
	return int(n)
}

// pageToken is the opaque position of a list page: the last record the
// previous page examined, and a hash of the filters it was made for.
type pageToken struct {
	After  []string `json:"a"`
	Filter string   `json:"f"`
}

func filterHash(parts ...string) string {
	h := fnv.New64a()
	for _, p := range parts {
		fmt.Fprintf(h, "%q|", p)
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

func encodePageToken(filter string, after ...string) string {
	b, _ := json.Marshal(pageToken{After: after, Filter: filter})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePageToken returns the position of a page token, nil for the first
// page. n is how many position parts the list's tokens carry.
func decodePageToken(s, filter string, n int) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || len(t.After) != n {
		return nil, invalid("page_token", "not a page token from a previous response of this list")
	}
	if t.Filter != filter {
		return nil, invalid("page_token", "the page token was issued for different filters; repeat the filters of the first page")
	}
	return t.After, nil
}
