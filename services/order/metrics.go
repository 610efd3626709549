package order

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	orderv1 "github.com/millrace/millrace/gen/go/millrace/order/v1"
	"github.com/millrace/millrace/internal/scrape"
	"github.com/millrace/millrace/internal/storage"
)

// The order KPIs operations watch, on /metrics:
//
//   - millrace_order_status_changes_total{from,to,hold_reason}: every
//     committed status change, as the timeline records it. Orders created
//     are from="none"; the order sync success rate is the accepted share of
//     the orders that left PENDING: to="accepted" against to="on_hold" and
//     to="cancelled" from="pending".
//   - millrace_orders_held{hold_reason} and
//     millrace_orders_held_oldest_seconds{hold_reason}: the exception queue
//     of held orders, and how long the one waiting longest has been in it.
//   - millrace_orders_pending and millrace_orders_pending_oldest_seconds:
//     orders whose saga waits, for fulfillment or pricing to answer.
//   - millrace_quote_to_order_seconds: the quote-to-order cycle time, from a
//     quote's creation to its conversion into an order.
//
// The gauges are read from the store when scraped: a scan of the ON_HOLD
// and PENDING entries of the status index, so a scrape costs in proportion
// to the exception backlog, never to the order book.

// statusChange is one committed change of an order's status.
type statusChange struct {
	from, to orderv1.OrderStatus
	hold     orderv1.HoldReason
}

// metrics counts the order service's status changes and reads its backlog
// gauges from the store. A nil *metrics counts nothing.
type metrics struct {
	changes    *prometheus.CounterVec
	quoteCycle prometheus.Histogram
}

// newMetrics registers the order KPIs with reg, reading the backlog from
// db. A nil reg registers nothing and returns nil.
func newMetrics(reg prometheus.Registerer, db *storage.DB, now func() time.Time) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{changes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "millrace_order_status_changes_total",
		Help: "Committed order status changes, by status before (none for a new order) and after, and hold reason (none unless on hold).",
	}, []string{"from", "to", "hold_reason"})}
	m.quoteCycle = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "millrace_quote_to_order_seconds",
		Help: "Quote-to-order cycle time: from a quote's creation to its conversion into an order.",
		// A minute to two months: quotes are converted within the call
		// that creates them by some CRMs, after weeks of negotiation by
		// others.
		Buckets: []float64{60, 600, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 60 * 86400},
	})
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.changes, m.quoteCycle, scrape.NewGauges(descBacklogErrors, readBacklogGauges(db, now), descHeld, descHeldOldest, descPending, descPendingOldest)} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, err
		}
		done = append(done, c)
	}
	return m, nil
}

// quoteConverted records the cycle time of a quote that became an order.
func (m *metrics) quoteConverted(cycle time.Duration) {
	if m == nil {
		return
	}
	m.quoteCycle.Observe(max(cycle, 0).Seconds())
}

// committed counts the status changes of a committed transaction.
func (m *metrics) committed(changes []statusChange) {
	if m == nil {
		return
	}
	for _, c := range changes {
		from := "none"
		if c.from != orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED {
			from = statusKey(c.from)
		}
		m.changes.WithLabelValues(from, statusKey(c.to), holdLabel(c.hold)).Inc()
	}
}

// holdLabel is a hold reason as a label value: "credit_declined", or
// "none".
func holdLabel(h orderv1.HoldReason) string {
	if h == orderv1.HoldReason_HOLD_REASON_UNSPECIFIED {
		return "none"
	}
	return strings.ToLower(strings.TrimPrefix(h.String(), "HOLD_REASON_"))
}

var (
	descHeld = prometheus.NewDesc("millrace_orders_held",
		"Orders ON_HOLD, by hold reason: the exception queue.", []string{"hold_reason"}, nil)
	descHeldOldest = prometheus.NewDesc("millrace_orders_held_oldest_seconds",
		"How long the order held longest, by hold reason, has been on hold (0 when none is).", []string{"hold_reason"}, nil)
	descPending = prometheus.NewDesc("millrace_orders_pending",
		"Orders PENDING: their saga waits for a step (a peer that did not answer, or a restart).", nil, nil)
	descPendingOldest = prometheus.NewDesc("millrace_orders_pending_oldest_seconds",
		"How long the order pending longest has been pending (0 when none is).", nil, nil)
	descBacklogErrors = prometheus.NewDesc("millrace_orders_backlog_read_errors_total",
		"Scrapes whose read of the held and pending orders failed; the backlog gauges are missing from those scrapes.", nil, nil)

	// heldReasons are the hold reasons reported even when no order has
	// them, so that a dashboard's series exist from the start.
	heldReasons = []orderv1.HoldReason{
		orderv1.HoldReason_HOLD_REASON_CREDIT_PENDING,
		orderv1.HoldReason_HOLD_REASON_CREDIT_DECLINED,
		orderv1.HoldReason_HOLD_REASON_INVENTORY_SHORT,
	}
)

// readBacklogGauges emits the held and pending orders' gauges, read from
// db at a scrape.
func readBacklogGauges(db *storage.DB, now func() time.Time) func(scrape.Emit) error {
	return func(emit scrape.Emit) error {
		b, err := readBacklog(db, now())
		if err != nil {
			return err
		}
		for h, q := range b.held {
			emit(descHeld, float64(q.count), holdLabel(h))
			emit(descHeldOldest, q.oldest.Seconds(), holdLabel(h))
		}
		emit(descPending, float64(b.pending.count))
		emit(descPendingOldest, b.pending.oldest.Seconds())
		return nil
	}
}

// queue is a count of orders and the longest time one of them has been in
// its state.
type queue struct {
	count  int
	oldest time.Duration
}

func (q *queue) add(o *orderv1.Order, now time.Time) {
	q.count++
	since := o.GetUpdateTime().AsTime()
	if o.GetUpdateTime() == nil {
		since = o.GetCreateTime().AsTime()
	}
	q.oldest = max(q.oldest, now.Sub(since))
}

// backlog is the exception queue at one moment.
type backlog struct {
	held    map[orderv1.HoldReason]*queue
	pending queue
}

// readBacklog reads the held and pending orders in one read transaction.
func readBacklog(db *storage.DB, now time.Time) (backlog, error) {
	b := backlog{held: map[orderv1.HoldReason]*queue{}}
	for _, h := range heldReasons {
		b.held[h] = &queue{}
	}
	err := (&store{db: db}).view(context.Background(), func(tx txn) error {
		t := tx.(*storeTx)
		for _, status := range []orderv1.OrderStatus{statusOnHold, statusPending} {
			q := scanQuery{kind: listByStatus, parts: []string{statusKey(status)}}
			err := t.scanOrders(q, func(rec *orderRecord, _ position) bool {
				if status == statusPending {
					b.pending.add(rec.o, now)
					return true
				}
				h := rec.o.GetHoldReason()
				if b.held[h] == nil {
					b.held[h] = &queue{}
				}
				b.held[h].add(rec.o, now)
				return true
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return b, err
}
