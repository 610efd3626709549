// Package scrape is the Prometheus collector of gauges a service reads from
// its store when it is scraped, rather than keeps in memory: the exception
// queues (held orders, dead letters) and their age, which must be right
// after a restart and whichever process changed them.
package scrape

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Emit hands Gauges one gauge value read for desc, with its label values.
type Emit func(desc *prometheus.Desc, value float64, labels ...string)

// Gauges is a prometheus.Collector that calls a read function at every
// scrape. A read that fails adds one to its error counter and reports none
// of the gauges, so a store that cannot be read never looks like an empty
// queue.
type Gauges struct {
	descs  []*prometheus.Desc
	errors *prometheus.Desc
	read   func(Emit) error

	mu       sync.Mutex
	failures float64
}

// NewGauges returns the collector of the gauges descs, read by read; errors
// describes the counter of failed reads.
func NewGauges(errors *prometheus.Desc, read func(Emit) error, descs ...*prometheus.Desc) *Gauges {
	return &Gauges{descs: descs, errors: errors, read: read}
}

// Describe implements prometheus.Collector.
func (g *Gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range g.descs {
		ch <- d
	}
	ch <- g.errors
}

// Collect implements prometheus.Collector.
func (g *Gauges) Collect(ch chan<- prometheus.Metric) {
	var read []prometheus.Metric
	err := g.read(func(desc *prometheus.Desc, value float64, labels ...string) {
		read = append(read, prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, value, labels...))
	})
	g.mu.Lock()
	if err != nil {
		g.failures++
	}
	failures := g.failures
	g.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(g.errors, prometheus.CounterValue, failures)
	if err != nil {
		return
	}
	for _, m := range read {
		ch <- m
	}
}
