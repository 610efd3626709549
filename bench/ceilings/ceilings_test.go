package ceilings

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/millrace/millrace/bench/harness"
)

// Every ceiling starts servers and workers; none may outlive its call.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestCeilings runs each ceiling briefly and checks that it measured
// something and that nothing failed; how fast is not a test's business.
func TestCeilings(t *testing.T) {
	tests := []struct {
		name            string
		measure         func(context.Context, harness.Config) (harness.Result, error)
		wantConcurrency int
	}{
		{name: GRPCEchoName, measure: GRPCEcho, wantConcurrency: 4},
		{name: HTTPJSONEchoName, measure: HTTPJSONEcho, wantConcurrency: 4},
		{name: BoltSingleCommitName, wantConcurrency: 1, measure: func(ctx context.Context, cfg harness.Config) (harness.Result, error) {
			return BoltSingleCommit(ctx, cfg, t.TempDir())
		}},
		{name: BoltBatch64Name, wantConcurrency: BoltBatchWriters, measure: func(ctx context.Context, cfg harness.Config) (harness.Result, error) {
			return BoltBatch64(ctx, cfg, t.TempDir())
		}},
		{name: BoltGroup64Name, wantConcurrency: BoltBatchWriters, measure: func(ctx context.Context, cfg harness.Config) (harness.Result, error) {
			return BoltGroup64(ctx, cfg, t.TempDir())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := harness.Config{Concurrency: 4, Warmup: 20 * time.Millisecond, Duration: 200 * time.Millisecond}
			res, err := tt.measure(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Name != tt.name {
				t.Errorf("Name = %q, want %q", res.Name, tt.name)
			}
			if res.Concurrency != tt.wantConcurrency {
				t.Errorf("Concurrency = %d, want %d", res.Concurrency, tt.wantConcurrency)
			}
			if res.Ops == 0 || res.Errors != 0 {
				t.Errorf("Ops = %d, Errors = %d: want some ops and no errors", res.Ops, res.Errors)
			}
		})
	}
}
