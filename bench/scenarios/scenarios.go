// Package scenarios is the registry of Millrace benchmark scenarios. A
// scenario registers itself from an init function, naming the ceiling it is
// judged against (see package ceilings) and the share of that ceiling's
// throughput it must reach; millrace-bench runs every registered scenario
// after measuring the ceilings.
package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Scenario is one benchmark of Millrace.
type Scenario struct {
	// Name identifies the scenario in -only and the report.
	Name string
	// Ceiling names the ceiling the scenario is judged against, one of the
	// ceilings.*Name constants.
	Ceiling string
	// TargetPct is the share of the ceiling's throughput, in percent, that the
	// scenario must reach to pass.
	TargetPct float64
	// Concurrency, when above zero, is the number of workers the scenario
	// runs with, whatever -concurrency says: a scenario judged against a
	// ceiling with a fixed number of writers (bolt-batch64) runs as many to
	// compare like with like. Zero means -concurrency.
	Concurrency int
	// Setup starts what the scenario needs (servers, stores, clients) and
	// returns the operation to drive, safe to call from many workers at once,
	// and a cleanup that stops it all. It runs once per benchmark run, before
	// the warm-up.
	Setup func(ctx context.Context) (op func(ctx context.Context, worker int) error, cleanup func(), err error)
}

var (
	mu       sync.Mutex
	registry = map[string]Scenario{}
)

// Register adds s to the registry. Like http.Handle it panics on a scenario
// without a name, ceiling or Setup, or on a name registered twice: both are
// programming errors found the first time the binary starts.
func Register(s Scenario) {
	if s.Name == "" || s.Ceiling == "" || s.Setup == nil {
		panic(fmt.Sprintf("scenarios: Register(%q): Name, Ceiling and Setup are required", s.Name))
	}
	if strings.Contains(s.Name, ",") {
		panic(fmt.Sprintf("scenarios: Register(%q): name contains a comma", s.Name))
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[s.Name]; dup {
		panic(fmt.Sprintf("scenarios: Register(%q): registered twice", s.Name))
	}
	registry[s.Name] = s
}

// All returns the registered scenarios sorted by name.
func All() []Scenario {
	mu.Lock()
	defer mu.Unlock()
	out := make([]Scenario, 0, len(registry))
	for _, s := range registry {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Scenario) int { return strings.Compare(a.Name, b.Name) })
	return out
}
