package order

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	typev1 "github.com/millrace/millrace/gen/go/millrace/type/v1"
	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/idempotency"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/storage"
)

func TestCreateOrder(t *testing.T) {
	tests := []struct {
		name      string
		order     *orderv1.Order
		prepare   func(h *harness)
		status    orderv1.OrderStatus
		hold      orderv1.HoldReason
		total     string
		events    []string
		reserved  bool // a hard reservation is held at the end
		creditFor bool // credit is reserved at the end
	}{
		{
			name:      "priced, reserved and within credit",
			order:     newOrder("cus_ACME", ref("OPP-1"), line("VALVE-100", "2", "CASE"), line("GASKET-7", "3", "EA")),
			status:    statusAccepted,
			total:     "25.38", // 2 × 12.50 + 3 × 0.125 = 25.375 → the line totals 25.00 + 0.38
			events:    []string{"OrderStatusChanged", "OrderAccepted", "OrderStatusChanged"},
			reserved:  true,
			creditFor: true,
		},
		{
			name:     "stock short goes on hold",
			order:    newOrder("cus_ACME", nil, line("PUMP-200", "11", "EA")),
			status:   statusOnHold,
			hold:     holdInventoryShort,
			total:    "2640.00",
			events:   []string{"OrderStatusChanged", "OrderHeld", "OrderStatusChanged"},
			reserved: false,
		},
		{
			name:     "over the credit limit goes on hold",
			order:    newOrder("cus_SMALL", nil, line("PUMP-200", "1", "EA")),
			status:   statusOnHold,
			hold:     holdCreditDeclined,
			total:    "240.00",
			events:   []string{"OrderStatusChanged", "OrderHeld", "OrderStatusChanged"},
			reserved: true, // the stock stays reserved while an operator decides
		},
		{
			name:    "pricing down leaves it pending",
			order:   newOrder("cus_ACME", nil, line("VALVE-100", "1", "EA")),
			prepare: func(h *harness) { h.pricing.setDown(true) },
			status:  statusPending,
			events:  []string{"OrderStatusChanged"},
		},
		{
			name:    "fulfillment down leaves it pending, priced",
			order:   newOrder("cus_ACME", nil, line("VALVE-100", "1", "EA")),
			prepare: func(h *harness) { h.inv.setDown(true) },
			status:  statusPending,
			total:   "12.50",
			events:  []string{"OrderStatusChanged"},
			// Credit is asked for alongside the reservation and kept while
			// the order waits for fulfillment.
			creditFor: true,
		},
		{
			name:     "customer service down holds it for credit",
			order:    newOrder("cus_ACME", nil, line("VALVE-100", "1", "EA")),
			prepare:  func(h *harness) { h.credit.setDown(true) },
			status:   statusOnHold,
			hold:     holdCreditPending,
			total:    "12.50",
			events:   []string{"OrderStatusChanged", "OrderHeld", "OrderStatusChanged"},
			reserved: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.prepare != nil {
				tt.prepare(h)
			}
			o := h.createOrder(erp, tt.order)
			if o.GetStatus() != tt.status || o.GetHoldReason() != tt.hold {
				t.Fatalf("status %s/%s, want %s/%s", o.GetStatus(), o.GetHoldReason(), tt.status, tt.hold)
			}
			if got := o.GetTotal().GetAmount(); got != tt.total {
				t.Errorf("total %q, want %q", got, tt.total)
			}
			// The answer is the order as stored, not a copy that drifted
			// from it.
			if stored := h.getOrder(o.GetId()); !proto.Equal(stored, o) {
				t.Errorf("CreateOrder answered\n  %v\nbut GetOrder reads\n  %v", o, stored)
			}
			if !strings.HasPrefix(o.GetId(), "ord_") || o.GetCreateTime() == nil {
				t.Errorf("id %q, create time %v", o.GetId(), o.GetCreateTime())
			}
			if got := h.eventTypes(orderSubject(o.GetId())); !slices.Equal(got, tt.events) {
				t.Errorf("events %v, want %v", got, tt.events)
			}
			if got := h.inv.active(o.GetId()) != nil; got != tt.reserved {
				t.Errorf("hard reservation held = %v, want %v", got, tt.reserved)
			}
			if got := h.credit.holds(o.GetId()); got != tt.creditFor {
				t.Errorf("credit reserved = %v, want %v", got, tt.creditFor)
			}
			if h.notify.Load() == 0 {
				t.Error("Notify was never called after commits with events")
			}
			if tt.reserved {
				if o.GetReservationId() == "" {
					t.Error("order does not name its reservation")
				}
				for i, l := range o.GetLines() {
					if l.GetSiteId() != "site_EU1" || !l.GetPromisedTime().AsTime().Equal(promised) {
						t.Errorf("line %d: site %q promised %v", i, l.GetSiteId(), l.GetPromisedTime())
					}
				}
			}
		})
	}
}

// TestUnconfiguredPeers: a process started without a peer connection
// treats the peer as down, and orders wait instead of failing.
func TestUnconfiguredPeers(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Pricing, o.Inventory, o.Credit = nil, nil, nil })
	o := h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "1", "EA")))
	if o.GetStatus() != statusPending {
		t.Fatalf("status %s, want PENDING", o.GetStatus())
	}
	_, err := h.client.CreateQuote(erp, &orderv1.CreateQuoteRequest{Quote: newQuote("cus_ACME", time.Hour, line("VALVE-100", "1", "EA"))})
	wantCode(t, err, codes.Unavailable, apierr.ReasonUnavailable)
}

func TestCreateOrderRefusals(t *testing.T) {
	tests := []struct {
		name   string
		order  *orderv1.Order
		fields []string
	}{
		{"discontinued line", newOrder("cus_ACME", nil, line("VALVE-100", "1", "EA"), line("OLD-1", "1", "EA")), []string{"order.lines[1].sku"}},
		{"line without price", newOrder("cus_ACME", nil, line("NOPRICE", "1", "EA")), []string{"order.lines[0].sku"}},
		{"unknown customer (pricing's answer)", newOrder("cus_UNKNOWN", nil, line("VALVE-100", "1", "EA")), []string{"order.customer_id"}},
		{"no lines", newOrder("cus_ACME", nil), []string{"order.lines"}},
		{"zero quantity", newOrder("cus_ACME", nil, line("VALVE-100", "0", "EA")), []string{"order.lines[0].quantity.value"}},
		{"unknown currency", &orderv1.Order{CustomerId: "cus_ACME", CurrencyCode: "XXX", ShipToRegion: "eu", Lines: []*orderv1.OrderLine{line("VALVE-100", "1", "EA")}}, []string{"order.currency_code"}},
		{"bad region and ref", &orderv1.Order{CustomerId: "cus_ACME", CurrencyCode: "EUR", ShipToRegion: "EU", Lines: []*orderv1.OrderLine{line("VALVE-100", "1", "EA")},
			ExternalRef: &typev1.ExternalRef{System: "SF", Id: ""}}, []string{"order.ship_to_region", "order.external_ref.system", "order.external_ref.id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			_, err := h.client.CreateOrder(erp, &orderv1.CreateOrderRequest{Order: tt.order})
			st := wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
			fv := fieldViolations(st)
			for _, f := range tt.fields {
				if _, ok := fv[f]; !ok {
					t.Errorf("violations %v do not name %s (%s)", fv, f, st.Message())
				}
			}
			if strings.Contains(tt.name, "discontinued") && !strings.Contains(fv["order.lines[1].sku"], "DISCONTINUED") {
				t.Errorf("violation %q does not give the reason", fv["order.lines[1].sku"])
			}
			if n := h.countOrders(); n != 0 {
				t.Errorf("%d orders stored after a refusal", n)
			}
			if ev := h.outbox(); len(ev) != 0 {
				t.Errorf("%d events appended after a refusal", len(ev))
			}
			h.inv.mu.Lock()
			if n := len(h.inv.reservations); n != 0 {
				t.Errorf("%d reservations placed after a refusal", n)
			}
			h.inv.mu.Unlock()
		})
	}
}

func TestExternalRefIdempotentUnderConcurrency(t *testing.T) {
	h := newHarness(t)
	const callers = 50
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]int{}
	)
	for range callers {
		wg.Go(func() {
			resp, err := h.client.CreateOrder(erp, &orderv1.CreateOrderRequest{Order: newOrder("cus_ACME", ref("OPP-50"), line("VALVE-100", "1", "EA"))})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[resp.GetOrder().GetId()]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Fatalf("%d distinct orders for one external ref: %v", len(ids), ids)
	}
	if n := h.countOrders(); n != 1 {
		t.Fatalf("%d orders stored, want 1", n)
	}
	var id string
	for k := range ids {
		id = k
	}
	if calls, created := h.inv.counts(id); created != 1 {
		t.Errorf("reservations placed %d (calls %d), want 1", created, calls)
	}
	if _, created, _ := h.credit.counts(id); created != 1 {
		t.Errorf("credit reservations %d, want 1", created)
	}
	h.waitStatus(id, statusAccepted, 0, 0)

	// The same reference later: the same order, whatever the body says.
	again := h.createOrder(erp, newOrder("cus_ACME", ref("OPP-50"), line("PUMP-200", "9", "EA")))
	if again.GetId() != id || again.GetLines()[0].GetSku() != "VALVE-100" {
		t.Errorf("second create returned %s %v, want the existing %s", again.GetId(), again.GetLines(), id)
	}
	lr, err := h.client.ListOrders(erp, &orderv1.ListOrdersRequest{ExternalRefSystem: "salesforce", ExternalRefId: "OPP-50"})
	if err != nil || len(lr.GetOrders()) != 1 || lr.GetOrders()[0].GetId() != id {
		t.Fatalf("ListOrders by ref: %v %v", lr.GetOrders(), err)
	}
}

func TestRegionScope(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder(erp, newOrder("cus_ACME", ref("R-1"), line("VALVE-100", "1", "EA")))
	na := as("erp", "x-test-region", "na")

	_, err := h.client.GetOrder(na, &orderv1.GetOrderRequest{Id: o.GetId()})
	wantCode(t, err, codes.NotFound, apierr.ReasonNotFound)
	_, err = h.client.CancelOrder(na, &orderv1.CancelOrderRequest{Id: o.GetId()})
	wantCode(t, err, codes.NotFound, apierr.ReasonNotFound)
	lr, err := h.client.ListOrders(na, &orderv1.ListOrdersRequest{})
	if err != nil || len(lr.GetOrders()) != 0 {
		t.Fatalf("a key for na lists %v (%v)", lr.GetOrders(), err)
	}
	_, err = h.client.CreateOrder(na, &orderv1.CreateOrderRequest{Order: newOrder("cus_ACME", nil, line("VALVE-100", "1", "EA"))})
	st := wantCode(t, err, codes.PermissionDenied, ReasonRegionOutOfScope)
	if errorMeta(st)["field"] != "order.ship_to_region" {
		t.Errorf("meta %v", errorMeta(st))
	}
	// The reference is taken by an order this key cannot see: a conflict
	// that does not name the holder.
	naOrder := newOrder("cus_ACME", ref("R-1"), line("VALVE-100", "1", "EA"))
	naOrder.ShipToRegion = "na"
	_, err = h.client.CreateOrder(na, &orderv1.CreateOrderRequest{Order: naOrder})
	st = wantCode(t, err, codes.AlreadyExists, ReasonExternalRefTaken)
	if m := errorMeta(st); m["holder_id"] != "" || m["field"] != "order.external_ref" {
		t.Errorf("meta %v names the hidden holder or the wrong field", m)
	}
	// A key of the holder's region gets the order back.
	again := h.createOrder(as("erp", "x-test-region", "eu"), newOrder("cus_ACME", ref("R-1"), line("VALVE-100", "1", "EA")))
	if again.GetId() != o.GetId() {
		t.Errorf("same-region replay returned %s, want %s", again.GetId(), o.GetId())
	}
}

func TestListOrders(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for i := range 7 {
		customer := "cus_ACME"
		if i%2 == 1 {
			customer = "cus_SMALL" // 1 × PUMP over 100 EUR: declined
		}
		o := h.createOrder(erp, newOrder(customer, ref(fmt.Sprintf("L-%d", i)), line("PUMP-200", "1", "EA")))
		ids = append(ids, o.GetId())
		h.clock.Advance(60_000_000_000) // a minute
	}
	all := func(req *orderv1.ListOrdersRequest) []string {
		t.Helper()
		var got []string
		for page := 0; ; page++ {
			resp, err := h.client.ListOrders(erp, req)
			if err != nil {
				t.Fatalf("ListOrders: %v", err)
			}
			for _, o := range resp.GetOrders() {
				got = append(got, o.GetId())
			}
			if resp.GetNextPageToken() == "" {
				return got
			}
			if page > 20 {
				t.Fatal("paging does not end")
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
	pick := func(idx ...int) []string {
		var out []string
		for _, i := range idx {
			out = append(out, ids[i])
		}
		return out
	}
	tests := []struct {
		name string
		req  *orderv1.ListOrdersRequest
		want []string
	}{
		{"everything in pages of 2", &orderv1.ListOrdersRequest{PageSize: 2}, ids},
		{"one customer", &orderv1.ListOrdersRequest{CustomerId: "cus_SMALL", PageSize: 2}, pick(1, 3, 5)},
		{"one status", &orderv1.ListOrdersRequest{Status: statusAccepted, PageSize: 3}, pick(0, 2, 4, 6)},
		{"customer and status", &orderv1.ListOrdersRequest{CustomerId: "cus_SMALL", Status: statusOnHold}, pick(1, 3, 5)},
		{"customer and another status", &orderv1.ListOrdersRequest{CustomerId: "cus_SMALL", Status: statusAccepted}, nil},
		{"created range", &orderv1.ListOrdersRequest{CreatedAfter: h.getOrder(ids[2]).GetCreateTime(), CreatedBefore: h.getOrder(ids[5]).GetCreateTime(), PageSize: 1}, pick(2, 3, 4)},
		{"created range and status", &orderv1.ListOrdersRequest{Status: statusAccepted, CreatedAfter: h.getOrder(ids[1]).GetCreateTime()}, pick(2, 4, 6)},
		{"external ref", &orderv1.ListOrdersRequest{ExternalRefSystem: "salesforce", ExternalRefId: "L-3"}, pick(3)},
		{"external ref and another customer", &orderv1.ListOrdersRequest{ExternalRefSystem: "salesforce", ExternalRefId: "L-3", CustomerId: "cus_ACME"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := all(tt.req); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}

	refusals := []struct {
		name  string
		req   *orderv1.ListOrdersRequest
		field string
	}{
		{"garbage token", &orderv1.ListOrdersRequest{PageToken: "nope"}, "page_token"},
		{"half a reference", &orderv1.ListOrdersRequest{ExternalRefSystem: "salesforce"}, "external_ref_id"},
		{"page too large", &orderv1.ListOrdersRequest{PageSize: 501}, "page_size"},
		{"empty range", &orderv1.ListOrdersRequest{CreatedAfter: h.getOrder(ids[2]).GetCreateTime(), CreatedBefore: h.getOrder(ids[1]).GetCreateTime()}, "created_before"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.ListOrders(erp, tt.req)
			st := wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
			if _, ok := fieldViolations(st)[tt.field]; !ok {
				t.Errorf("violations %v do not name %s", fieldViolations(st), tt.field)
			}
		})
	}
	t.Run("token of other filters", func(t *testing.T) {
		resp, err := h.client.ListOrders(erp, &orderv1.ListOrdersRequest{PageSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = h.client.ListOrders(erp, &orderv1.ListOrdersRequest{PageSize: 1, CustomerId: "cus_ACME", PageToken: resp.GetNextPageToken()})
		wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
	})
}

// TestCreateOrderKeyedRetryAfterLostAnswer covers a crash between the
// commit of a keyed CreateOrder and the platform storing its answer. The
// order is attached to the key's claim in the commit that stores it, so
// after the restart the retry (Started with that order, as the platform's
// idempotency layer hands it over) answers with the same order instead of
// creating a second one.
func TestCreateOrderKeyedRetryAfterLostAnswer(t *testing.T) {
	h := newHarness(t)
	const scope = "key_erp|/millrace.order.v1.OrderService/CreateOrder"
	hash := []byte("sha256 of the request")
	req := &orderv1.CreateOrderRequest{Order: newOrder("cus_ACME", nil, line("VALVE-100", "2", "EA"))}
	principal := auth.WithPrincipal(context.Background(), auth.Principal{KeyID: "key_erp", Name: "erp", Role: auth.RoleERP})
	create := func(key string) *orderv1.Order {
		t.Helper()
		st := idempotency.NewStore(h.db, idempotency.Options{})
		out, err := st.Begin(scope, key, hash)
		if err != nil {
			t.Fatal(err)
		}
		started, ok := out.(idempotency.Started)
		if !ok {
			t.Fatalf("begin %s: %#v", key, out)
		}
		ctx := reqctx.WithIdempotency(principal, reqctx.Idempotency{Scope: scope, Key: key, Created: started.Resource})
		resp, err := h.srv.CreateOrder(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetOrder() // and the process dies before Complete
	}
	first := create("k-1")

	h.stop()
	h.start()
	if n, err := idempotency.NewStore(h.db, idempotency.Options{}).ReleaseAbandoned(); err != nil || n != 1 {
		t.Fatalf("released %d claims, %v; want 1", n, err)
	}
	again := create("k-1")
	if again.GetId() != first.GetId() {
		t.Fatalf("the retry created order %s; the first attempt stored %s", again.GetId(), first.GetId())
	}
	if again.GetStatus() != statusAccepted {
		t.Errorf("status %s, want ACCEPTED", again.GetStatus())
	}
	if _, created := h.inv.counts(first.GetId()); created != 1 {
		t.Errorf("stock reservations %d, want 1", created)
	}
	if other := create("k-2"); other.GetId() == first.GetId() {
		t.Error("another key got the first key's order")
	}
	lr, err := h.client.ListOrders(erp, &orderv1.ListOrdersRequest{CustomerId: "cus_ACME"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(lr.GetOrders()); n != 2 {
		t.Errorf("%d orders stored, want 2", n)
	}
}

// TestCreateQuoteKeyedRetryAfterLostAnswer is the same for quotes: the
// retry answers with the quote the first attempt stored.
func TestCreateQuoteKeyedRetryAfterLostAnswer(t *testing.T) {
	h := newHarness(t)
	const scope = "key_erp|/millrace.order.v1.OrderService/CreateQuote"
	hash := []byte("sha256 of the request")
	req := &orderv1.CreateQuoteRequest{Quote: newQuote("cus_ACME", 24*time.Hour, line("VALVE-100", "2", "EA"))}
	principal := auth.WithPrincipal(context.Background(), auth.Principal{KeyID: "key_erp", Name: "erp", Role: auth.RoleERP})
	create := func() *orderv1.Quote {
		t.Helper()
		st := idempotency.NewStore(h.db, idempotency.Options{})
		out, err := st.Begin(scope, "q-1", hash)
		if err != nil {
			t.Fatal(err)
		}
		started, ok := out.(idempotency.Started)
		if !ok {
			t.Fatalf("begin: %#v", out)
		}
		resp, err := h.srv.CreateQuote(reqctx.WithIdempotency(principal, reqctx.Idempotency{Scope: scope, Key: "q-1", Created: started.Resource}), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetQuote()
	}
	first := create()
	h.stop()
	h.start()
	if _, err := idempotency.NewStore(h.db, idempotency.Options{}).ReleaseAbandoned(); err != nil {
		t.Fatal(err)
	}
	if again := create(); again.GetId() != first.GetId() {
		t.Fatalf("the retry answered %s; the first attempt created %s", again.GetId(), first.GetId())
	}
	lr, err := h.client.ListQuotes(erp, &orderv1.ListQuotesRequest{CustomerId: "cus_ACME"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(lr.GetQuotes()); n != 1 {
		t.Errorf("%d quotes stored, want 1", n)
	}
}

// TestStatusIndexFollowsTransitions checks that listing by status, with
// and without a customer, finds each order under its current status only:
// every transition moves the order's index entries from the old status to
// the new one.
func TestStatusIndexFollowsTransitions(t *testing.T) {
	h := newHarness(t)
	accepted := h.createOrder(erp, newOrder("cus_ACME", ref("IX-1"), line("VALVE-100", "1", "EA")))
	held := h.createOrder(erp, newOrder("cus_SMALL", ref("IX-2"), line("PUMP-200", "1", "EA")))
	h.inv.setDown(true)
	pending := h.createOrder(erp, newOrder("cus_ACME", ref("IX-3"), line("VALVE-100", "1", "EA")))
	h.inv.setDown(false)
	if accepted.GetStatus() != statusAccepted || held.GetStatus() != statusOnHold || pending.GetStatus() != statusPending {
		t.Fatalf("orders are %s, %s, %s; want ACCEPTED, ON_HOLD, PENDING", accepted.GetStatus(), held.GetStatus(), pending.GetStatus())
	}
	cancelled := h.createOrder(erp, newOrder("cus_ACME", ref("IX-4"), line("VALVE-100", "1", "EA")))
	if _, err := h.client.CancelOrder(erp, &orderv1.CancelOrderRequest{Id: cancelled.GetId(), Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	list := func(req *orderv1.ListOrdersRequest) []string {
		t.Helper()
		resp, err := h.client.ListOrders(erp, req)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, o := range resp.GetOrders() {
			ids = append(ids, o.GetId())
		}
		return ids
	}
	for status, want := range map[orderv1.OrderStatus][]string{
		statusAccepted:  {accepted.GetId()},
		statusOnHold:    {held.GetId()},
		statusPending:   {pending.GetId()},
		statusCancelled: {cancelled.GetId()},
	} {
		if got := list(&orderv1.ListOrdersRequest{Status: status}); !slices.Equal(got, want) {
			t.Errorf("status %s lists %v, want %v", status, got, want)
		}
	}
	// The index itself, not only what a list shows of it: no entry is left
	// under a status an order has left.
	for status, want := range map[orderv1.OrderStatus][]string{
		statusAccepted:  {accepted.GetId()},
		statusOnHold:    {held.GetId()},
		statusPending:   {pending.GetId()},
		statusCancelled: {cancelled.GetId()},
	} {
		var got []string
		err := h.db.View(func(tx *bbolt.Tx) error {
			return ixOrderStatus.Scan(tx, storage.KeyStrings(statusKey(status)), nil, 0, func(_, pk []byte) bool {
				got = append(got, string(pk))
				return true
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("the status index holds %v under %s, want %v", got, status, want)
		}
	}
	if got, want := list(&orderv1.ListOrdersRequest{CustomerId: "cus_ACME", Status: statusAccepted}), []string{accepted.GetId()}; !slices.Equal(got, want) {
		t.Errorf("cus_ACME ACCEPTED lists %v, want %v", got, want)
	}
	if got := list(&orderv1.ListOrdersRequest{CustomerId: "cus_ACME", Status: statusPending}); !slices.Equal(got, []string{pending.GetId()}) {
		t.Errorf("cus_ACME PENDING lists %v, want [%s]", got, pending.GetId())
	}
}

// TestListOrdersByHoldReason checks the hold_reason filter: it lists the
// held orders of one reason (status ON_HOLD implied or given), pages
// through them, and refuses a status other than ON_HOLD, naming the field.
func TestListOrdersByHoldReason(t *testing.T) {
	h := newHarness(t)
	var declined []string
	for i := range 3 {
		o := h.createOrder(erp, newOrder("cus_SMALL", ref(fmt.Sprintf("HR-%d", i)), line("PUMP-200", "1", "EA")))
		declined = append(declined, o.GetId())
	}
	h.createOrder(erp, newOrder("cus_ACME", ref("HR-OK"), line("VALVE-100", "1", "EA")))
	short := h.createOrder(erp, newOrder("cus_ACME", ref("HR-SHORT"), line("PUMP-200", "500", "EA")))
	if short.GetHoldReason() != orderv1.HoldReason_HOLD_REASON_INVENTORY_SHORT {
		t.Fatalf("500 pumps of 10 held for %s, want INVENTORY_SHORT", short.GetHoldReason())
	}

	all := func(req *orderv1.ListOrdersRequest) []string {
		t.Helper()
		var ids []string
		for {
			resp, err := h.client.ListOrders(erp, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range resp.GetOrders() {
				ids = append(ids, o.GetId())
			}
			if resp.GetNextPageToken() == "" {
				return ids
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
	if got := all(&orderv1.ListOrdersRequest{HoldReason: holdCreditDeclined, PageSize: 2}); !slices.Equal(got, declined) {
		t.Errorf("credit declined lists %v, want %v", got, declined)
	}
	if got := all(&orderv1.ListOrdersRequest{Status: statusOnHold, HoldReason: orderv1.HoldReason_HOLD_REASON_INVENTORY_SHORT}); !slices.Equal(got, []string{short.GetId()}) {
		t.Errorf("inventory short lists %v, want [%s]", got, short.GetId())
	}
	if got := all(&orderv1.ListOrdersRequest{Status: statusOnHold}); len(got) != 4 {
		t.Errorf("ON_HOLD lists %d orders, want 4", len(got))
	}
	_, err := h.client.ListOrders(erp, &orderv1.ListOrdersRequest{Status: statusAccepted, HoldReason: holdCreditDeclined})
	st := wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
	if !strings.Contains(st.Message(), "hold_reason") || !strings.Contains(st.Message(), "ACCEPTED") {
		t.Errorf("message %q, want one naming hold_reason and the status asked for", st.Message())
	}
	// A hold reason the contract does not define is refused, naming it.
	_, err = h.client.ListOrders(erp, &orderv1.ListOrdersRequest{HoldReason: orderv1.HoldReason(99)})
	if st := wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument); !strings.Contains(st.Message(), "hold_reason") {
		t.Errorf("message %q, want one naming hold_reason", st.Message())
	}
	// A page token of the unfiltered ON_HOLD list does not continue the
	// filtered one.
	first, err := h.client.ListOrders(erp, &orderv1.ListOrdersRequest{Status: statusOnHold, PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.client.ListOrders(erp, &orderv1.ListOrdersRequest{HoldReason: holdCreditDeclined, PageToken: first.GetNextPageToken()})
	wantCode(t, err, codes.InvalidArgument, apierr.ReasonInvalidArgument)
}
