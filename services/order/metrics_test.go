package order

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
)

// withMetrics registers the order KPIs with reg.
func withMetrics(reg prometheus.Registerer) harnessOption {
	return func(o *Options) { o.Metrics = reg }
}

// TestStatusChangeMetrics checks millrace_order_status_changes_total: one
// count per committed status change, labelled as the timeline records it;
// none for a create that returned an existing order, so fifty concurrent
// creates under one CRM reference count one new order.
func TestStatusChangeMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, withMetrics(reg))

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := h.client.CreateOrder(erp, &orderv1.CreateOrderRequest{Order: newOrder("cus_ACME", ref("KPI-1"), line("VALVE-100", "1", "EA"))}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// 1 × PUMP over cus_SMALL's limit: declined, on hold.
	held := h.createOrder(erp, newOrder("cus_SMALL", ref("KPI-2"), line("PUMP-200", "1", "EA")))
	if held.GetStatus() != statusOnHold || held.GetHoldReason() != holdCreditDeclined {
		t.Fatalf("order for cus_SMALL is %s/%s, want ON_HOLD/CREDIT_DECLINED", held.GetStatus(), held.GetHoldReason())
	}

	want := `
# HELP millrace_order_status_changes_total Committed order status changes, by status before (none for a new order) and after, and hold reason (none unless on hold).
# TYPE millrace_order_status_changes_total counter
millrace_order_status_changes_total{from="none",hold_reason="none",to="pending"} 2
millrace_order_status_changes_total{from="pending",hold_reason="credit_declined",to="on_hold"} 1
millrace_order_status_changes_total{from="pending",hold_reason="none",to="accepted"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "millrace_order_status_changes_total"); err != nil {
		t.Error(err)
	}
	// The timeline holds the same changes the counter counted.
	tl, err := h.client.GetOrderTimeline(erp, &orderv1.GetOrderTimelineRequest{Id: held.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tl.GetEntries()); n != 2 {
		t.Errorf("timeline of the held order has %d entries, want 2 (created, held)", n)
	}
}

// TestBacklogMetrics checks the exception-queue gauges: held orders by
// reason and pending orders, each with the time the longest-waiting one
// has spent in its state, read from the store at scrape time, so that they
// are right after a restart too.
func TestBacklogMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, withMetrics(reg))

	h.createOrder(erp, newOrder("cus_SMALL", ref("HELD-1"), line("PUMP-200", "1", "EA")))
	h.clock.Advance(10 * time.Minute)
	h.createOrder(erp, newOrder("cus_SMALL", ref("HELD-2"), line("PUMP-200", "1", "EA")))
	h.inv.setDown(true)
	h.clock.Advance(5 * time.Minute)
	pending := h.createOrder(erp, newOrder("cus_ACME", ref("PEND-1"), line("VALVE-100", "1", "EA")))
	if pending.GetStatus() != statusPending {
		t.Fatalf("with fulfillment down the order is %s, want PENDING", pending.GetStatus())
	}
	h.createOrder(erp, newOrder("cus_ACME", ref("OK-0"), line("GASKET-7", "1", "EA"))) // pending as well
	h.clock.Advance(time.Minute)

	want := `
# HELP millrace_orders_held Orders ON_HOLD, by hold reason: the exception queue.
# TYPE millrace_orders_held gauge
millrace_orders_held{hold_reason="credit_declined"} 2
millrace_orders_held{hold_reason="credit_pending"} 0
millrace_orders_held{hold_reason="inventory_short"} 0
# HELP millrace_orders_held_oldest_seconds How long the order held longest, by hold reason, has been on hold (0 when none is).
# TYPE millrace_orders_held_oldest_seconds gauge
millrace_orders_held_oldest_seconds{hold_reason="credit_declined"} 960
millrace_orders_held_oldest_seconds{hold_reason="credit_pending"} 0
millrace_orders_held_oldest_seconds{hold_reason="inventory_short"} 0
# HELP millrace_orders_pending Orders PENDING: their saga waits for a step (a peer that did not answer, or a restart).
# TYPE millrace_orders_pending gauge
millrace_orders_pending 2
# HELP millrace_orders_pending_oldest_seconds How long the order pending longest has been pending (0 when none is).
# TYPE millrace_orders_pending_oldest_seconds gauge
millrace_orders_pending_oldest_seconds 60
`
	names := []string{"millrace_orders_held", "millrace_orders_held_oldest_seconds", "millrace_orders_pending", "millrace_orders_pending_oldest_seconds"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// After a restart on the same store, with a new registry, the gauges
	// are the same: they come from the store, not from memory.
	reg2 := prometheus.NewRegistry()
	h.restart(withMetrics(reg2))
	if err := testutil.GatherAndCompare(reg2, strings.NewReader(want), names...); err != nil {
		t.Errorf("after a restart: %v", err)
	}

	// Fulfillment back: the re-validator accepts the pending orders and the
	// queue empties.
	h.inv.setDown(false)
	h.waitStatus(pending.GetId(), statusAccepted, 0, 5*time.Second)
	waitFor(t, 5*time.Second, "no order pending", func() bool {
		return testutil.ToFloat64(gaugeOf(t, reg2, "millrace_orders_pending")) == 0
	})
}

// gaugeOf gathers one unlabelled metric from reg as a collector for
// testutil.ToFloat64.
func gaugeOf(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: "copy"}, func() float64 { return mf.GetMetric()[0].GetGauge().GetValue() })
		}
	}
	t.Fatalf("metric %s not gathered", name)
	return nil
}

// TestBacklogReadErrorCounts checks that a scrape whose store read fails
// counts the failure and leaves the gauges out rather than reporting
// zeros that look like an empty queue.
func TestBacklogReadErrorCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, withMetrics(reg))
	h.createOrder(erp, newOrder("cus_SMALL", ref("HELD-1"), line("PUMP-200", "1", "EA")))
	h.stop() // the store is closed: every read fails

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if got["millrace_orders_backlog_read_errors_total"] != 1 {
		t.Errorf("read errors = %v, want 1", got["millrace_orders_backlog_read_errors_total"])
	}
	for _, name := range []string{"millrace_orders_held", "millrace_orders_pending"} {
		if _, ok := got[name]; ok {
			t.Errorf("%s reported although the store could not be read", name)
		}
	}
}

// TestQuoteToOrderMetric checks millrace_quote_to_order_seconds: one
// observation per quote converted, of the time from the quote's creation,
// and none for a repeated conversion that returns the same order.
func TestQuoteToOrderMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, withMetrics(reg))
	q := h.approvedQuote(newQuote("cus_ACME", 30*24*time.Hour, line("VALVE-100", "2", "EA")))
	h.clock.Advance(3 * 24 * time.Hour)
	for range 2 {
		if _, err := h.client.ConvertQuote(erp, &orderv1.ConvertQuoteRequest{Id: q.GetId(), ExternalRef: ref("Q2O-1")}); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "millrace_quote_to_order_seconds" {
			continue
		}
		hist := mf.GetMetric()[0].GetHistogram()
		if hist.GetSampleCount() != 1 || hist.GetSampleSum() != 3*24*3600 {
			t.Errorf("quote-to-order: %d observations summing to %v s, want 1 of %d s", hist.GetSampleCount(), hist.GetSampleSum(), 3*24*3600)
		}
		return
	}
	t.Fatal("millrace_quote_to_order_seconds not gathered")
}
