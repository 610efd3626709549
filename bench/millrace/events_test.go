package millrace

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestEventOneShots runs the three event one-shots at a tiny size, so that
// a one-shot that cannot start, loses an event or fails an order is found
// by go test, not halfway through a benchmark run. Verdicts against the
// targets are not checked: at this size and under -race they mean nothing.
func TestEventOneShots(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes and a NATS server")
	}
	cfg := EventsConfig{
		Dir:         t.TempDir(),
		LatencyRate: 50, LatencyWarmup: 100 * time.Millisecond, LatencyDuration: 500 * time.Millisecond,
		FanoutEvents: 20, FanoutRounds: 1, FanoutTimeout: 300 * time.Millisecond,
		BusConcurrency: 4, BusRounds: 1, BusDuration: 300 * time.Millisecond,
	}
	var out bytes.Buffer
	if err := RunEvents(context.Background(), &out, cfg); err != nil {
		t.Fatalf("RunEvents: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"webhook-latency-50", "0 call errors, 0 events missing",
		"webhook-fanout-11-healthy", "webhook-fanout-10+1-hanging", "hanging / all healthy",
		"create-order-local-bus", "create-order-nats-bus", "NATS / in-process",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "ERRORS") {
		t.Errorf("a one-shot had errors:\n%s", out.String())
	}
	t.Log("\n" + out.String())
}

// TestRunEventsUnknown refuses a name that is not an event one-shot
// before starting anything.
func TestRunEventsUnknown(t *testing.T) {
	err := RunEvents(context.Background(), &bytes.Buffer{}, EventsConfig{Only: "webhook-latency,nope"})
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("RunEvents with an unknown name: %v", err)
	}
}
