package millrace

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/millrace/millrace/bench/scenarios"
)

// TestScenarios sets every Millrace scenario up and runs its operation a few
// times, so a scenario that cannot start or whose operation fails is found
// by go test, not halfway through a benchmark run.
func TestScenarios(t *testing.T) {
	ctx := context.Background()
	for _, s := range scenarios.All() {
		t.Run(s.Name, func(t *testing.T) {
			op, cleanup, err := s.Setup(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer cleanup()
			for i := range 5 {
				if err := op(ctx, i); err != nil {
					t.Fatalf("op %d: %v", i, err)
				}
			}
		})
	}
}

// TestOneShots runs both one-shot measurements at a tiny size.
func TestOneShots(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	ctx := context.Background()
	cfg := LoadConfig{Dir: t.TempDir(), BulkCustomers: 2500, BulkClients: 2,
		ScaleSmall: 1000, ScaleLarge: 3000, ScaleRounds: 1, ScaleDuration: 200 * time.Millisecond, ScaleConcurrency: 2}
	var out bytes.Buffer
	if err := RunLoads(ctx, &out, cfg); err != nil {
		t.Fatalf("RunLoads: %v", err)
	}
	if err := RunScale(ctx, &out, cfg); err != nil {
		t.Fatalf("RunScale: %v", err)
	}
	if err := RunOrderScale(ctx, &out, cfg); err != nil {
		t.Fatalf("RunOrderScale: %v", err)
	}
	for _, want := range []string{"batch-upsert-100k-rest", " 2500 ", "get-customer-1k", "get-customer-3k", "p99 ratio 3k / 1k", "get-order-1k", "get-order-3k"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
}
