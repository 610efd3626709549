package order

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"github.com/millrace/millrace/internal/apierr"
)

// crashAt returns a failpoint that "kills the process" at one step.
func crashAt(step string) harnessOption {
	return func(o *Options) {
		o.Failpoint = func(s string) error {
			if s == step {
				return errInjected
			}
			return nil
		}
	}
}

// TestSagaResumesAfterCrash stops the saga at every step (before it, and
// after its remote call but before its outcome is persisted), restarts the
// service on the same store file, and checks that the order is accepted
// with exactly one stock reservation and one credit reservation.
func TestSagaResumesAfterCrash(t *testing.T) {
	steps := []struct {
		step      string
		fromQuote bool
	}{
		{StepReserve, false}, {StepReserve + ".done", false},
		{StepCredit, false}, {StepCredit + ".done", false},
		{StepAccept, false},
		{StepPrice, true}, {StepPrice + ".done", true},
		{StepReserve, true}, {StepReserve + ".done", true},
		{StepCredit, true}, {StepCredit + ".done", true},
		{StepAccept, true},
	}
	for _, tt := range steps {
		name := "direct order, crash at " + tt.step
		if tt.fromQuote {
			name = "converted quote, crash at " + tt.step
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, crashAt(tt.step))
			var (
				orderID string
				quote   *orderv1.Quote
			)
			if tt.fromQuote {
				q := newQuote("cus_ACME", 7*24*time.Hour, line("VALVE-100", "3", "EA"))
				q.HoldStock = true
				quote = h.approvedQuote(q)
				_, err := h.client.ConvertQuote(erp, &orderv1.ConvertQuoteRequest{Id: quote.GetId(), ExternalRef: ref("CRASH")})
				wantCode(t, err, codes.Internal, apierr.ReasonInternal)
			} else {
				_, err := h.client.CreateOrder(erp, &orderv1.CreateOrderRequest{Order: newOrder("cus_ACME", ref("CRASH"), line("VALVE-100", "3", "EA"))})
				wantCode(t, err, codes.Internal, apierr.ReasonInternal)
			}
			lr, err := h.client.ListOrders(erp, &orderv1.ListOrdersRequest{ExternalRefSystem: "salesforce", ExternalRefId: "CRASH"})
			if err != nil || len(lr.GetOrders()) != 1 {
				t.Fatalf("the crashed order is not stored: %v %v", lr.GetOrders(), err)
			}
			orderID = lr.GetOrders()[0].GetId()
			if s := lr.GetOrders()[0].GetStatus(); s != statusPending {
				t.Fatalf("after the crash the order is %s, want PENDING", s)
			}

			h.restart() // a new process on the same file, without the failpoint
			o := h.waitStatus(orderID, statusAccepted, 0, 5*time.Second)

			calls, created := h.inv.counts(orderID)
			if created != 1 {
				t.Errorf("stock reservations placed: %d (calls %d), want 1", created, calls)
			}
			ccalls, ccreated, _ := h.credit.counts(orderID)
			if ccreated != 1 {
				t.Errorf("credit reservations: %d (calls %d), want 1", ccreated, ccalls)
			}
			if tt.step == StepReserve+".done" && calls != 2 {
				t.Errorf("reserve calls %d: the step should have been asked again after the crash", calls)
			}
			if tt.step == StepCredit+".done" && ccalls != 2 {
				t.Errorf("credit calls %d: the step should have been asked again after the crash", ccalls)
			}
			if o.GetReservationId() == "" || o.GetLines()[0].GetSiteId() == "" {
				t.Errorf("accepted order lacks its reservation or site: %v", o)
			}
			if got := h.eventTypes(orderSubject(orderID)); !slices.Equal(got, []string{"OrderStatusChanged", "OrderAccepted", "OrderStatusChanged"}) {
				t.Errorf("events %v", got)
			}
			if tt.fromQuote {
				hold := h.inv.active(quote.GetId())
				if hold != nil {
					t.Errorf("the quote's soft hold %s is still active", hold.GetId())
				}
				if n := h.inv.releasedCount(quote.GetReservationId()); n != 1 {
					t.Errorf("soft hold released %d times, want 1", n)
				}
			}
			tl := h.timeline(orderID)
			var to []orderv1.OrderStatus
			for _, e := range tl {
				to = append(to, e.GetToStatus())
			}
			if !slices.Equal(to, []orderv1.OrderStatus{statusPending, statusAccepted}) {
				t.Errorf("timeline %v, want PENDING then ACCEPTED", to)
			}
		})
	}
}

// TestSagaFailureCompensates covers steps that fail for good in the
// background: the order is cancelled with a reason naming the line, and
// what it took is released.
func TestSagaFailureCompensates(t *testing.T) {
	t.Run("a converted quote re-priced after it expired", func(t *testing.T) {
		h := newHarness(t)
		q := newQuote("cus_ACME", time.Hour, line("VALVE-100", "4", "EA"), line("GASKET-7", "8", "EA"))
		q.HoldStock = true
		quote := h.approvedQuote(q)
		h.pricing.setDown(true) // irrelevant while the quote is valid…
		h.inv.setDown(true)     // …but fulfillment keeps the saga from finishing
		cr, err := h.client.ConvertQuote(erp, &orderv1.ConvertQuoteRequest{Id: quote.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		id := cr.GetOrder().GetId()
		if cr.GetOrder().GetStatus() != statusPending {
			t.Fatalf("status %s, want PENDING", cr.GetOrder().GetStatus())
		}
		// The saga is stuck at the reserve step; put it back to the price
		// step's situation: the quote expires and the price changes.
		h.setStep(id, StepPrice)
		h.clock.Advance(2 * time.Hour)
		h.pricing.setPrice("GASKET-7", "0.15")
		h.pricing.setDown(false)
		h.inv.setDown(false)
		h.run()
		o := h.waitStatus(id, statusCancelled, 0, 5*time.Second)
		tl := h.timeline(id)
		last := tl[len(tl)-1]
		if last.GetActor() != "system" || !strings.Contains(last.GetReason(), "order.lines[1]") || !strings.Contains(last.GetReason(), ReasonPriceChanged) {
			t.Errorf("cancellation entry %v does not name the line", last)
		}
		if o.GetReservationId() != "" || h.inv.active(id) != nil {
			t.Error("a reservation was placed for a failed order")
		}
		waitFor(t, 5*time.Second, "the quote's soft hold to be released", func() bool { return h.inv.active(quote.GetId()) == nil })
		// Credit granted while fulfillment was down is given back with the
		// cancellation; the release follows the commit that cancels.
		waitFor(t, 5*time.Second, "the cancelled order's credit to be released", func() bool { return !h.credit.holds(id) })
		if got := h.eventTypes(orderSubject(id)); !slices.Contains(got, "OrderCancelled") {
			t.Errorf("events %v lack OrderCancelled", got)
		}
	})

	t.Run("a direct order whose product was discontinued while pricing was down", func(t *testing.T) {
		h := newHarness(t)
		h.pricing.setDown(true)
		o := h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "1", "EA"), line("PUMP-200", "1", "EA")))
		if o.GetStatus() != statusPending {
			t.Fatalf("status %s", o.GetStatus())
		}
		h.pricing.mu.Lock()
		h.pricing.status["PUMP-200"] = 3 // DISCONTINUED
		h.pricing.mu.Unlock()
		h.pricing.setDown(false)
		h.run()
		h.waitStatus(o.GetId(), statusCancelled, 0, 5*time.Second)
		tl := h.timeline(o.GetId())
		if r := tl[len(tl)-1].GetReason(); !strings.Contains(r, "order.lines[1].sku") || !strings.Contains(r, "DISCONTINUED") {
			t.Errorf("reason %q", r)
		}
	})
}

// setStep rewrites an order's saga step, as if it had stopped there.
func (h *harness) setStep(id, step string) {
	h.t.Helper()
	err := h.srv.core.repo.update(t0ctx, func(tx txn) error {
		rec, err := tx.order(id)
		if err != nil {
			return err
		}
		old := cloneRecord(rec)
		rec.st.Step = step
		return tx.putOrder(old, rec)
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

func TestCancelOrder(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(h *harness) string // returns the order id
		// reservationReleased and creditReleased are the releases the
		// peers saw once everything settled.
		reservationReleased, creditReleased int
		during                              func(h *harness)
	}{
		{
			name: "accepted order releases stock and credit",
			prepare: func(h *harness) string {
				return h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "2", "EA"))).GetId()
			},
			reservationReleased: 1, creditReleased: 1,
		},
		{
			name: "credit-declined order releases its stock",
			prepare: func(h *harness) string {
				return h.createOrder(erp, newOrder("cus_SMALL", nil, line("PUMP-200", "1", "EA"))).GetId()
			},
			reservationReleased: 1,
		},
		{
			name: "accepted order with fulfillment down: released later",
			prepare: func(h *harness) string {
				id := h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "2", "EA"))).GetId()
				h.inv.setDown(true)
				return id
			},
			during: func(h *harness) {
				if len(h.owed()) != 1 {
					h.t.Errorf("owed %v, want the reservation", h.owed())
				}
				h.inv.setDown(false)
				h.run()
				waitFor(h.t, 5*time.Second, "the owed release to be paid", func() bool { return len(h.owed()) == 0 })
			},
			reservationReleased: 1, creditReleased: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			id := tt.prepare(h)
			resp, err := h.client.CancelOrder(as("crm"), &orderv1.CancelOrderRequest{Id: id, Reason: "customer changed their mind"})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetOrder().GetStatus() != statusCancelled {
				t.Fatalf("status %s", resp.GetOrder().GetStatus())
			}
			if tt.during != nil {
				tt.during(h)
			}
			o := h.getOrder(id)
			if got := h.inv.releasedCount(o.GetReservationId()); got != tt.reservationReleased {
				t.Errorf("reservation released %d times, want %d", got, tt.reservationReleased)
			}
			if _, _, got := h.credit.counts(id); got != tt.creditReleased {
				t.Errorf("credit released %d times, want %d", got, tt.creditReleased)
			}
			if h.inv.active(id) != nil || h.credit.holds(id) {
				t.Error("something is still held for a cancelled order")
			}
			tl := h.timeline(id)
			last := tl[len(tl)-1]
			if last.GetToStatus() != statusCancelled || last.GetActor() != "key_crm" || !strings.Contains(last.GetReason(), "customer changed their mind") {
				t.Errorf("last timeline entry %v", last)
			}
			if got := h.eventTypes(orderSubject(id)); !slices.Contains(got, "OrderCancelled") {
				t.Errorf("events %v lack OrderCancelled", got)
			}
			// Cancelling again answers with the cancelled order.
			again, err := h.client.CancelOrder(erp, &orderv1.CancelOrderRequest{Id: id})
			if err != nil || again.GetOrder().GetStatus() != statusCancelled {
				t.Errorf("second cancel: %v %v", again.GetOrder().GetStatus(), err)
			}
			if n := len(h.timeline(id)); n != len(tl) {
				t.Errorf("second cancel added timeline entries: %d → %d", len(tl), n)
			}
		})
	}

	t.Run("a pending order whose reservation may exist", func(t *testing.T) {
		h := newHarness(t, crashAt(StepReserve+".done"))
		_, err := h.client.CreateOrder(erp, &orderv1.CreateOrderRequest{Order: newOrder("cus_ACME", ref("PROBE"), line("VALVE-100", "5", "EA"))})
		wantCode(t, err, codes.Internal, "")
		lr, _ := h.client.ListOrders(erp, &orderv1.ListOrdersRequest{ExternalRefSystem: "salesforce", ExternalRefId: "PROBE"})
		id := lr.GetOrders()[0].GetId()
		if h.inv.active(id) == nil {
			t.Fatal("the crash should have left a reservation fulfillment knows and the order does not")
		}
		if _, err := h.client.CancelOrder(erp, &orderv1.CancelOrderRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		if h.inv.active(id) != nil {
			t.Error("the reservation placed before the crash survived the cancellation")
		}
		if _, created := h.inv.counts(id); created != 1 {
			t.Errorf("reservations placed %d, want 1", created)
		}
	})

	t.Run("shipped orders cannot be cancelled", func(t *testing.T) {
		h := newHarness(t)
		id := h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "2", "EA"))).GetId()
		h.ship(id, "shp_1", 0, "1", "EA")
		_, err := h.client.CancelOrder(erp, &orderv1.CancelOrderRequest{Id: id})
		st := wantCode(t, err, codes.FailedPrecondition, ReasonInvalidTransition)
		if m := errorMeta(st); m["from"] != "PARTIALLY_SHIPPED" || m["to"] != "CANCELLED" {
			t.Errorf("meta %v", m)
		}
		if h.inv.releasedCount(h.getOrder(id).GetReservationId()) != 0 {
			t.Error("a refused cancel released stock")
		}
	})
}

func TestReleaseOrder(t *testing.T) {
	ops := as("ops", "x-test-key", "key_ops_1", "x-correlation-id", "corr-release")
	tests := []struct {
		name    string
		order   *orderv1.Order
		hold    orderv1.HoldReason
		fix     func(h *harness)
		want    orderv1.OrderStatus
		reason  string // error reason when the release is refused
		message string
	}{
		{
			name:  "stock arrived",
			order: newOrder("cus_ACME", nil, line("PUMP-200", "12", "EA")),
			hold:  holdInventoryShort,
			fix:   func(h *harness) { h.inv.setStock("PUMP-200", "20") },
			want:  statusAccepted,
		},
		{
			name:  "credit limit raised",
			order: newOrder("cus_SMALL", nil, line("PUMP-200", "1", "EA")),
			hold:  holdCreditDeclined,
			fix:   func(h *harness) { h.credit.setLimit("cus_SMALL", "1000") },
			want:  statusAccepted,
		},
		{
			name:   "still over the limit",
			order:  newOrder("cus_SMALL", nil, line("PUMP-200", "1", "EA")),
			hold:   holdCreditDeclined,
			reason: ReasonReleaseStillBlocked,
		},
		{
			name:  "stock arrived but credit is then declined",
			order: newOrder("cus_SMALL", nil, line("PUMP-200", "12", "EA")),
			hold:  holdInventoryShort,
			fix:   func(h *harness) { h.inv.setStock("PUMP-200", "20") },
			want:  statusOnHold,
		},
		{
			name:    "credit pending cannot be released by hand",
			order:   newOrder("cus_ACME", nil, line("VALVE-100", "1", "EA")),
			hold:    holdCreditPending,
			reason:  ReasonCreditNotValidated,
			message: "credit validation has not completed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.hold == holdCreditPending {
				h.credit.setDown(true)
			}
			o := h.createOrder(erp, tt.order)
			if o.GetStatus() != statusOnHold || o.GetHoldReason() != tt.hold {
				t.Fatalf("created %s/%s, want ON_HOLD/%s", o.GetStatus(), o.GetHoldReason(), tt.hold)
			}
			if tt.fix != nil {
				tt.fix(h)
			}
			// crm keys may not release: the permission table says so.
			_, err := h.client.ReleaseOrder(as("crm"), &orderv1.ReleaseOrderRequest{Id: o.GetId()})
			wantCode(t, err, codes.PermissionDenied, apierr.ReasonPermissionDenied)

			before := len(h.timeline(o.GetId()))
			resp, err := h.client.ReleaseOrder(ops, &orderv1.ReleaseOrderRequest{Id: o.GetId(), Reason: "checked with sales"})
			if tt.reason != "" {
				st := wantCode(t, err, codes.FailedPrecondition, tt.reason)
				if !strings.Contains(st.Message(), tt.message) {
					t.Errorf("message %q, want it to contain %q", st.Message(), tt.message)
				}
				if got := h.getOrder(o.GetId()); got.GetStatus() != statusOnHold || got.GetHoldReason() != tt.hold {
					t.Errorf("a refused release changed the order to %s/%s", got.GetStatus(), got.GetHoldReason())
				}
				if n := len(h.timeline(o.GetId())); n != before {
					t.Errorf("a refused release added %d timeline entries", n-before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetOrder().GetStatus() != tt.want {
				t.Fatalf("released to %s/%s, want %s", resp.GetOrder().GetStatus(), resp.GetOrder().GetHoldReason(), tt.want)
			}
			tl := h.timeline(o.GetId())[before:]
			if len(tl) < 2 {
				t.Fatalf("timeline after release %v", tl)
			}
			rel := tl[0]
			if rel.GetFromStatus() != statusOnHold || rel.GetToStatus() != statusPending || rel.GetActor() != "key_ops_1" ||
				rel.GetCorrelationId() != "corr-release" || !strings.Contains(rel.GetReason(), "checked with sales") {
				t.Errorf("release entry %v", rel)
			}
			if next := tl[1]; next.GetActor() != "system" || next.GetToStatus() != tt.want {
				t.Errorf("entry after release %v", next)
			}
			if got := h.eventTypes(orderSubject(o.GetId())); !slices.Contains(got, "OrderReleased") {
				t.Errorf("events %v lack OrderReleased", got)
			}
		})
	}

	t.Run("an order not on hold", func(t *testing.T) {
		h := newHarness(t)
		o := h.createOrder(erp, newOrder("cus_ACME", nil, line("VALVE-100", "1", "EA")))
		_, err := h.client.ReleaseOrder(ops, &orderv1.ReleaseOrderRequest{Id: o.GetId()})
		st := wantCode(t, err, codes.FailedPrecondition, ReasonInvalidTransition)
		if m := errorMeta(st); m["from"] != "ACCEPTED" {
			t.Errorf("meta %v", m)
		}
	})

	t.Run("fulfillment down while releasing stock", func(t *testing.T) {
		h := newHarness(t)
		o := h.createOrder(erp, newOrder("cus_ACME", nil, line("PUMP-200", "12", "EA")))
		h.inv.setDown(true)
		_, err := h.client.ReleaseOrder(ops, &orderv1.ReleaseOrderRequest{Id: o.GetId()})
		wantCode(t, err, codes.Unavailable, apierr.ReasonUnavailable)
		if got := h.getOrder(o.GetId()); got.GetHoldReason() != holdInventoryShort {
			t.Errorf("hold %s", got.GetHoldReason())
		}
	})
}
