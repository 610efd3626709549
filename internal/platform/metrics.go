package platform

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"

	"github.com/millrace/millrace/internal/events"
	"github.com/millrace/millrace/internal/storage"
)

// Metrics holds the RED metrics of every RPC and the registry everything
// else in the process registers on.
type Metrics struct {
	Registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	outboxLag     *prometheus.GaugeVec
	outboxPending *prometheus.GaugeVec
	published     *prometheus.CounterVec
	commits       *prometheus.CounterVec
	writes        *prometheus.CounterVec
	commitHeld    *prometheus.HistogramVec
	writeWait     *prometheus.HistogramVec
}

// NewMetrics returns metrics on a fresh registry, with the Go runtime and
// process collectors registered.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "millrace_rpc_requests_total",
			Help: "RPCs handled, by service, method and gRPC code (REST calls included: the gateway calls gRPC).",
		}, []string{"service", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "millrace_rpc_duration_seconds",
			Help:    "Time to handle an RPC, by service and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"service", "method"}),
	}
	m.outboxLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "millrace_outbox_lag_seconds",
		Help: "Age of the oldest event waiting in a service's outbox; grows while the bus is down.",
	}, []string{"store"})
	m.outboxPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "millrace_outbox_pending_events",
		Help: "Events committed but not yet published, per service store.",
	}, []string{"store"})
	m.published = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "millrace_outbox_published_events_total",
		Help: "Events the outbox relay published to the bus, per service store.",
	}, []string{"store"})
	// Store writes: a commit is two fsyncs, so these follow the disk.
	storeBuckets := []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1}
	m.commits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "millrace_store_commits_total",
		Help: "Write transactions committed, per store; writes_total / commits_total is the average group commit.",
	}, []string{"store"})
	m.writes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "millrace_store_writes_total",
		Help: "Writes carried by committed transactions, per store (several per commit under group commit).",
	}, []string{"store"})
	m.commitHeld = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "millrace_store_commit_seconds",
		Help:    "Time a write transaction holds a store's writer, from its start until durable on disk.",
		Buckets: storeBuckets,
	}, []string{"store"})
	m.writeWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "millrace_store_write_seconds",
		Help:    "Time one write takes from its call until durable, queueing for a group commit included.",
		Buckets: storeBuckets,
	}, []string{"store"})
	reg.MustRegister(m.requests, m.duration, m.outboxLag, m.outboxPending, m.published,
		m.commits, m.writes, m.commitHeld, m.writeWait)
	return m
}

// Committed records one store commit (storage.Observer).
func (m *Metrics) Committed(store string, writes int, held time.Duration) {
	m.commits.WithLabelValues(store).Inc()
	m.writes.WithLabelValues(store).Add(float64(writes))
	m.commitHeld.WithLabelValues(store).Observe(held.Seconds())
}

// Waited records one store write (storage.Observer).
func (m *Metrics) Waited(store string, d time.Duration) {
	m.writeWait.WithLabelValues(store).Observe(d.Seconds())
}

var _ storage.Observer = (*Metrics)(nil)

// ObserveOutbox records one outbox relay round.
func (m *Metrics) ObserveOutbox(s events.RelayStats) {
	m.outboxLag.WithLabelValues(s.Store).Set(s.Lag.Seconds())
	if s.Pending >= 0 {
		m.outboxPending.WithLabelValues(s.Store).Set(float64(s.Pending))
	}
	if s.Published > 0 {
		m.published.WithLabelValues(s.Store).Add(float64(s.Published))
	}
}

// ObserveRPC records one finished call.
func (m *Metrics) ObserveRPC(fullMethod string, code codes.Code, d time.Duration) {
	svc, method := splitMethod(fullMethod)
	m.requests.WithLabelValues(svc, method, code.String()).Inc()
	m.duration.WithLabelValues(svc, method).Observe(d.Seconds())
}

func splitMethod(fullMethod string) (string, string) {
	s := strings.TrimPrefix(fullMethod, "/")
	svc, method, _ := strings.Cut(s, "/")
	return svc, method
}

// MetricsHandler serves the registry in the Prometheus text format.
func MetricsHandler(m *Metrics) http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}
