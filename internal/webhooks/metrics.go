package webhooks

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	integrationv1 "github.com/millrace/millrace/gen/go/millrace/integration/v1"
	"github.com/millrace/millrace/internal/scrape"
	"github.com/millrace/millrace/internal/storage"
)

// Results an attempt is counted under.
const (
	resultSuccess     = "success"
	resultRedirect    = "redirect"
	resultClientError = "client_error"
	resultRateLimited = "rate_limited"
	resultServerError = "server_error"
	resultTimeout     = "timeout"
	resultConnection  = "connection_error"
	resultBlocked     = "blocked"
	resultTLS         = "tls_error"
	resultError       = "error"
)

// metrics are the webhook collectors; a nil *metrics records nothing.
type metrics struct {
	attempts *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	ack      *prometheus.HistogramVec
	enqueued prometheus.Counter
	dead     prometheus.Counter
	disabled prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, db *storage.DB, now func() time.Time) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "millrace_webhook_delivery_attempts_total",
			Help: "Webhook delivery attempts, by result (success, redirect, client_error, rate_limited, server_error, timeout, connection_error, blocked, tls_error, error).",
		}, []string{"result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "millrace_webhook_delivery_attempt_duration_seconds",
			Help:    "Time from sending a webhook to its response (or failure), by result.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15},
		}, []string{"result"}),
		ack: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "millrace_webhook_event_ack_seconds",
			Help:    "Time from an event's commit to its webhook being acknowledged with a 2xx, by event type (for example shipment-status latency).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000},
		}, []string{"type"}),
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "millrace_webhook_deliveries_enqueued_total",
			Help: "Deliveries queued: one per event and matching subscription, plus replays.",
		}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "millrace_webhook_dead_letters_total",
			Help: "Deliveries that exhausted their retries and became dead letters.",
		}),
		disabled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "millrace_webhook_subscriptions_disabled_total",
			Help: "Subscriptions disabled automatically after failing without a success for the disable window.",
		}),
	}
	for _, c := range []prometheus.Collector{m.attempts, m.latency, m.ack, m.enqueued, m.dead, m.disabled, scrape.NewGauges(descDeadErrors, readDeadLetters(db, now), descDead, descDeadOldest)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) attempt(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(result).Inc()
	m.latency.WithLabelValues(result).Observe(d.Seconds())
}

func (m *metrics) acked(eventType string, sinceCommit time.Duration) {
	if m == nil || sinceCommit < 0 {
		return
	}
	m.ack.WithLabelValues(eventType).Observe(sinceCommit.Seconds())
}

func (m *metrics) queued(n int) {
	if m != nil && n > 0 {
		m.enqueued.Add(float64(n))
	}
}

func (m *metrics) deadLettered() {
	if m != nil {
		m.dead.Inc()
	}
}

func (m *metrics) autoDisabled() {
	if m != nil {
		m.disabled.Inc()
	}
}

var (
	descDead = prometheus.NewDesc("millrace_webhook_dead_letters",
		"Dead letters waiting for replay: the webhook half of the exception queue.", nil, nil)
	descDeadOldest = prometheus.NewDesc("millrace_webhook_dead_letters_oldest_seconds",
		"How long the oldest dead letter has been waiting (0 when there is none).", nil, nil)
	descDeadErrors = prometheus.NewDesc("millrace_webhook_dead_letters_read_errors_total",
		"Scrapes whose read of the dead letters failed; the dead-letter gauges are missing from those scrapes.", nil, nil)
)

// readDeadLetters emits the dead-letter gauges, read from db at a scrape.
// Dead letter ids sort by time, so the first one is the oldest.
func readDeadLetters(db *storage.DB, now func() time.Time) func(scrape.Emit) error {
	return func(emit scrape.Emit) error {
		var (
			count  int
			oldest time.Duration
		)
		err := db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketDeadLetters)
			count = b.Stats().KeyN
			_, v := b.Cursor().First()
			if v == nil {
				return nil
			}
			dlt := &integrationv1.DeadLetter{}
			if err := storage.UnmarshalProto(v, dlt); err != nil {
				return err
			}
			oldest = max(now().Sub(dlt.GetCreateTime().AsTime()), 0)
			return nil
		})
		if err != nil {
			return err
		}
		emit(descDead, float64(count))
		emit(descDeadOldest, oldest.Seconds())
		return nil
	}
}
