package scrape

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestGauges checks that the gauges are what the read emits at each scrape,
// and that a failed read counts an error and reports none of the gauges,
// not even those it emitted before failing.
func TestGauges(t *testing.T) {
	queue := prometheus.NewDesc("test_queue", "Items waiting.", []string{"kind"}, nil)
	failures := prometheus.NewDesc("test_queue_read_errors_total", "Failed reads.", nil, nil)
	n, fail := 3.0, false
	g := NewGauges(failures, func(emit Emit) error {
		emit(queue, n, "a")
		if fail {
			return errors.New("store closed")
		}
		return nil
	}, queue)
	reg := prometheus.NewRegistry()
	reg.MustRegister(g)

	want := `
# HELP test_queue Items waiting.
# TYPE test_queue gauge
test_queue{kind="a"} 3
# HELP test_queue_read_errors_total Failed reads.
# TYPE test_queue_read_errors_total counter
test_queue_read_errors_total 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	n, fail = 5, true
	want = `
# HELP test_queue_read_errors_total Failed reads.
# TYPE test_queue_read_errors_total counter
test_queue_read_errors_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Errorf("after a failed read: %v", err)
	}
	fail = false
	want = `
# HELP test_queue Items waiting.
# TYPE test_queue gauge
test_queue{kind="a"} 5
# HELP test_queue_read_errors_total Failed reads.
# TYPE test_queue_read_errors_total counter
test_queue_read_errors_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Errorf("after the store came back: %v", err)
	}
}
