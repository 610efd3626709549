package millrace

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/millrace/millrace/bench/harness"
)

// scaleSize is one store size of a read-latency-at-scale comparison.
type scaleSize struct {
	name string
	n    int
	dir  string
	ids  []string
	node *node
	res  []harness.Result
}

func closeSizes(sizes []*scaleSize) {
	for _, s := range sizes {
		if s.node != nil {
			s.node.close()
		}
		if s.dir != "" {
			os.RemoveAll(s.dir)
		}
	}
}

// measureScale reads random records of each size in cfg.ScaleRounds
// interleaved rounds, so a burst of outside load hits both sizes alike, and
// prints each size's median p99 and their ratio against ScaleTargetRatio.
// sizes[0] is the small store, sizes[1] the large one.
func measureScale(ctx context.Context, w io.Writer, cfg LoadConfig, sizes []*scaleSize, get func(ctx context.Context, n *node, id string) error) error {
	for r := range cfg.ScaleRounds {
		for _, s := range sizes {
			fmt.Fprintf(cfg.Progress, "round %d/%d: %s (%s)…\n", r+1, cfg.ScaleRounds, s.name, cfg.ScaleDuration)
			n, ids := s.node, s.ids
			res := harness.Run(ctx, harness.Config{Name: s.name, Concurrency: cfg.ScaleConcurrency, Duration: cfg.ScaleDuration, Warmup: time.Second},
				func(ctx context.Context, _ int) error { return get(ctx, n, ids[rand.IntN(len(ids))]) })
			if err := ctx.Err(); err != nil {
				return err
			}
			if res.Errors > 0 || res.Ops == 0 {
				return fmt.Errorf("%s: %d ops, %d errors", s.name, res.Ops, res.Errors)
			}
			s.res = append(s.res, res)
		}
	}

	fmt.Fprintf(w, "%-24s %9s %9s %9s %9s  %s\n", "one-shot", "ops/s", "p50", "p99", "max", "p99 per round")
	median := map[*scaleSize]time.Duration{}
	for _, s := range sizes {
		var p50s, p99s []time.Duration
		var ops, secs float64
		var maxLat time.Duration
		for _, r := range s.res {
			p50s, p99s = append(p50s, r.P50), append(p99s, r.P99)
			ops += float64(r.Ops)
			secs += r.Elapsed.Seconds()
			maxLat = max(maxLat, r.Max)
		}
		rounds := make([]string, len(p99s))
		for i, d := range p99s {
			rounds[i] = round(d).String()
		}
		slices.Sort(p50s)
		slices.Sort(p99s)
		median[s] = p99s[len(p99s)/2]
		fmt.Fprintf(w, "%-24s %9.0f %9s %9s %9s  %v\n", s.name, ops/secs, round(p50s[len(p50s)/2]), round(median[s]), round(maxLat), rounds)
	}
	ratio := float64(median[sizes[1]]) / float64(median[sizes[0]])
	verdict := harness.VerdictPass
	if ratio > ScaleTargetRatio {
		verdict = harness.VerdictBelow
	}
	fmt.Fprintf(w, "p99 ratio %s / %s = %.2f (median of %d rounds; target ≤ %.1f): %s\n",
		count(sizes[1].n), count(sizes[0].n), ratio, cfg.ScaleRounds, ScaleTargetRatio, verdict)
	return nil
}
