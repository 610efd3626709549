package demo

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
)

// The demo's quotes and orders, each named by the CRM reference a Salesforce
// integration would send, so loading again finds them instead of adding
// more.
const (
	demoDraftQuote     = "DEMO-Q-1001" // a draft quote listing the catalogue at list price
	demoApprovedQuote  = "DEMO-Q-1002" // an approved quote holding stock softly
	demoConvertedQuote = "DEMO-Q-1003" // a quote converted into DEMO-O-2002
	demoAcceptedOrder  = "DEMO-O-2001" // an order that went straight to ACCEPTED
	demoQuoteOrder     = "DEMO-O-2002" // the order converted from DEMO-Q-1003
	demoCreditOrder    = "DEMO-O-2003" // an order over its customer's credit: ON_HOLD
)

// LoadOrders creates a few quotes and orders in several states through the
// public API: a draft quote, an approved quote with a soft hold, a quote
// converted into an order, an order accepted directly, and an order over
// its customer's credit limit that waits ON_HOLD{CREDIT_DECLINED} for an
// operator. It needs the customers LoadCustomers returned and the SKUs the
// catalogue sells, with their base units (EA where baseUnits has none);
// SKUs that cannot be priced for the buyer are left out. Every record carries a CRM external ref, so loading again changes
// nothing.
func LoadOrders(ctx context.Context, c orderv1.OrderServiceClient, customers []*customerv1.Customer, skus []string, baseUnits map[string]string) error {
	buyer, small := pickBuyers(customers)
	if buyer == nil || len(skus) == 0 {
		return fmt.Errorf("demo orders need customers and SKUs (got %d customers, %d SKUs)", len(customers), len(skus))
	}
	currency := currencyOf(buyer)
	validUntil := timestamppb.New(time.Now().UTC().Add(30 * 24 * time.Hour).Truncate(time.Hour))

	// The draft quote prices one of everything; a line pricing refuses is
	// dropped and the quote asked again, so the loader works with whatever
	// the catalogue sells.
	draft, err := draftCatalogueQuote(ctx, c, buyer, currency, skus, baseUnits, validUntil)
	if err != nil {
		return err
	}
	priced := draft.GetLines()
	if len(priced) == 0 {
		return fmt.Errorf("demo orders: no SKU can be priced for %s in %s", buyer.GetId(), currency)
	}
	first, second := priced[0], priced[min(1, len(priced)-1)]

	basket := func(ls ...*orderv1.OrderLine) *orderv1.Quote {
		return &orderv1.Quote{CustomerId: buyer.GetId(), CurrencyCode: currency, ShipToRegion: buyer.GetRegion(), Lines: ls,
			AllowSplit: true, ValidUntil: validUntil}
	}

	approved := basket(demoLine(first.GetSku(), "10", first.GetQuantity().GetUnit()))
	approved.HoldStock = true
	approved.ExternalRef = demoRef(demoApprovedQuote)
	if _, err := quoteTo(ctx, c, approved, orderv1.QuoteStatus_QUOTE_STATUS_APPROVED); err != nil {
		return err
	}

	converted := basket(demoLine(second.GetSku(), "5", second.GetQuantity().GetUnit()))
	converted.ExternalRef = demoRef(demoConvertedQuote)
	q, err := quoteTo(ctx, c, converted, orderv1.QuoteStatus_QUOTE_STATUS_APPROVED)
	if err != nil {
		return err
	}
	if st := q.GetStatus(); st == orderv1.QuoteStatus_QUOTE_STATUS_APPROVED || st == orderv1.QuoteStatus_QUOTE_STATUS_CONVERTED {
		if _, err := c.ConvertQuote(ctx, &orderv1.ConvertQuoteRequest{Id: q.GetId(), ExternalRef: demoRef(demoQuoteOrder)}); err != nil {
			return fmt.Errorf("convert demo quote %s: %w", demoConvertedQuote, err)
		}
	}

	if _, err := c.CreateOrder(ctx, &orderv1.CreateOrderRequest{Order: &orderv1.Order{
		CustomerId: buyer.GetId(), CurrencyCode: currency, ShipToRegion: buyer.GetRegion(), AllowSplit: true,
		Lines:       []*orderv1.OrderLine{demoLine(first.GetSku(), "4", first.GetQuantity().GetUnit()), demoLine(second.GetSku(), "2", second.GetQuantity().GetUnit())},
		ExternalRef: demoRef(demoAcceptedOrder),
	}}); err != nil {
		return fmt.Errorf("create demo order %s: %w", demoAcceptedOrder, err)
	}

	// The credit hold: the dearest SKU, in a quantity worth more than the
	// smallest credit limit (with a margin for the customer's own prices).
	if small != nil {
		dear := priced[0]
		for _, l := range priced {
			if amount(l.GetUnitPrice()) > amount(dear.GetUnitPrice()) {
				dear = l
			}
		}
		qty := int(math.Ceil(amount(small.GetCreditLimit())*1.1/amount(dear.GetUnitPrice()))) + 1
		if _, err := c.CreateOrder(ctx, &orderv1.CreateOrderRequest{Order: &orderv1.Order{
			CustomerId: small.GetId(), CurrencyCode: currency, ShipToRegion: small.GetRegion(), AllowSplit: true,
			Lines:       []*orderv1.OrderLine{demoLine(dear.GetSku(), strconv.Itoa(qty), dear.GetQuantity().GetUnit())},
			ExternalRef: demoRef(demoCreditOrder),
		}}); err != nil {
			return fmt.Errorf("create demo order %s: %w", demoCreditOrder, err)
		}
	}
	return nil
}

// pickBuyers chooses who orders: a subsidiary of a credit group (its credit
// is the group's) as the regular buyer, and the account with the smallest
// credit limit in the buyer's currency for the order over the limit.
func pickBuyers(customers []*customerv1.Customer) (buyer, small *customerv1.Customer) {
	for _, cu := range customers {
		if cu.GetParentId() != "" {
			buyer = cu
			break
		}
	}
	if buyer == nil && len(customers) > 0 {
		buyer = customers[0]
	}
	if buyer == nil {
		return nil, nil
	}
	for _, cu := range customers {
		l := cu.GetCreditLimit()
		if l == nil || l.GetCurrencyCode() != currencyOf(buyer) {
			continue
		}
		if small == nil || amount(l) < amount(small.GetCreditLimit()) {
			small = cu
		}
	}
	return buyer, small
}

func currencyOf(cu *customerv1.Customer) string {
	if c := cu.GetCurrencyCode(); c != "" {
		return c
	}
	if cu.GetRegion() == "eu" {
		return "EUR"
	}
	return "USD"
}

func demoRef(id string) *typev1.ExternalRef { return &typev1.ExternalRef{System: "salesforce", Id: id} }

func demoLine(sku, qty, unit string) *orderv1.OrderLine {
	if unit == "" {
		unit = "EA"
	}
	return &orderv1.OrderLine{Sku: sku, Quantity: &typev1.Quantity{Value: qty, Unit: unit}}
}

func amount(m *typev1.Money) float64 {
	f, _ := strconv.ParseFloat(m.GetAmount(), 64) // ranking and sizing only, never money arithmetic
	return f
}

// draftCatalogueQuote creates (or finds) the draft quote with one base unit
// of every SKU pricing accepts.
func draftCatalogueQuote(ctx context.Context, c orderv1.OrderServiceClient, buyer *customerv1.Customer, currency string, skus []string, baseUnits map[string]string, validUntil *timestamppb.Timestamp) (*orderv1.Quote, error) {
	lines := make([]*orderv1.OrderLine, 0, len(skus))
	for _, s := range skus {
		lines = append(lines, demoLine(s, "1", baseUnits[s]))
	}
	for len(lines) > 0 {
		resp, err := c.CreateQuote(ctx, &orderv1.CreateQuoteRequest{Quote: &orderv1.Quote{
			CustomerId: buyer.GetId(), CurrencyCode: currency, ShipToRegion: buyer.GetRegion(), Lines: lines,
			AllowSplit: true, ValidUntil: validUntil, ExternalRef: demoRef(demoDraftQuote),
		}})
		if err == nil {
			return resp.GetQuote(), nil
		}
		bad := refusedLines(err)
		if len(bad) == 0 {
			return nil, fmt.Errorf("create demo quote %s: %w", demoDraftQuote, err)
		}
		kept := lines[:0:0]
		for i, l := range lines {
			if !bad[i] {
				kept = append(kept, l)
			}
		}
		lines = kept
	}
	return nil, fmt.Errorf("create demo quote %s: no SKU could be priced", demoDraftQuote)
}

// refusedLines returns the line indexes an InvalidArgument names
// ("quote.lines[3].sku").
func refusedLines(err error) map[int]bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return nil
	}
	out := map[int]bool{}
	for _, d := range st.Details() {
		br, ok := d.(*errdetails.BadRequest)
		if !ok {
			continue
		}
		for _, v := range br.GetFieldViolations() {
			rest, found := strings.CutPrefix(v.GetField(), "quote.lines[")
			if !found {
				continue
			}
			end := strings.IndexByte(rest, ']')
			if i, err := strconv.Atoi(rest[:max(end, 0)]); err == nil {
				out[i] = true
			}
		}
	}
	return out
}

// quoteTo creates (or finds) a quote by its reference and moves it forward
// to the wanted status, as far as its current status allows.
func quoteTo(ctx context.Context, c orderv1.OrderServiceClient, q *orderv1.Quote, want orderv1.QuoteStatus) (*orderv1.Quote, error) {
	resp, err := c.CreateQuote(ctx, &orderv1.CreateQuoteRequest{Quote: q})
	if err != nil {
		return nil, fmt.Errorf("create demo quote %s: %w", q.GetExternalRef().GetId(), err)
	}
	cur := resp.GetQuote()
	if cur.GetStatus() == orderv1.QuoteStatus_QUOTE_STATUS_DRAFT && want >= orderv1.QuoteStatus_QUOTE_STATUS_SUBMITTED {
		r, err := c.SubmitQuote(ctx, &orderv1.SubmitQuoteRequest{Id: cur.GetId()})
		if err != nil {
			return nil, fmt.Errorf("submit demo quote %s: %w", q.GetExternalRef().GetId(), err)
		}
		cur = r.GetQuote()
	}
	if cur.GetStatus() == orderv1.QuoteStatus_QUOTE_STATUS_SUBMITTED && want >= orderv1.QuoteStatus_QUOTE_STATUS_APPROVED {
		r, err := c.ApproveQuote(ctx, &orderv1.ApproveQuoteRequest{Id: cur.GetId(), Note: "demo: standard margin"})
		if err != nil {
			return nil, fmt.Errorf("approve demo quote %s: %w", q.GetExternalRef().GetId(), err)
		}
		cur = r.GetQuote()
	}
	return cur, nil
}
