package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	customerv1 "github.com/millrace/millrace/gen/go/millrace/customer/v1"
	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
)

// The whole quote-to-cash path over REST, as the CRM and the ERP call it,
// each with a key of its own role: the ERP loads the master data (customer
// with a credit limit, products with units, a price list, sites in two
// regions with stock and planned production); the CRM quotes, submits and
// converts; an approver approves; the ERP ships, confirms, invoices are
// posted and paid; the order moves SHIPPED → INVOICED → CLOSED on
// fulfillment's events alone; goods come back on a return with a credit
// memo and the stock is on hand again. Beside it: an order over the credit
// limit held and released by the ERP, the timeline of every status change,
// and the two ways a CRM retry stays one order (external reference,
// Idempotency-Key under concurrency).
//
// The amounts are worked out by hand from the price list below:
//
//	line 0  VALVE-BV25  2 CASE = 24 EA  at the 24+ break, 40.00/EA   960.00  (480.00 per CASE)
//	line 1  FIT-ELB25   3 BOX  = 75 EA  at 3.10/EA                   232.50  ( 77.50 per BOX)
//	line 2  RESIN-PP    2 BAG  = 50 KG  at 2.4125/KG = 120.625 →     120.62  (60.3125 per BAG; half-even)
//	net 1313.12, tax 20 % (eu) 262.624 → 262.62, gross 1575.74
//	return 6 EA of line 0: 6 × 480.00 ÷ 12 = 240.00 + 48.00 tax = 288.00 credited
func TestRESTQuoteToCash(t *testing.T) {
	inst := startTestNode(t, "--rate-limit", "0")
	rc := newRESTClient(inst)
	var keys apiKeys
	if !t.Run("api keys", func(t *testing.T) { keys = createAPIKeys(t, rc) }) {
		t.FailNow()
	}
	c := q2cREST{restClient: rc, keys: keys}
	crmID, erpID := c.keyID(t, keys.crm), c.keyID(t, keys.erp)

	// Master data, loaded by the ERP.
	var kessler, nordwerk *customerv1.Customer
	if !t.Run("erp loads master data", func(t *testing.T) {
		kessler = c.customer(t, keys.erp, `{"displayName":"Kessler Maschinenbau GmbH","region":"eu","currencyCode":"EUR",
			"creditLimit":{"currencyCode":"EUR","amount":"10000"},"paymentTerms":"NET30","externalRefs":[{"system":"sap","id":"C-7001"}]}`)
		nordwerk = c.customer(t, keys.erp, `{"displayName":"Nordwerk AB","region":"eu","currencyCode":"EUR",
			"creditLimit":{"currencyCode":"EUR","amount":"5000"}}`)
		if kessler.GetCreditLimit().GetAmount() != "10000.00" {
			t.Fatalf("credit limit %v", kessler.GetCreditLimit())
		}

		for _, body := range []string{
			`{"sku":"VALVE-BV25","name":"Ball valve DN25 PN40","baseUnit":"EA","baseUnitIndivisible":true,
				"conversions":[{"unit":"CASE","factor":"12","perUnit":"EA","indivisible":true}]}`,
			`{"sku":"FIT-ELB25","name":"Elbow 90 degrees 1 inch","baseUnit":"EA","baseUnitIndivisible":true,
				"conversions":[{"unit":"BOX","factor":"25","perUnit":"EA","indivisible":true}]}`,
			`{"sku":"RESIN-PP","name":"Polypropylene resin","baseUnit":"KG",
				"conversions":[{"unit":"BAG","factor":"25","perUnit":"KG","indivisible":true},{"unit":"LB","factor":"0.45359237","perUnit":"KG"}]}`,
			`{"sku":"PUMP-CP200","name":"Centrifugal pump 2.2 kW","baseUnit":"EA","baseUnitIndivisible":true}`,
		} {
			c.do(t, "POST", "/v1/products", keys.erp, body).ok(t, nil)
		}
		c.do(t, "POST", "/v1/priceLists", keys.erp, `{"name":"EUR list","currencyCode":"EUR","validFrom":"2025-01-01T00:00:00Z","entries":[
			{"sku":"VALVE-BV25","unit":"EA","unitPrice":"42.50","breaks":[{"minQuantity":"24","unitPrice":"40.00"}]},
			{"sku":"FIT-ELB25","unit":"EA","unitPrice":"3.10"},
			{"sku":"RESIN-PP","unit":"KG","unitPrice":"2.4125"},
			{"sku":"PUMP-CP200","unit":"EA","unitPrice":"4800.00"}]}`).ok(t, nil)

		// Lyon serves Europe in a day, Ohio North America in two; each
		// ships across the Atlantic in about ten.
		c.do(t, "POST", "/v1/sites", keys.erp, `{"id":"plant-lyon","name":"Lyon plant","kind":"SITE_KIND_PLANT","region":"eu",
			"transitTimes":[{"region":"eu","days":1},{"region":"na","days":9}]}`).ok(t, nil)
		c.do(t, "POST", "/v1/sites", keys.erp, `{"id":"plant-ohio","name":"Dayton plant","kind":"SITE_KIND_PLANT","region":"na",
			"transitTimes":[{"region":"na","days":2},{"region":"eu","days":10}]}`).ok(t, nil)
		for _, adj := range []struct{ site, sku, delta, unit string }{
			{"plant-lyon", "VALVE-BV25", "10", "CASE"}, // 120 EA
			{"plant-lyon", "FIT-ELB25", "500", "EA"},
			{"plant-lyon", "RESIN-PP", "20", "BAG"}, // 500 KG
			{"plant-lyon", "PUMP-CP200", "5", "EA"},
			{"plant-ohio", "VALVE-BV25", "200", "EA"},
			{"plant-ohio", "FIT-ELB25", "100", "EA"},
		} {
			c.do(t, "POST", "/v1/sites/"+adj.site+"/inventory:adjust", keys.erp, fmt.Sprintf(
				`{"sku":%q,"delta":%q,"unit":%q,"reason":"LEDGER_REASON_PRODUCTION_RECEIPT","note":"opening stock"}`,
				adj.sku, adj.delta, adj.unit)).ok(t, nil)
		}
		if got := c.onHand(t, "VALVE-BV25", "plant-lyon"); got != "120 EA" {
			t.Fatalf("VALVE-BV25 at plant-lyon: %s on hand, want 120 EA", got)
		}
		c.do(t, "POST", "/v1/supplyPlans", keys.erp, fmt.Sprintf(`{"siteId":"plant-lyon","sku":"VALVE-BV25",
			"quantity":{"value":"240","unit":"EA"},"dueTime":%q}`, q2cPlanDue.Format(time.RFC3339))).ok(t, nil)

		t.Run("crm may not write what the erp owns", func(t *testing.T) {
			c.do(t, "POST", "/v1/customers", keys.crm, `{"displayName":"Cheeky Ltd","region":"eu","creditLimit":{"currencyCode":"EUR","amount":"1000000"}}`).
				fails(t, 403, "FIELD_OWNED_BY_ROLE")
			c.do(t, "POST", "/v1/sites/plant-lyon/inventory:adjust", keys.crm, `{"sku":"VALVE-BV25","delta":"1","unit":"EA","reason":"LEDGER_REASON_ADJUSTMENT"}`).
				fails(t, 403, "PERMISSION_DENIED")
		})
	}) {
		t.FailNow()
	}

	t.Run("availability counts planned production", func(t *testing.T) {
		// 300 EA for Europe without a split: Lyon covers it once the 240
		// planned arrive (day 14, plus a day in transit); Ohio alone never
		// does.
		var got fulfillmentv1.CheckAvailabilityResponse
		c.do(t, "POST", "/v1/availability:check", keys.crm,
			`{"shipToRegion":"eu","lines":[{"sku":"VALVE-BV25","quantity":{"value":"25","unit":"CASE"}}]}`).ok(t, &got)
		line := got.GetLines()[0]
		if !line.GetCovered() || line.GetBaseQuantity().GetValue() != "300" {
			t.Fatalf("line %v", line)
		}
		// The whole line is needed on the day the receipt completes it, so
		// it is one source: Lyon, on the due date, counting on production.
		src := line.GetSources()
		if len(src) != 1 || src[0].GetSiteId() != "plant-lyon" || src[0].GetKind() != "PLANNED_RECEIPT" ||
			!src[0].GetAvailableTime().AsTime().Equal(q2cPlanDue) || src[0].GetTransitDays() != 1 {
			t.Fatalf("sources %v, want plant-lyon's planned receipt on %s", src, q2cPlanDue)
		}
		if want := q2cPlanDue.AddDate(0, 0, 1); !line.GetPromisedTime().AsTime().Equal(want) {
			t.Fatalf("promised %s, want %s (due date + 1 day in transit)", line.GetPromisedTime().AsTime(), want)
		}
	})

	// Quote to order, by the CRM, approved by ops.
	var ord *orderv1.Order
	convertCorrelation := "sf-q2c-convert-0001"
	if !t.Run("quote to order", func(t *testing.T) {
		var q orderv1.Quote
		before := time.Now()
		c.do(t, "POST", "/v1/quotes", keys.crm, fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","shipToRegion":"eu","holdStock":true,
			"validUntil":%q,"externalRef":{"system":"salesforce","id":"0Q0-Q2C-0001"},"lines":[
			{"sku":"VALVE-BV25","quantity":{"value":"2","unit":"CASE"}},
			{"sku":"FIT-ELB25","quantity":{"value":"3","unit":"BOX"}},
			{"sku":"RESIN-PP","quantity":{"value":"2","unit":"BAG"}}]}`,
			kessler.GetId(), time.Now().Add(30*24*time.Hour).UTC().Format(time.RFC3339))).ok(t, &q)
		after := time.Now()
		if q.GetStatus() != orderv1.QuoteStatus_QUOTE_STATUS_DRAFT || q.GetTotal().GetAmount() != "1313.12" || q.GetReservationId() == "" {
			t.Fatalf("quote %v", &q)
		}
		for i, want := range []struct{ unit, total string }{{"480.00", "960.00"}, {"77.50", "232.50"}, {"60.3125", "120.62"}} {
			l := q.GetLines()[i]
			if l.GetUnitPrice().GetAmount() != want.unit || l.GetLineTotal().GetAmount() != want.total {
				t.Errorf("quote line %d priced %s × → %s, want %s → %s", i, l.GetUnitPrice().GetAmount(), l.GetLineTotal().GetAmount(), want.unit, want.total)
			}
			q2cWantPromise(t, fmt.Sprintf("quote line %d", i), l, "plant-lyon", before, after)
		}

		c.do(t, "POST", "/v1/quotes/"+q.GetId()+":submit", keys.crm, `{}`).ok(t, &q)
		if q.GetStatus() != orderv1.QuoteStatus_QUOTE_STATUS_SUBMITTED {
			t.Fatalf("after submit: %v", q.GetStatus())
		}
		c.do(t, "POST", "/v1/quotes/"+q.GetId()+":approve", keys.crm, `{"note":"self-approval"}`).fails(t, 403, "PERMISSION_DENIED")
		c.do(t, "POST", "/v1/quotes/"+q.GetId()+":approve", keys.ops, `{"note":"margin ok"}`).ok(t, &q)
		if q.GetStatus() != orderv1.QuoteStatus_QUOTE_STATUS_APPROVED {
			t.Fatalf("after approve: %v", q.GetStatus())
		}

		var conv orderv1.ConvertQuoteResponse
		before = time.Now()
		r := c.do(t, "POST", "/v1/quotes/"+q.GetId()+":convert", keys.crm, `{"externalRef":{"system":"salesforce","id":"801-Q2C-0001"}}`,
			"X-Correlation-Id", convertCorrelation)
		after = time.Now()
		r.ok(t, &conv)
		if got := r.header.Get("X-Correlation-Id"); got != convertCorrelation {
			t.Fatalf("X-Correlation-Id %q returned, want %q", got, convertCorrelation)
		}
		ord = conv.GetOrder()
		if ord.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED || ord.GetQuoteId() != q.GetId() ||
			ord.GetTotal().GetAmount() != "1313.12" || ord.GetReservationId() == "" {
			t.Fatalf("converted order %v", ord)
		}
		if conv.GetQuote().GetStatus() != orderv1.QuoteStatus_QUOTE_STATUS_CONVERTED || conv.GetQuote().GetOrderId() != ord.GetId() {
			t.Fatalf("converted quote %v", conv.GetQuote())
		}

		stored := c.order(t, keys.crm, ord.GetId())
		if stored.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED || stored.GetReservationId() != ord.GetReservationId() {
			t.Fatalf("stored order %v", stored)
		}
		for i, l := range stored.GetLines() {
			q2cWantPromise(t, fmt.Sprintf("order line %d", i), l, "plant-lyon", before, after)
			// Over REST the line also lists where its reservation holds it.
			if a := l.GetAllocations(); len(a) != 1 || a[0].GetSiteId() != "plant-lyon" || a[0].GetQuantity().GetValue() == "" ||
				!a[0].GetPromisedTime().AsTime().Equal(l.GetPromisedTime().AsTime()) {
				t.Fatalf("order line %d allocations %v", i, a)
			}
		}

		var again orderv1.ConvertQuoteResponse
		c.do(t, "POST", "/v1/quotes/"+q.GetId()+":convert", keys.crm, `{"externalRef":{"system":"salesforce","id":"801-Q2C-0001"}}`).ok(t, &again)
		if again.GetOrder().GetId() != ord.GetId() {
			t.Fatalf("converting again made order %s, want %s", again.GetOrder().GetId(), ord.GetId())
		}
		if n := len(c.ordersByRef(t, "salesforce", "801-Q2C-0001")); n != 1 {
			t.Fatalf("%d orders hold the reference, want 1", n)
		}
		// The quote's soft hold gave way to the order's hard reservation:
		// 24 EA reserved at Lyon, not 48.
		if got := c.balance(t, "VALVE-BV25", "plant-lyon"); got.GetReserved().GetValue() != "24" || got.GetSoftHeld().GetValue() != "0" {
			t.Fatalf("VALVE-BV25 at plant-lyon reserved %v soft-held %v, want 24 and 0", got.GetReserved(), got.GetSoftHeld())
		}
	}) {
		t.FailNow()
	}

	// Ship, invoice, pay, by the ERP; the order follows on events.
	var inv *fulfillmentv1.Invoice
	if !t.Run("ship invoice pay", func(t *testing.T) {
		var s fulfillmentv1.Shipment
		c.do(t, "POST", "/v1/shipments", keys.erp, fmt.Sprintf(`{"orderId":%q,"siteId":"plant-lyon","lines":[
			{"orderLineIndex":0,"sku":"VALVE-BV25","quantity":{"value":"2","unit":"CASE"}},
			{"orderLineIndex":1,"sku":"FIT-ELB25","quantity":{"value":"75","unit":"EA"}},
			{"orderLineIndex":2,"sku":"RESIN-PP","quantity":{"value":"50","unit":"KG"}}]}`, ord.GetId())).ok(t, &s)
		if s.GetStatus() != fulfillmentv1.ShipmentStatus_SHIPMENT_STATUS_PLANNED {
			t.Fatalf("shipment %v", &s)
		}
		c.do(t, "POST", "/v1/shipments/"+s.GetId()+":confirm", keys.crm, `{"carrier":"DHL Freight","trackingNumber":"JD014600003958213"}`).
			fails(t, 403, "PERMISSION_DENIED")
		c.do(t, "POST", "/v1/shipments/"+s.GetId()+":confirm", keys.erp, `{"carrier":"DHL Freight","trackingNumber":"JD014600003958213"}`).ok(t, &s)
		if s.GetStatus() != fulfillmentv1.ShipmentStatus_SHIPMENT_STATUS_CONFIRMED || s.GetInvoiceId() == "" || s.GetTrackingNumber() != "JD014600003958213" {
			t.Fatalf("confirmed shipment %v", &s)
		}

		// ShipmentConfirmed and InvoicePosted travel the bus; the order
		// passes SHIPPED on its way to INVOICED (the timeline shows both).
		got := c.awaitOrder(t, ord.GetId(), orderv1.OrderStatus_ORDER_STATUS_SHIPPED, orderv1.OrderStatus_ORDER_STATUS_INVOICED)
		for i, l := range got.GetLines() {
			if l.GetShippedQuantity().GetValue() == "" {
				t.Fatalf("line %d has no shipped quantity: %v", i, l)
			}
		}
		c.awaitOrder(t, ord.GetId(), orderv1.OrderStatus_ORDER_STATUS_INVOICED)

		var list fulfillmentv1.ListInvoicesResponse
		c.do(t, "GET", "/v1/invoices?orderId="+url.QueryEscape(ord.GetId()), keys.crm, "").ok(t, &list)
		if len(list.GetInvoices()) != 1 || list.GetInvoices()[0].GetId() != s.GetInvoiceId() {
			t.Fatalf("invoices of the order: %v", list.GetInvoices())
		}
		inv = list.GetInvoices()[0]
		if inv.GetNetTotal().GetAmount() != "1313.12" || inv.GetTaxRate() != "0.2" || inv.GetTaxTotal().GetAmount() != "262.62" ||
			inv.GetGrossTotal().GetAmount() != "1575.74" || inv.GetGrossTotal().GetCurrencyCode() != "EUR" ||
			inv.GetStatus() != fulfillmentv1.InvoiceStatus_INVOICE_STATUS_POSTED || inv.GetCustomerId() != kessler.GetId() {
			t.Fatalf("invoice net %v tax %s %v gross %v status %v", inv.GetNetTotal(), inv.GetTaxRate(), inv.GetTaxTotal(), inv.GetGrossTotal(), inv.GetStatus())
		}
		for i, want := range []struct{ qty, price, net string }{{"2 CASE", "480.00", "960.00"}, {"3 BOX", "77.50", "232.50"}, {"2 BAG", "60.3125", "120.62"}} {
			l := inv.GetLines()[i]
			if got := l.GetQuantity().GetValue() + " " + l.GetQuantity().GetUnit(); got != want.qty || l.GetUnitPrice().GetAmount() != want.price || l.GetNetAmount().GetAmount() != want.net {
				t.Errorf("invoice line %d: %s at %s = %s, want %s at %s = %s", i, got, l.GetUnitPrice().GetAmount(), l.GetNetAmount().GetAmount(), want.qty, want.price, want.net)
			}
		}

		pay := `{"amount":{"currencyCode":"EUR","amount":"1575.74"},"reference":"SEPA-2026-000417"}`
		c.do(t, "POST", "/v1/invoices/"+inv.GetId()+":recordPayment", keys.crm, pay).fails(t, 403, "PERMISSION_DENIED")
		var paid fulfillmentv1.Invoice
		c.do(t, "POST", "/v1/invoices/"+inv.GetId()+":recordPayment", keys.erp, pay).ok(t, &paid)
		if paid.GetStatus() != fulfillmentv1.InvoiceStatus_INVOICE_STATUS_PAID || paid.GetPaidTotal().GetAmount() != "1575.74" {
			t.Fatalf("paid invoice %v", &paid)
		}
		c.awaitOrder(t, ord.GetId(), orderv1.OrderStatus_ORDER_STATUS_CLOSED)
	}) {
		t.FailNow()
	}

	t.Run("timeline of the converted order", func(t *testing.T) {
		entries := c.timeline(t, ord.GetId())
		want := []struct {
			from, to orderv1.OrderStatus
			actor    string
		}{
			{orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, orderv1.OrderStatus_ORDER_STATUS_PENDING, crmID},
			{orderv1.OrderStatus_ORDER_STATUS_PENDING, orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, "system"},
			{orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, orderv1.OrderStatus_ORDER_STATUS_SHIPPED, "system"},
			{orderv1.OrderStatus_ORDER_STATUS_SHIPPED, orderv1.OrderStatus_ORDER_STATUS_INVOICED, "system"},
			{orderv1.OrderStatus_ORDER_STATUS_INVOICED, orderv1.OrderStatus_ORDER_STATUS_CLOSED, "system"},
		}
		if len(entries) != len(want) {
			t.Fatalf("timeline has %d entries, want %d:\n%s", len(entries), len(want), q2cTimeline(entries))
		}
		for i, w := range want {
			e := entries[i]
			if e.GetFromStatus() != w.from || e.GetToStatus() != w.to || e.GetActor() != w.actor || e.GetTime() == nil {
				t.Fatalf("entry %d, want %v → %v by %s:\n%s", i, w.from, w.to, w.actor, q2cTimeline(entries))
			}
			// The saga runs in the convert request; the later moves are
			// caused by fulfillment's events, which carry the correlation
			// id of the ERP's calls and name the event.
			if i < 2 && e.GetCorrelationId() != convertCorrelation {
				t.Fatalf("entry %d has correlation id %q, want %q:\n%s", i, e.GetCorrelationId(), convertCorrelation, q2cTimeline(entries))
			}
			if i >= 2 && (e.GetCorrelationId() == "" || e.GetEventId() == "") {
				t.Fatalf("entry %d names no correlation id or event:\n%s", i, q2cTimeline(entries))
			}
		}
	})

	t.Run("return and credit memo", func(t *testing.T) {
		e := c.do(t, "POST", "/v1/returns", keys.crm, fmt.Sprintf(`{"orderId":%q,"reason":"damaged in transit",
			"lines":[{"orderLineIndex":0,"sku":"VALVE-BV25","quantity":{"value":"3","unit":"CASE"}}]}`, ord.GetId())).
			fails(t, 400, "EXCEEDS_SHIPPED")
		if e.meta()["field"] != "return.lines[0].quantity" || e.meta()["returnable"] != "24" {
			t.Fatalf("metadata %v, want the field return.lines[0].quantity and 24 returnable", e.meta())
		}

		var rma fulfillmentv1.Return
		c.do(t, "POST", "/v1/returns", keys.crm, fmt.Sprintf(`{"orderId":%q,"reason":"damaged in transit",
			"lines":[{"orderLineIndex":0,"sku":"VALVE-BV25","quantity":{"value":"6","unit":"EA"}}]}`, ord.GetId())).ok(t, &rma)
		if rma.GetStatus() != fulfillmentv1.ReturnStatus_RETURN_STATUS_AUTHORIZED || rma.GetCreditMemo() != nil {
			t.Fatalf("return %v", &rma)
		}
		if got := c.onHand(t, "VALVE-BV25", "plant-lyon"); got != "96 EA" {
			t.Fatalf("VALVE-BV25 at plant-lyon: %s on hand before the receipt, want 96 EA", got)
		}
		receive := `{"siteId":"plant-lyon","disposition":"DISPOSITION_RESTOCK"}`
		c.do(t, "POST", "/v1/returns/"+rma.GetId()+":receive", keys.crm, receive).fails(t, 403, "PERMISSION_DENIED")
		c.do(t, "POST", "/v1/returns/"+rma.GetId()+":receive", keys.erp, receive).ok(t, &rma)
		memo := rma.GetCreditMemo()
		if rma.GetStatus() != fulfillmentv1.ReturnStatus_RETURN_STATUS_RECEIVED || memo.GetId() == "" ||
			memo.GetAmount().GetAmount() != "288.00" || memo.GetAmount().GetCurrencyCode() != "EUR" || memo.GetCustomerId() != kessler.GetId() {
			t.Fatalf("received return %v", &rma)
		}
		var stored fulfillmentv1.Return
		c.do(t, "GET", "/v1/returns/"+rma.GetId(), keys.crm, "").ok(t, &stored)
		if stored.GetCreditMemo().GetId() != memo.GetId() {
			t.Fatalf("stored return has credit memo %v, want %s", stored.GetCreditMemo(), memo.GetId())
		}
		if got := c.onHand(t, "VALVE-BV25", "plant-lyon"); got != "102 EA" {
			t.Fatalf("VALVE-BV25 at plant-lyon: %s on hand after the restock, want 102 EA", got)
		}
		// Nothing more of the line can come back than was shipped, net of
		// what already came back.
		c.do(t, "POST", "/v1/returns", keys.crm, fmt.Sprintf(`{"orderId":%q,"lines":[{"orderLineIndex":0,"sku":"VALVE-BV25","quantity":{"value":"19","unit":"EA"}}]}`, ord.GetId())).
			fails(t, 400, "EXCEEDS_SHIPPED")
	})

	t.Run("credit hold and release", func(t *testing.T) {
		// 3 pumps at 4,800.00 are far over what is left of 10,000.00.
		heldCorrelation := "sf-q2c-held-0001"
		var o orderv1.Order
		r := c.do(t, "POST", "/v1/orders", keys.crm, fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","shipToRegion":"eu",
			"externalRef":{"system":"salesforce","id":"801-Q2C-0002"},"lines":[{"sku":"PUMP-CP200","quantity":{"value":"3","unit":"EA"}}]}`, kessler.GetId()),
			"X-Correlation-Id", heldCorrelation)
		r.ok(t, &o)
		if o.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ON_HOLD || o.GetHoldReason() != orderv1.HoldReason_HOLD_REASON_CREDIT_DECLINED ||
			o.GetTotal().GetAmount() != "14400.00" {
			t.Fatalf("order %v, want ON_HOLD CREDIT_DECLINED for 14400.00", &o)
		}
		if stored := c.order(t, keys.crm, o.GetId()); stored.GetHoldReason() != orderv1.HoldReason_HOLD_REASON_CREDIT_DECLINED {
			t.Fatalf("stored hold reason %v", stored.GetHoldReason())
		}
		// A held order keeps its stock but may not leave the site.
		c.do(t, "POST", "/v1/shipments", keys.erp, fmt.Sprintf(`{"orderId":%q,"siteId":"plant-lyon","lines":[{"orderLineIndex":0,"sku":"PUMP-CP200","quantity":{"value":"3","unit":"EA"}}]}`, o.GetId())).
			fails(t, 400, "ORDER_NOT_SHIPPABLE")

		c.do(t, "POST", "/v1/orders/"+o.GetId()+":release", keys.crm, `{"reason":"customer promised to pay"}`).fails(t, 403, "PERMISSION_DENIED")
		// Released before the limit moves, the credit step declines again.
		c.do(t, "POST", "/v1/orders/"+o.GetId()+":release", keys.erp, `{"reason":"try again"}`).fails(t, 400, "STILL_ON_HOLD")

		// The ERP raises the limit (the CRM may not), then releases.
		cur := c.getCustomer(t, kessler.GetId())
		patch := func(key string) restResp {
			return c.do(t, "PATCH", "/v1/customers/"+kessler.GetId()+"?updateMask=creditLimit", key, fmt.Sprintf(
				`{"displayName":%q,"region":"eu","creditLimit":{"currencyCode":"EUR","amount":"50000"},"etag":%q}`, cur.GetDisplayName(), cur.GetEtag()))
		}
		patch(keys.crm).fails(t, 403, "FIELD_OWNED_BY_ROLE")
		var updated customerv1.Customer
		patch(keys.erp).ok(t, &updated)
		if updated.GetCreditLimit().GetAmount() != "50000.00" {
			t.Fatalf("credit limit %v", updated.GetCreditLimit())
		}
		releaseCorrelation := "sap-q2c-release-0001"
		var released orderv1.Order
		c.do(t, "POST", "/v1/orders/"+o.GetId()+":release", keys.erp, `{"reason":"limit raised by finance"}`, "X-Correlation-Id", releaseCorrelation).ok(t, &released)
		if released.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED || released.GetHoldReason() != orderv1.HoldReason_HOLD_REASON_UNSPECIFIED {
			t.Fatalf("released order %v", &released)
		}
		q2cWantPromise(t, "released order line 0", released.GetLines()[0], "plant-lyon", time.Time{}, time.Time{})

		entries := c.timeline(t, o.GetId())
		want := []struct {
			to          orderv1.OrderStatus
			hold        orderv1.HoldReason
			actor, corr string
		}{
			{orderv1.OrderStatus_ORDER_STATUS_PENDING, 0, crmID, heldCorrelation},
			{orderv1.OrderStatus_ORDER_STATUS_ON_HOLD, orderv1.HoldReason_HOLD_REASON_CREDIT_DECLINED, "system", heldCorrelation},
			{orderv1.OrderStatus_ORDER_STATUS_PENDING, 0, erpID, releaseCorrelation},
			{orderv1.OrderStatus_ORDER_STATUS_ACCEPTED, 0, "system", releaseCorrelation},
		}
		if len(entries) != len(want) {
			t.Fatalf("timeline has %d entries, want %d:\n%s", len(entries), len(want), q2cTimeline(entries))
		}
		for i, w := range want {
			e := entries[i]
			if e.GetToStatus() != w.to || e.GetHoldReason() != w.hold || e.GetActor() != w.actor || e.GetCorrelationId() != w.corr {
				t.Fatalf("entry %d, want → %v %v by %s with %s:\n%s", i, w.to, w.hold, w.actor, w.corr, q2cTimeline(entries))
			}
		}
		if r := entries[2].GetReason(); !strings.Contains(r, "limit raised by finance") {
			t.Fatalf("release reason %q does not carry the caller's reason", r)
		}
	})

	t.Run("the same external reference twice is one order", func(t *testing.T) {
		body := fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","shipToRegion":"eu","externalRef":{"system":"salesforce","id":"801-Q2C-0003"},
			"lines":[{"sku":"VALVE-BV25","quantity":{"value":"1","unit":"EA"}}]}`, kessler.GetId())
		var first, second orderv1.Order
		c.do(t, "POST", "/v1/orders", keys.crm, body).ok(t, &first)
		c.do(t, "POST", "/v1/orders", keys.crm, body).ok(t, &second)
		if first.GetId() == "" || second.GetId() != first.GetId() || first.GetStatus() != orderv1.OrderStatus_ORDER_STATUS_ACCEPTED {
			t.Fatalf("first %s (%v), second %s", first.GetId(), first.GetStatus(), second.GetId())
		}
		if got := c.ordersByRef(t, "salesforce", "801-Q2C-0003"); len(got) != 1 || got[0].GetId() != first.GetId() {
			t.Fatalf("orders holding the reference: %v", got)
		}
	})

	t.Run("twenty concurrent creates with one Idempotency-Key are one order", func(t *testing.T) {
		const callers = 20
		body := fmt.Sprintf(`{"customerId":%q,"currencyCode":"EUR","shipToRegion":"eu","lines":[{"sku":"FIT-ELB25","quantity":{"value":"2","unit":"BOX"}}]}`, nordwerk.GetId())
		answers := make([]q2cAnswer, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range answers {
			wg.Go(func() {
				<-start
				answers[i] = c.createRetryingInFlight(keys.crm, body, "nordwerk-order-2026-0042")
			})
		}
		close(start)
		wg.Wait()
		ids := map[string]int{}
		replays := 0
		for i, a := range answers {
			if a.err != nil || a.code != http.StatusOK {
				t.Fatalf("caller %d: HTTP %d after %d tries: %v", i, a.code, a.tries, a.err)
			}
			ids[a.id]++
			if a.replayed {
				replays++
			}
		}
		if len(ids) != 1 || replays != callers-1 {
			t.Fatalf("answers name orders %v with %d replays, want one order and %d replays", ids, replays, callers-1)
		}
		var list orderv1.ListOrdersResponse
		c.do(t, "GET", "/v1/orders?customerId="+url.QueryEscape(nordwerk.GetId()), keys.crm, "").ok(t, &list)
		if len(list.GetOrders()) != 1 || ids[list.GetOrders()[0].GetId()] != callers {
			t.Fatalf("customer %s has %d orders, want the one all callers got", nordwerk.GetId(), len(list.GetOrders()))
		}
		// The same key with another body is a different request: 422.
		c.do(t, "POST", "/v1/orders", keys.crm, strings.Replace(body, `"2"`, `"3"`, 1), "Idempotency-Key", "nordwerk-order-2026-0042").
			fails(t, 422, "IDEMPOTENCY_KEY_REUSED")
	})
}

// q2cPlanDue is when the planned receipt at Lyon arrives: midnight UTC two
// weeks from today.
var q2cPlanDue = time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 14)

// q2cREST wraps the calls of the quote-to-cash test.
type q2cREST struct {
	*restClient
	keys apiKeys
}

// keyID is the id of a key, which the timeline names as the actor.
func (c q2cREST) keyID(t *testing.T, key string) string {
	t.Helper()
	var who integrationv1.GetCallerIdentityResponse
	c.do(t, "GET", "/v1/callerIdentity", key, "").ok(t, &who)
	if who.GetKeyId() == "" {
		t.Fatal("caller identity names no key id")
	}
	return who.GetKeyId()
}

func (c q2cREST) customer(t *testing.T, key, body string) *customerv1.Customer {
	t.Helper()
	out := &customerv1.Customer{}
	c.do(t, "POST", "/v1/customers", key, body).ok(t, out)
	return out
}

func (c q2cREST) getCustomer(t *testing.T, id string) *customerv1.Customer {
	t.Helper()
	out := &customerv1.Customer{}
	c.do(t, "GET", "/v1/customers/"+id, c.keys.erp, "").ok(t, out)
	return out
}

func (c q2cREST) order(t *testing.T, key, id string) *orderv1.Order {
	t.Helper()
	out := &orderv1.Order{}
	c.do(t, "GET", "/v1/orders/"+id, key, "").ok(t, out)
	return out
}

func (c q2cREST) ordersByRef(t *testing.T, system, id string) []*orderv1.Order {
	t.Helper()
	var out orderv1.ListOrdersResponse
	c.do(t, "GET", "/v1/orders?"+url.Values{"externalRefSystem": {system}, "externalRefId": {id}}.Encode(), c.keys.crm, "").ok(t, &out)
	return out.GetOrders()
}

func (c q2cREST) timeline(t *testing.T, id string) []*orderv1.TimelineEntry {
	t.Helper()
	var out orderv1.GetOrderTimelineResponse
	c.do(t, "GET", "/v1/orders/"+id+"/timeline", c.keys.crm, "").ok(t, &out)
	return out.GetEntries()
}

// awaitOrder polls the order, as a CRM without webhooks would, until its
// status is one of want.
func (c q2cREST) awaitOrder(t *testing.T, id string, want ...orderv1.OrderStatus) *orderv1.Order {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		o := c.order(t, c.keys.crm, id)
		for _, w := range want {
			if o.GetStatus() == w {
				return o
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %s is %v, want one of %v:\n%s", id, o.GetStatus(), want, q2cTimeline(c.timeline(t, id)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// balance is the stock of sku at a site, as the CRM reads it.
func (c q2cREST) balance(t *testing.T, sku, site string) *fulfillmentv1.InventoryBalance {
	t.Helper()
	var out fulfillmentv1.ListInventoryResponse
	c.do(t, "GET", "/v1/inventory?"+url.Values{"sku": {sku}}.Encode(), c.keys.crm, "").ok(t, &out)
	for _, b := range out.GetBalances() {
		if b.GetSiteId() == site {
			return b
		}
	}
	t.Fatalf("no balance of %s at %s in %v", sku, site, out.GetBalances())
	return nil
}

// onHand is the stock on hand of sku at a site, "120 EA".
func (c q2cREST) onHand(t *testing.T, sku, site string) string {
	t.Helper()
	b := c.balance(t, sku, site)
	return b.GetOnHand().GetValue() + " " + b.GetOnHand().GetUnit()
}

// q2cAnswer is what one concurrent caller finally got.
type q2cAnswer struct {
	code     int
	replayed bool   // Idempotent-Replayed: true
	id       string // the order's id
	tries    int
	err      error
}

// createRetryingInFlight posts an order with an Idempotency-Key and, like a
// CRM's retry policy, tries again while the server says the first request
// with that key is still running (409). It runs on its own goroutine, so
// it reports instead of failing the test.
func (c q2cREST) createRetryingInFlight(key, body, idemKey string) (a q2cAnswer) {
	for a.tries = 1; a.tries <= 500; a.tries++ {
		req, err := http.NewRequest("POST", c.base+"/v1/orders", strings.NewReader(body))
		if err != nil {
			a.err = err
			return a
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Idempotency-Key", idemKey)
		resp, err := c.http.Do(req)
		if err != nil {
			a.err = err
			return a
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			a.err = err
			return a
		}
		a.code = resp.StatusCode
		if resp.StatusCode == http.StatusConflict {
			var e restError
			if json.Unmarshal(b, &e) == nil && e.reason() == "IDEMPOTENCY_KEY_IN_FLIGHT" {
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}
		if resp.StatusCode != http.StatusOK {
			a.err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
			return a
		}
		var o orderv1.Order
		if err := protojson.Unmarshal(b, &o); err != nil {
			a.err = err
			return a
		}
		a.id, a.replayed = o.GetId(), resp.Header.Get("Idempotent-Replayed") == "true"
		return a
	}
	a.err = fmt.Errorf("still in flight after %d tries", a.tries)
	return a
}

// q2cWantPromise checks that a line was promised from site, arriving one
// day (Lyon's transit to eu) after it was promised, which happened between
// from and to (either zero: not checked).
func q2cWantPromise(t *testing.T, what string, l *orderv1.OrderLine, site string, from, to time.Time) {
	t.Helper()
	if l.GetSiteId() != site || l.GetPromisedTime() == nil {
		t.Fatalf("%s: site %q promised %v, want %s with a date", what, l.GetSiteId(), l.GetPromisedTime(), site)
	}
	if from.IsZero() || to.IsZero() {
		return
	}
	p := l.GetPromisedTime().AsTime()
	if p.Before(from.Add(24*time.Hour).Add(-time.Second)) || p.After(to.Add(24*time.Hour).Add(time.Second)) {
		t.Fatalf("%s: promised %s, want a day after %s", what, p, from.UTC())
	}
}

// q2cTimeline renders a timeline for a failure message.
func q2cTimeline(entries []*orderv1.TimelineEntry) string {
	var b strings.Builder
	for i, e := range entries {
		fmt.Fprintf(&b, "  %d. %v → %v %v by %s corr %q event %q: %s\n", i, e.GetFromStatus(), e.GetToStatus(), e.GetHoldReason(),
			e.GetActor(), e.GetCorrelationId(), e.GetEventId(), e.GetReason())
	}
	return b.String()
}
