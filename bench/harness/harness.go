// Package harness is Millrace's closed-loop load generator. Run keeps a fixed
// number of workers each issuing one operation after another, records every
// operation's latency in a per-worker histogram and reports throughput and
// percentiles. Report puts results next to the ceilings they are judged
// against: on a shared, noisy machine only ratios measured in the same run
// mean anything.
package harness

import (
	"context"
	"sync"
	"time"
)

// Config describes one measurement.
type Config struct {
	// Name labels the result.
	Name string
	// Concurrency is the number of workers, each with one operation in flight.
	// Values below 1 mean 1.
	Concurrency int
	// Duration is how long operations are recorded, after the warm-up.
	Duration time.Duration
	// Warmup is how long operations run, unrecorded, before measuring starts,
	// so connection set-up, lazy allocation and CPU frequency ramp-up stay out
	// of the numbers.
	Warmup time.Duration
}

// Result is what Run measured. Latencies are those of successful operations;
// failed ones are only counted.
type Result struct {
	Name        string        `json:"name"`
	Concurrency int           `json:"concurrency"`
	Ops         uint64        `json:"ops"`
	Errors      uint64        `json:"errors"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	Throughput  float64       `json:"ops_per_sec"`
	P50         time.Duration `json:"p50_ns"`
	P90         time.Duration `json:"p90_ns"`
	P99         time.Duration `json:"p99_ns"`
	Max         time.Duration `json:"max_ns"`
	// CPUPerOp is the CPU time the whole process (every core, user and
	// system) used while measuring, per operation that returned nil: what
	// an operation costs beyond waiting, so a change that saves CPU shows
	// even when the machine's noise hides it in the throughput. Zero where
	// it is not measured.
	CPUPerOp time.Duration `json:"cpu_per_op_ns"`
}

// Run drives op from cfg.Concurrency workers until cfg.Warmup+cfg.Duration has
// passed or ctx is done, and returns what it measured. An operation is
// recorded if it started after the warm-up; Ops counts those that returned
// nil, Errors those that did not, and Throughput is Ops per second of Elapsed.
//
// Run starts no operation after the deadline but waits for those in flight,
// and Elapsed runs until the last of them returned, so a slow tail lowers the
// throughput rather than vanishing from it. op gets ctx unchanged and the
// worker's index in [0, Concurrency), so it can keep per-worker state without
// locks.
func Run(ctx context.Context, cfg Config, op func(ctx context.Context, worker int) error) Result {
	n := max(cfg.Concurrency, 1)
	workers := make([]worker, n)
	start := time.Now()
	from := start.Add(cfg.Warmup)
	until := from.Add(cfg.Duration)

	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.hist = newHistogram()
		wg.Go(func() { w.loop(ctx, i, op, from, until) })
	}
	// The CPU clock starts when the warm-up ends.
	cpuFrom := make(chan time.Duration, 1)
	go func() {
		t := time.NewTimer(time.Until(from))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		cpuFrom <- processCPU()
	}()
	wg.Wait()
	elapsed := max(time.Since(from), 0)
	cpu := processCPU() - <-cpuFrom

	hist := newHistogram()
	var errs uint64
	for _, w := range workers {
		hist.merge(w.hist)
		errs += w.errors
	}
	res := Result{
		Name:        cfg.Name,
		Concurrency: n,
		Ops:         hist.total,
		Errors:      errs,
		Elapsed:     elapsed,
		P50:         hist.quantile(0.50),
		P90:         hist.quantile(0.90),
		P99:         hist.quantile(0.99),
		Max:         time.Duration(hist.max),
	}
	if elapsed > 0 {
		res.Throughput = float64(res.Ops) / elapsed.Seconds()
	}
	if res.Ops > 0 && cpu > 0 {
		res.CPUPerOp = cpu / time.Duration(res.Ops)
	}
	return res
}

// worker holds what one worker recorded; only its goroutine touches it until
// Run merges them.
type worker struct {
	hist   *histogram
	errors uint64
}

func (w *worker) loop(ctx context.Context, id int, op func(context.Context, int) error, from, until time.Time) {
	for ctx.Err() == nil {
		begin := time.Now()
		if !begin.Before(until) {
			return
		}
		err := op(ctx, id)
		if begin.Before(from) {
			continue
		}
		if err != nil {
			w.errors++
			continue
		}
		w.hist.record(time.Since(begin))
	}
}
