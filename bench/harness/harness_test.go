package harness

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name        string
		concurrency int
		failEvery   int64 // every n-th call fails; 0 never
	}{
		{name: "one worker", concurrency: 1},
		{name: "many workers", concurrency: 8},
		{name: "zero concurrency means one", concurrency: 0},
		{name: "every third op fails", concurrency: 4, failEvery: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls, fails atomic.Int64
			seen := make([]atomic.Bool, max(tt.concurrency, 1))
			cfg := Config{Name: tt.name, Concurrency: tt.concurrency, Duration: 100 * time.Millisecond}
			res := Run(context.Background(), cfg, func(ctx context.Context, worker int) error {
				seen[worker].Store(true)
				time.Sleep(time.Millisecond)
				if n := calls.Add(1); tt.failEvery > 0 && n%tt.failEvery == 0 {
					fails.Add(1)
					return errors.New("boom")
				}
				return nil
			})
			if res.Name != tt.name {
				t.Errorf("Name = %q, want %q", res.Name, tt.name)
			}
			if res.Ops+res.Errors != uint64(calls.Load()) {
				t.Errorf("Ops+Errors = %d+%d, want %d calls", res.Ops, res.Errors, calls.Load())
			}
			if res.Errors != uint64(fails.Load()) {
				t.Errorf("Errors = %d, want %d", res.Errors, fails.Load())
			}
			if res.Ops == 0 || res.Throughput <= 0 {
				t.Errorf("Ops = %d, Throughput = %v, want both > 0", res.Ops, res.Throughput)
			}
			if res.P50 < time.Millisecond || res.P50 > res.P99 || res.P99 > res.Max {
				t.Errorf("P50 %v, P99 %v, Max %v: want 1ms <= P50 <= P99 <= Max", res.P50, res.P99, res.Max)
			}
			for i := range seen {
				if !seen[i].Load() {
					t.Errorf("worker %d never ran", i)
				}
			}
			// Generous bounds: the race detector and a shared machine are slow,
			// but an op takes ~1ms so Run must stop close to its deadline.
			if res.Elapsed < cfg.Duration || res.Elapsed > cfg.Duration+time.Second {
				t.Errorf("Elapsed = %v, want about %v", res.Elapsed, cfg.Duration)
			}
		})
	}
}

func TestRunWarmupIsNotRecorded(t *testing.T) {
	var calls atomic.Int64
	cfg := Config{Concurrency: 2, Warmup: 100 * time.Millisecond, Duration: 50 * time.Millisecond}
	start := time.Now()
	res := Run(context.Background(), cfg, func(context.Context, int) error {
		calls.Add(1)
		time.Sleep(time.Millisecond)
		return nil
	})
	if took := time.Since(start); took < cfg.Warmup+cfg.Duration {
		t.Errorf("Run took %v, want at least warm-up plus duration %v", took, cfg.Warmup+cfg.Duration)
	}
	if res.Ops >= uint64(calls.Load()) {
		t.Errorf("Ops = %d of %d calls, want warm-up calls left out", res.Ops, calls.Load())
	}
	if res.Elapsed > cfg.Duration+time.Second {
		t.Errorf("Elapsed = %v, want about %v (warm-up excluded)", res.Elapsed, cfg.Duration)
	}
}

func TestRunStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := Run(ctx, Config{Concurrency: 4, Duration: time.Hour}, func(ctx context.Context, _ int) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
			return nil
		}
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Run took %v after its context ended", took)
	}
	if res.Ops == 0 {
		t.Errorf("Ops = 0, want the ops before the context ended")
	}
}

// TestRunMeasuresCPUPerOp: an operation that burns CPU shows it, one that
// sleeps shows next to nothing.
func TestRunMeasuresCPUPerOp(t *testing.T) {
	if processCPU() == 0 {
		t.Skip("process CPU time is not measured on this platform")
	}
	cfg := Config{Name: "cpu", Concurrency: 1, Duration: 200 * time.Millisecond}
	spin := func(context.Context, int) error {
		for end := time.Now().Add(2 * time.Millisecond); time.Now().Before(end); {
		}
		return nil
	}
	busy := Run(context.Background(), cfg, spin)
	// Spinning 2 ms of wall time costs about 2 ms of CPU; a loaded machine
	// can take the core away for part of it, so only a floor is safe.
	if busy.CPUPerOp < time.Millisecond {
		t.Errorf("spinning 2ms per op: CPUPerOp = %v, want at least 1ms", busy.CPUPerOp)
	}
	idle := Run(context.Background(), cfg, func(context.Context, int) error {
		time.Sleep(2 * time.Millisecond)
		return nil
	})
	if idle.CPUPerOp >= busy.CPUPerOp/2 {
		t.Errorf("sleeping 2ms per op: CPUPerOp = %v, want well below spinning's %v", idle.CPUPerOp, busy.CPUPerOp)
	}
}
