package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"
)

// Verdicts of a scenario in a Report.
const (
	VerdictPass      = "PASS"       // throughput reached TargetPct of its ceiling
	VerdictBelow     = "BELOW"      // throughput fell short of TargetPct
	VerdictErrors    = "ERRORS"     // some operations failed, so the numbers are void
	VerdictNoCeiling = "NO-CEILING" // the ceiling was not measured in this run
)

// Report collects the ceilings and scenario results of one run and prints
// them as a table or JSON. The zero value is ready to use.
type Report struct {
	// Command and Started are copied into the JSON so a result file says how
	// and when it was made.
	Command string
	Started time.Time

	ceilings  []Result
	scenarios []Judged
}

// Judged is a scenario's Result set against its ceiling. Ratio is the
// scenario's throughput as a percentage of the ceiling's.
type Judged struct {
	Result
	Ceiling           string  `json:"ceiling"`
	CeilingThroughput float64 `json:"ceiling_ops_per_sec"`
	RatioPct          float64 `json:"ratio_pct"`
	TargetPct         float64 `json:"target_pct"`
	Verdict           string  `json:"verdict"`
}

// AddCeiling adds a ceiling; scenarios name it by its Result.Name.
func (r *Report) AddCeiling(res Result) {
	r.ceilings = append(r.ceilings, res)
}

// AddScenario judges res against the ceiling of that name, which must have
// been added before, and adds it.
func (r *Report) AddScenario(res Result, ceiling string, targetPct float64) Judged {
	j := Judged{Result: res, Ceiling: ceiling, TargetPct: targetPct, Verdict: VerdictNoCeiling}
	for _, c := range r.ceilings {
		if c.Name != ceiling || c.Throughput <= 0 {
			continue
		}
		j.CeilingThroughput = c.Throughput
		j.RatioPct = 100 * res.Throughput / c.Throughput
		switch {
		case res.Errors > 0:
			j.Verdict = VerdictErrors
		case j.RatioPct >= targetPct:
			j.Verdict = VerdictPass
		default:
			j.Verdict = VerdictBelow
		}
	}
	r.scenarios = append(r.scenarios, j)
	return j
}

// Ceilings returns the ceilings added so far.
func (r *Report) Ceilings() []Result { return r.ceilings }

// Scenarios returns the judged scenarios added so far.
func (r *Report) Scenarios() []Judged { return r.scenarios }

// WriteTable prints one fixed-width line per ceiling, then per scenario.
func (r *Report) WriteTable(w io.Writer) error {
	nameW := len("scenario")
	for _, c := range r.ceilings {
		nameW = max(nameW, len(c.Name))
	}
	for _, s := range r.scenarios {
		nameW = max(nameW, len(s.Name), len(s.Ceiling))
	}
	var b strings.Builder
	// Columns are padded by characters, not bytes: durations may hold "µ".
	right := func(w int, v string) string { return strings.Repeat(" ", max(w-utf8.RuneCountInString(v), 0)) + v }
	line := func(name, ops, p50, p99, cpu, ceiling, ratio, target, errs, verdict string) {
		fmt.Fprintf(&b, "%-*s %s %s %s %s  %-*s %7s %7s %7s  %s\n",
			nameW, name, right(11, ops), right(9, p50), right(9, p99), right(9, cpu), nameW, ceiling, ratio, target, errs, verdict)
	}
	line("scenario", "ops/s", "p50", "p99", "cpu/op", "ceiling", "ratio", "target", "errors", "verdict")
	for _, c := range r.ceilings {
		line(c.Name, fmtOps(c.Throughput), fmtDur(c.P50), fmtDur(c.P99), fmtCPU(c.CPUPerOp), "-", "-", "-", fmt.Sprint(c.Errors), "ceiling")
	}
	for _, s := range r.scenarios {
		ratio := "-"
		if s.Verdict != VerdictNoCeiling {
			ratio = fmt.Sprintf("%.1f%%", s.RatioPct)
		}
		line(s.Name, fmtOps(s.Throughput), fmtDur(s.P50), fmtDur(s.P99), fmtCPU(s.CPUPerOp), s.Ceiling, ratio,
			fmt.Sprintf("%.0f%%", s.TargetPct), fmt.Sprint(s.Errors), s.Verdict)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report, with the machine it ran on, as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	host, _ := os.Hostname()
	doc := struct {
		Command    string    `json:"command,omitempty"`
		Started    time.Time `json:"started"`
		GoVersion  string    `json:"go_version"`
		GOOS       string    `json:"goos"`
		GOARCH     string    `json:"goarch"`
		NumCPU     int       `json:"num_cpu"`
		GOMAXPROCS int       `json:"gomaxprocs"`
		Host       string    `json:"host,omitempty"`
		Ceilings   []Result  `json:"ceilings"`
		Scenarios  []Judged  `json:"scenarios"`
	}{
		Command: r.Command, Started: r.Started,
		GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Host: host,
		Ceilings: nonNil(r.ceilings), Scenarios: nonNil(r.scenarios),
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func fmtOps(v float64) string { return fmt.Sprintf("%.0f", v) }

// fmtCPU prints a CPU time per operation, "-" when it was not measured.
func fmtCPU(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmtDur(d)
}

// fmtDur prints three significant digits, which is all the precision a
// latency measured on a shared machine has.
func fmtDur(d time.Duration) string {
	sig3 := func(v float64, unit string) string {
		switch {
		case v < 10:
			return fmt.Sprintf("%.2f%s", v, unit)
		case v < 100:
			return fmt.Sprintf("%.1f%s", v, unit)
		default:
			return fmt.Sprintf("%.0f%s", v, unit)
		}
	}
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", int64(d))
	case d < time.Millisecond:
		return sig3(float64(d)/float64(time.Microsecond), "µs")
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond), "ms")
	default:
		return sig3(d.Seconds(), "s")
	}
}
