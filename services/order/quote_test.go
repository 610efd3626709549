package order

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "github.com/millrace/millrace/gen/go/millrace/fulfillment/v1"
	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"github.com/millrace/millrace/internal/apierr"
)

// quoteAction is one call a caller can make on a quote.
type quoteAction func(h *harness, id string) (*orderv1.Quote, error)

var (
	submit quoteAction = func(h *harness, id string) (*orderv1.Quote, error) {
		r, err := h.client.SubmitQuote(erp, &orderv1.SubmitQuoteRequest{Id: id})
		return r.GetQuote(), err
	}
	approve quoteAction = func(h *harness, id string) (*orderv1.Quote, error) {
		r, err := h.client.ApproveQuote(as("ops"), &orderv1.ApproveQuoteRequest{Id: id, Note: "margin ok"})
		return r.GetQuote(), err
	}
	reject quoteAction = func(h *harness, id string) (*orderv1.Quote, error) {
		r, err := h.client.RejectQuote(as("ops"), &orderv1.RejectQuoteRequest{Id: id, Reason: "price too low"})
		return r.GetQuote(), err
	}
	convert quoteAction = func(h *harness, id string) (*orderv1.Quote, error) {
		r, err := h.client.ConvertQuote(erp, &orderv1.ConvertQuoteRequest{Id: id})
		return r.GetQuote(), err
	}
)

func TestQuoteTransitions(t *testing.T) {
	tests := []struct {
		name     string
		before   []quoteAction // applied first, must succeed
		expire   bool          // move the clock past valid_until before the action
		action   quoteAction
		want     orderv1.QuoteStatus // on success
		from, to string              // on INVALID_TRANSITION
		released bool                // the soft hold is released afterwards
		event    string              // an event the action emits
		hint     string              // how the refusal's message ends
	}{
		{name: "submit a draft", action: submit, want: quoteSubmitted},
		{name: "approve a submitted quote", before: []quoteAction{submit}, action: approve, want: quoteApproved, event: "QuoteApproved"},
		{name: "reject a submitted quote", before: []quoteAction{submit}, action: reject, want: quoteRejected, released: true},
		{name: "convert an approved quote", before: []quoteAction{submit, approve}, action: convert, want: quoteConverted, released: true},
		{name: "approve a draft", action: approve, from: "DRAFT", to: "APPROVED"},
		{name: "reject a draft", action: reject, from: "DRAFT", to: "REJECTED"},
		{name: "convert a draft", action: convert, from: "DRAFT", to: "CONVERTED", hint: "is DRAFT and cannot become CONVERTED: call :submit, then :approve (an erp or ops key) first"},
		{name: "convert a submitted quote", before: []quoteAction{submit}, action: convert, from: "SUBMITTED", to: "CONVERTED", hint: "call :approve (an erp or ops key) first"},
		{name: "submit twice", before: []quoteAction{submit}, action: submit, from: "SUBMITTED", to: "SUBMITTED", hint: "is SUBMITTED and cannot become SUBMITTED"},
		{name: "approve a rejected quote", before: []quoteAction{submit, reject}, action: approve, from: "REJECTED", to: "APPROVED", released: true, hint: "is REJECTED and cannot become APPROVED: that is final; create a new quote"},
		{name: "submit a converted quote", before: []quoteAction{submit, approve, convert}, action: submit, from: "CONVERTED", to: "SUBMITTED", released: true},
		{name: "submit after valid_until", expire: true, action: submit, from: "EXPIRED", to: "SUBMITTED", released: true},
		{name: "convert after valid_until", before: []quoteAction{submit, approve}, expire: true, action: convert, from: "EXPIRED", to: "CONVERTED", released: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			in := newQuote("cus_ACME", 24*time.Hour, line("VALVE-100", "10", "EA"))
			in.HoldStock = true
			cr, err := h.client.CreateQuote(erp, &orderv1.CreateQuoteRequest{Quote: in})
			if err != nil {
				t.Fatal(err)
			}
			id := cr.GetQuote().GetId()
			for _, a := range tt.before {
				if _, err := a(h, id); err != nil {
					t.Fatalf("setting up: %v", err)
				}
			}
			if tt.expire {
				h.clock.Advance(25 * time.Hour)
			}
			got, err := tt.action(h, id)
			if tt.from != "" {
				st := wantCode(t, err, codes.FailedPrecondition, ReasonInvalidTransition)
				if m := errorMeta(st); m["from"] != tt.from || m["to"] != tt.to || m["id"] != id {
					t.Errorf("error metadata %v, want from %s to %s", m, tt.from, tt.to)
				}
				if !strings.HasSuffix(st.Message(), tt.hint) {
					t.Errorf("message %q, want it to end %q", st.Message(), tt.hint)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if got.GetStatus() != tt.want {
					t.Fatalf("status %s, want %s", got.GetStatus(), tt.want)
				}
			}
			held := h.inv.active(id) != nil
			if held == tt.released {
				t.Errorf("soft hold active = %v, want %v", held, !tt.released)
			}
			if tt.event != "" && !slices.Contains(h.eventTypes(quoteSubject(id)), tt.event) {
				t.Errorf("events %v lack %s", h.eventTypes(quoteSubject(id)), tt.event)
			}
		})
	}

	t.Run("approving needs its own permission", func(t *testing.T) {
		h := newHarness(t)
		cr, err := h.client.CreateQuote(as("crm"), &orderv1.CreateQuoteRequest{Quote: newQuote("cus_ACME", time.Hour, line("VALVE-100", "1", "EA"))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.SubmitQuote(as("crm"), &orderv1.SubmitQuoteRequest{Id: cr.GetQuote().GetId()}); err != nil {
			t.Fatal(err)
		}
		_, err = h.client.ApproveQuote(as("crm"), &orderv1.ApproveQuoteRequest{Id: cr.GetQuote().GetId()})
		wantCode(t, err, codes.PermissionDenied, apierr.ReasonPermissionDenied)
	})
}

func TestCreateQuote(t *testing.T) {
	t.Run("prices and availability are the snapshot", func(t *testing.T) {
		h := newHarness(t)
		in := newQuote("cus_ACME", 7*24*time.Hour, line("VALVE-100", "2", "CASE"), line("PUMP-200", "50", "EA"))
		in.HoldStock = false
		in.ExternalRef = ref("Q-1")
		cr, err := h.client.CreateQuote(erp, &orderv1.CreateQuoteRequest{Quote: in})
		if err != nil {
			t.Fatal(err)
		}
		q := cr.GetQuote()
		if q.GetStatus() != quoteDraft || !strings.HasPrefix(q.GetId(), "quo_") || q.GetTotal().GetAmount() != "12025.00" {
			t.Fatalf("quote %v", q)
		}
		l0, l1 := q.GetLines()[0], q.GetLines()[1]
		if l0.GetUnitPrice().GetAmount() != "12.50" || l0.GetLineTotal().GetAmount() != "25.00" || l0.GetSiteId() != "site_EU1" || l0.GetPromisedTime() == nil {
			t.Errorf("line 0 %v", l0)
		}
		if l1.GetSiteId() != "" || l1.GetPromisedTime() != nil { // 50 pumps, 10 on hand: no date
			t.Errorf("line 1 is short but carries %q %v", l1.GetSiteId(), l1.GetPromisedTime())
		}
		again, err := h.client.CreateQuote(erp, &orderv1.CreateQuoteRequest{Quote: in})
		if err != nil || again.GetQuote().GetId() != q.GetId() {
			t.Errorf("same reference again: %v %v", again.GetQuote().GetId(), err)
		}
		if h.countQuotes() != 1 {
			t.Errorf("%d quotes stored", h.countQuotes())
		}
		gr, err := h.client.GetQuote(erp, &orderv1.GetQuoteRequest{Id: q.GetId()})
		if err != nil || gr.GetQuote().GetTotal().GetAmount() != "12025.00" {
			t.Errorf("GetQuote %v %v", gr.GetQuote(), err)
		}
	})

	t.Run("soft hold until valid_until", func(t *testing.T) {
		h := newHarness(t)
		in := newQuote("cus_ACME", 48*time.Hour, line("PUMP-200", "4", "EA"))
		in.HoldStock = true
		cr, err := h.client.CreateQuote(erp, &orderv1.CreateQuoteRequest{Quote: in})
		if err != nil {
			t.Fatal(err)
		}
		hold := h.inv.active(cr.GetQuote().GetId())
		if hold == nil || hold.GetId() != cr.GetQuote().GetReservationId() || hold.GetKind() != fulfillmentv1.ReservationKind_RESERVATION_KIND_SOFT ||
			!hold.GetExpireTime().AsTime().Equal(t0.Add(48*time.Hour)) {
			t.Fatalf("soft hold %v for quote %v", hold, cr.GetQuote())
		}

		// Expiry by the background releases it.
		h.run()
		h.clock.Advance(49 * time.Hour)
		waitFor(t, 5*time.Second, "the quote to expire", func() bool {
			gr, err := h.client.GetQuote(erp, &orderv1.GetQuoteRequest{Id: cr.GetQuote().GetId()})
			return err == nil && gr.GetQuote().GetStatus() == quoteExpired
		})
		waitFor(t, 5*time.Second, "the soft hold to be released", func() bool { return h.inv.active(cr.GetQuote().GetId()) == nil })
		lr, err := h.client.ListQuotes(erp, &orderv1.ListQuotesRequest{Status: quoteExpired})
		if err != nil || len(lr.GetQuotes()) != 1 {
			t.Errorf("expired quotes %v %v", lr.GetQuotes(), err)
		}
	})

	refusals := []struct {
		name    string
		quote   func() *orderv1.Quote
		prepare func(h *harness)
		code    codes.Code
		reason  string
		field   string
		text    string
	}{
		{name: "a line without price", quote: func() *orderv1.Quote {
			return newQuote("cus_ACME", time.Hour, line("VALVE-100", "1", "EA"), line("NOPRICE", "1", "EA"))
		}, code: codes.InvalidArgument, reason: apierr.ReasonInvalidArgument, field: "quote.lines[1].sku", text: "NOPRICE cannot be priced: no price list in force prices it in this currency for this customer (NO_PRICE)"},
		{name: "a discontinued line", quote: func() *orderv1.Quote {
			return newQuote("cus_ACME", time.Hour, line("OLD-1", "1", "EA"))
		}, code: codes.InvalidArgument, reason: apierr.ReasonInvalidArgument, field: "quote.lines[0].sku", text: "OLD-1 cannot be priced: the product is discontinued (DISCONTINUED)"},
		{name: "valid_until in the past", quote: func() *orderv1.Quote {
			q := newQuote("cus_ACME", time.Hour, line("VALVE-100", "1", "EA"))
			q.ValidUntil = timestamppb.New(t0.Add(-time.Minute))
			return q
		}, code: codes.InvalidArgument, reason: apierr.ReasonInvalidArgument, field: "quote.valid_until"},
		{name: "valid for years", quote: func() *orderv1.Quote {
			return newQuote("cus_ACME", 3*366*24*time.Hour, line("VALVE-100", "1", "EA"))
		}, code: codes.InvalidArgument, reason: apierr.ReasonInvalidArgument, field: "quote.valid_until"},
		{name: "stock to hold is short", quote: func() *orderv1.Quote {
			q := newQuote("cus_ACME", time.Hour, line("VALVE-100", "1", "EA"), line("PUMP-200", "11", "EA"))
			q.HoldStock = true
			return q
		}, code: codes.FailedPrecondition, reason: ReasonStockShort, field: "quote.lines[1].quantity"},
		{name: "pricing down", quote: func() *orderv1.Quote {
			return newQuote("cus_ACME", time.Hour, line("VALVE-100", "1", "EA"))
		}, prepare: func(h *harness) { h.pricing.setDown(true) }, code: codes.Unavailable, reason: apierr.ReasonUnavailable},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.prepare != nil {
				tt.prepare(h)
			}
			_, err := h.client.CreateQuote(erp, &orderv1.CreateQuoteRequest{Quote: tt.quote()})
			st := wantCode(t, err, tt.code, tt.reason)
			if tt.field != "" {
				desc, ok := fieldViolations(st)[tt.field]
				if !ok && errorMeta(st)["field"] != tt.field {
					t.Errorf("error %v does not name %s", err, tt.field)
				}
				if !strings.Contains(desc, tt.text) {
					t.Errorf("description %q lacks %q", desc, tt.text)
				}
			}
			if h.countQuotes() != 0 {
				t.Errorf("%d quotes stored after a refusal", h.countQuotes())
			}
			h.inv.mu.Lock()
			defer h.inv.mu.Unlock()
			for ref, r := range h.inv.reservations {
				if r.GetStatus() == fulfillmentv1.ReservationStatus_RESERVATION_STATUS_ACTIVE {
					t.Errorf("stock left held for %s", ref)
				}
			}
		})
	}
}

func TestConvertQuote(t *testing.T) {
	t.Run("the quote's prices stand while it is valid", func(t *testing.T) {
		h := newHarness(t)
		in := newQuote("cus_ACME", 24*time.Hour, line("VALVE-100", "4", "EA"))
		in.HoldStock = true
		q := h.approvedQuote(in)
		h.pricing.setPrice("VALVE-100", "99.00")
		h.pricing.setDown(true)
		h.clock.Advance(23 * time.Hour)

		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			orders = map[string]bool{}
		)
		for range 10 {
			wg.Go(func() {
				r, err := h.client.ConvertQuote(erp, &orderv1.ConvertQuoteRequest{Id: q.GetId(), ExternalRef: ref("OPP-Q")})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				orders[r.GetOrder().GetId()] = true
				mu.Unlock()
				if r.GetQuote().GetStatus() != quoteConverted || r.GetQuote().GetOrderId() != r.GetOrder().GetId() {
					t.Errorf("quote after conversion %v", r.GetQuote())
				}
			})
		}
		wg.Wait()
		if len(orders) != 1 || h.countOrders() != 1 {
			t.Fatalf("converting 10 times made %d orders (%d stored)", len(orders), h.countOrders())
		}
		var id string
		for k := range orders {
			id = k
		}
		o := h.waitStatus(id, statusAccepted, 0, 0)
		if o.GetQuoteId() != q.GetId() || o.GetTotal().GetAmount() != "50.00" || o.GetLines()[0].GetUnitPrice().GetAmount() != "12.50" {
			t.Errorf("order %v does not carry the quote's prices", o)
		}
		if o.GetExternalRef().GetId() != "OPP-Q" {
			t.Errorf("order ref %v", o.GetExternalRef())
		}
		if n := h.pricing.callCount(); n != 1 { // the quote's own simulation only
			t.Errorf("pricing asked %d times", n)
		}
		if h.inv.active(q.GetId()) != nil || h.inv.releasedCount(q.GetReservationId()) != 1 {
			t.Error("the quote's soft hold was not released exactly once")
		}
		if _, created := h.inv.counts(id); created != 1 {
			t.Errorf("hard reservations %d", created)
		}
	})

	t.Run("an external ref another order holds", func(t *testing.T) {
		h := newHarness(t)
		other := h.createOrder(erp, newOrder("cus_ACME", ref("TAKEN"), line("VALVE-100", "1", "EA")))
		q := h.approvedQuote(newQuote("cus_ACME", time.Hour, line("VALVE-100", "1", "EA")))
		_, err := h.client.ConvertQuote(erp, &orderv1.ConvertQuoteRequest{Id: q.GetId(), ExternalRef: ref("TAKEN")})
		st := wantCode(t, err, codes.AlreadyExists, ReasonExternalRefTaken)
		if m := errorMeta(st); m["field"] != "external_ref" || m["holder_id"] != other.GetId() {
			t.Errorf("meta %v", m)
		}
		gr, _ := h.client.GetQuote(erp, &orderv1.GetQuoteRequest{Id: q.GetId()})
		if gr.GetQuote().GetStatus() != quoteApproved || h.countOrders() != 1 {
			t.Errorf("a refused conversion changed state: quote %s, %d orders", gr.GetQuote().GetStatus(), h.countOrders())
		}
	})
}

func TestListQuotes(t *testing.T) {
	h := newHarness(t)
	var ids []string
	for i := range 5 {
		customer := "cus_ACME"
		if i >= 3 {
			customer = "cus_SMALL"
		}
		cr, err := h.client.CreateQuote(erp, &orderv1.CreateQuoteRequest{Quote: newQuote(customer, time.Hour, line("VALVE-100", "1", "EA"))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, cr.GetQuote().GetId())
		h.clock.Advance(time.Second)
	}
	if _, err := submit(h, ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := submit(h, ids[4]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  *orderv1.ListQuotesRequest
		want []string
	}{
		{"all, two per page", &orderv1.ListQuotesRequest{PageSize: 2}, ids},
		{"drafts", &orderv1.ListQuotesRequest{Status: quoteDraft}, []string{ids[0], ids[2], ids[3]}},
		{"one customer", &orderv1.ListQuotesRequest{CustomerId: "cus_SMALL"}, ids[3:]},
		{"one customer's submitted quotes", &orderv1.ListQuotesRequest{CustomerId: "cus_SMALL", Status: quoteSubmitted}, []string{ids[4]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for {
				resp, err := h.client.ListQuotes(erp, tt.req)
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range resp.GetQuotes() {
					got = append(got, q.GetId())
				}
				if resp.GetNextPageToken() == "" {
					break
				}
				tt.req.PageToken = resp.GetNextPageToken()
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
