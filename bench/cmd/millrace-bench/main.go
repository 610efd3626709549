// Command millrace-bench measures the ceilings of Millrace's building blocks
// and then every registered scenario in the same run, and prints each
// scenario's throughput as a share of its ceiling. With -loads, -scale or
// -order-scale it runs the one-shot measurements of package millrace
// instead: a fixed bulk load, and GetCustomer or GetOrder on a large store
// against a small one.
//
//	go run ./bench/cmd/millrace-bench -duration 5s -json bench/results/run.json
//	go run ./bench/cmd/millrace-bench -loads -scale
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/millrace/millrace/bench/ceilings"
	"github.com/millrace/millrace/bench/harness"
	"github.com/millrace/millrace/bench/millrace" // registers the Millrace scenarios; runs the one-shots
	"github.com/millrace/millrace/bench/scenarios"
	"github.com/millrace/millrace/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "millrace-bench:", err)
		os.Exit(1)
	}
}

// config is the command's configuration, from flags.
type config struct {
	Duration    time.Duration
	Warmup      time.Duration
	Concurrency int
	Only        string
	JSON        string
	Dir         string
	Loads       bool
	Scale       bool
	OrderScale  bool
	Events      bool
	CPUProfile  string
	MemProfile  string
}

func parse(args []string, stderr io.Writer) (config, error) {
	cfg := config{Duration: 5 * time.Second, Warmup: time.Second, Concurrency: 32}
	fs := flag.NewFlagSet("millrace-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long each ceiling and scenario is measured")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "how long each runs unrecorded before measuring")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "workers for the RPC ceilings and the scenarios")
	fs.StringVar(&cfg.Only, "only", cfg.Only, "comma-separated ceilings and scenarios to run (a scenario brings its ceiling); empty runs all")
	fs.StringVar(&cfg.JSON, "json", cfg.JSON, "also write the report as JSON to this file")
	fs.StringVar(&cfg.Dir, "dir", cfg.Dir, "directory for the bbolt files (default the system temp dir; must be a real disk for fsync to mean anything)")
	fs.BoolVar(&cfg.Loads, "loads", cfg.Loads, "run the one-shot bulk load (100,000 customers through REST batchUpsert) instead of the ceilings and scenarios")
	fs.BoolVar(&cfg.Scale, "scale", cfg.Scale, "run the one-shot scale check (GetCustomer p99 with 1,000,000 customers against 10,000) instead of the ceilings and scenarios")
	fs.BoolVar(&cfg.OrderScale, "order-scale", cfg.OrderScale, "run the one-shot order scale check (GetOrder p99 with 1,000,000 orders against 10,000) instead of the ceilings and scenarios")
	fs.BoolVar(&cfg.Events, "events", cfg.Events, "run the event one-shots (webhook latency at 200/s, webhook fan-out with a hanging endpoint, CreateOrder on NATS against the in-process bus) instead of the ceilings and scenarios; -only picks among them, -concurrency sets the CreateOrder clients")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", cfg.CPUProfile, "write a CPU profile of the scenarios (not the ceilings) to this file, for go tool pprof")
	fs.StringVar(&cfg.MemProfile, "memprofile", cfg.MemProfile, "write an allocation profile of the scenarios to this file, for go tool pprof -sample_index=alloc_space")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.Duration <= 0 || cfg.Warmup < 0 || cfg.Concurrency < 1 {
		return config{}, errors.New("-duration and -concurrency must be positive, -warmup not negative")
	}
	return cfg, nil
}

// ceiling is one ceiling the command can measure.
type ceiling struct {
	name        string
	concurrency int
	measure     func(context.Context, harness.Config) (harness.Result, error)
}

func allCeilings(cfg config) []ceiling {
	return []ceiling{
		{ceilings.GRPCEchoName, cfg.Concurrency, ceilings.GRPCEcho},
		{ceilings.HTTPJSONEchoName, cfg.Concurrency, ceilings.HTTPJSONEcho},
		{ceilings.BoltSingleCommitName, 1, func(ctx context.Context, hc harness.Config) (harness.Result, error) {
			return ceilings.BoltSingleCommit(ctx, hc, cfg.Dir)
		}},
		{ceilings.BoltBatch64Name, ceilings.BoltBatchWriters, func(ctx context.Context, hc harness.Config) (harness.Result, error) {
			return ceilings.BoltBatch64(ctx, hc, cfg.Dir)
		}},
		{ceilings.BoltGroup64Name, ceilings.BoltBatchWriters, func(ctx context.Context, hc harness.Config) (harness.Result, error) {
			return ceilings.BoltGroup64(ctx, hc, cfg.Dir)
		}},
	}
}

// plan picks what to run: with only empty, everything; otherwise the named
// ceilings and scenarios, plus the ceiling of every named scenario. Order is
// kept, ceilings first.
func plan(cs []ceiling, ss []scenarios.Scenario, only string) ([]ceiling, []scenarios.Scenario, error) {
	known := map[string]bool{}
	for _, c := range cs {
		known[c.name] = true
	}
	for _, s := range ss {
		if !known[s.Ceiling] {
			return nil, nil, fmt.Errorf("scenario %s: unknown ceiling %q", s.Name, s.Ceiling)
		}
	}
	if only == "" {
		return cs, ss, nil
	}
	want := map[string]bool{}
	for name := range strings.SplitSeq(only, ",") {
		if name = strings.TrimSpace(name); name != "" {
			want[name] = true
		}
	}
	var pickedS []scenarios.Scenario
	for _, s := range ss {
		if want[s.Name] {
			pickedS = append(pickedS, s)
			delete(want, s.Name)
			want[s.Ceiling] = true
		}
	}
	var pickedC []ceiling
	for _, c := range cs {
		if want[c.name] {
			pickedC = append(pickedC, c)
			delete(want, c.name)
		}
	}
	if len(want) > 0 {
		var unknown, names []string
		for n := range want {
			unknown = append(unknown, n)
		}
		for _, c := range cs {
			names = append(names, c.name)
		}
		for _, s := range ss {
			names = append(names, s.Name)
		}
		slices.Sort(unknown)
		return nil, nil, fmt.Errorf("-only: unknown %s (known: %s)", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	return pickedC, pickedS, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parse(args, stderr)
	if err != nil {
		return err
	}
	// The whole run, ceilings included, uses the garbage collector setting
	// millrace serve uses, so that every ratio compares like with like.
	gc := app.TuneGC(os.Getenv)
	fmt.Fprintf(stderr, "millrace-bench: duration=%s warmup=%s concurrency=%d only=%q json=%q dir=%q GOMAXPROCS=%d %s; garbage collector: %s\n",
		cfg.Duration, cfg.Warmup, cfg.Concurrency, cfg.Only, cfg.JSON, cfg.Dir, runtime.GOMAXPROCS(0), runtime.Version(), gc)

	if cfg.Loads || cfg.Scale || cfg.OrderScale || cfg.Events {
		return runOneShots(ctx, cfg, stdout, stderr)
	}
	cs, ss, err := plan(allCeilings(cfg), scenarios.All(), cfg.Only)
	if err != nil {
		return err
	}
	report := harness.Report{Command: strings.Join(append([]string{"millrace-bench"}, args...), " "), Started: time.Now()}
	for _, c := range cs {
		fmt.Fprintf(stderr, "measuring ceiling %s (%s)…\n", c.name, cfg.Duration)
		res, err := c.measure(ctx, harness.Config{Name: c.name, Concurrency: c.concurrency, Duration: cfg.Duration, Warmup: cfg.Warmup})
		if err != nil {
			return fmt.Errorf("ceiling %s: %w", c.name, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		report.AddCeiling(res)
	}
	if cfg.CPUProfile != "" && len(ss) > 0 {
		stopProfile, err := startCPUProfile(cfg.CPUProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	var writeMemProfile func() error
	if cfg.MemProfile != "" && len(ss) > 0 {
		w, err := startMemProfile(cfg.MemProfile)
		if err != nil {
			return err
		}
		writeMemProfile = w
	}
	for _, s := range ss {
		fmt.Fprintf(stderr, "running scenario %s (%s)…\n", s.Name, cfg.Duration)
		res, err := runScenario(ctx, s, harness.Config{Name: s.Name, Concurrency: cmp.Or(s.Concurrency, cfg.Concurrency), Duration: cfg.Duration, Warmup: cfg.Warmup})
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s.Name, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		report.AddScenario(res, s.Ceiling, s.TargetPct)
	}
	if writeMemProfile != nil {
		if err := writeMemProfile(); err != nil {
			return err
		}
	}

	if err := report.WriteTable(stdout); err != nil {
		return err
	}
	if cfg.JSON != "" {
		return writeJSON(cfg.JSON, &report)
	}
	return nil
}

// runOneShots runs the fixed-work measurements -loads, -scale and
// -order-scale ask for; they print their own lines.
func runOneShots(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	lc := millrace.LoadConfig{Dir: cfg.Dir, Progress: stderr}
	if cfg.Loads {
		if err := millrace.RunLoads(ctx, stdout, lc); err != nil {
			return fmt.Errorf("-loads: %w", err)
		}
	}
	if cfg.Scale {
		if err := millrace.RunScale(ctx, stdout, lc); err != nil {
			return fmt.Errorf("-scale: %w", err)
		}
	}
	if cfg.OrderScale {
		if err := millrace.RunOrderScale(ctx, stdout, lc); err != nil {
			return fmt.Errorf("-order-scale: %w", err)
		}
	}
	if cfg.Events {
		ec := millrace.EventsConfig{Dir: cfg.Dir, Progress: stderr, Only: cfg.Only, BusConcurrency: cfg.Concurrency}
		if err := millrace.RunEvents(ctx, stdout, ec); err != nil {
			return fmt.Errorf("-events: %w", err)
		}
	}
	return nil
}

func runScenario(ctx context.Context, s scenarios.Scenario, hc harness.Config) (harness.Result, error) {
	op, cleanup, err := s.Setup(ctx)
	if err != nil {
		return harness.Result{}, err
	}
	defer cleanup()
	return harness.Run(ctx, hc, op), nil
}

func writeJSON(path string, r *harness.Report) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// memProfileRate samples about one allocation per 64 KiB allocated:
// enough detail to rank the allocation sites of one scenario.
const memProfileRate = 64 << 10

// startMemProfile creates path (so that a bad path fails before the
// scenarios run), raises the sampling rate, and returns what writes the
// allocations sampled so far into it. The profile counts from the start of
// the process; the ceilings allocate little next to the scenarios.
func startMemProfile(path string) (func() error, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-memprofile: %w", err)
	}
	runtime.MemProfileRate = memProfileRate
	return func() error {
		err := pprof.Lookup("allocs").WriteTo(f, 0)
		err = errors.Join(err, f.Close())
		if err != nil {
			return fmt.Errorf("-memprofile: %w", err)
		}
		return nil
	}, nil
}

// startCPUProfile starts profiling the process's CPU into path and returns
// what stops it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
