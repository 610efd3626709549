package harness

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestReportVerdicts(t *testing.T) {
	ceiling := Result{Name: "grpc-echo", Throughput: 10000, P50: 80 * time.Microsecond}
	tests := []struct {
		name      string
		res       Result
		ceiling   string
		target    float64
		wantRatio float64
		want      string
	}{
		{name: "at target", res: Result{Throughput: 5000}, ceiling: "grpc-echo", target: 50, wantRatio: 50, want: VerdictPass},
		{name: "above target", res: Result{Throughput: 8000}, ceiling: "grpc-echo", target: 50, wantRatio: 80, want: VerdictPass},
		{name: "below target", res: Result{Throughput: 4000}, ceiling: "grpc-echo", target: 50, wantRatio: 40, want: VerdictBelow},
		{name: "errors void a fast run", res: Result{Throughput: 9000, Errors: 1}, ceiling: "grpc-echo", target: 50, wantRatio: 90, want: VerdictErrors},
		{name: "unknown ceiling", res: Result{Throughput: 9000}, ceiling: "nope", target: 50, want: VerdictNoCeiling},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Report
			r.AddCeiling(ceiling)
			got := r.AddScenario(tt.res, tt.ceiling, tt.target)
			if got.Verdict != tt.want || got.RatioPct != tt.wantRatio {
				t.Errorf("verdict %s ratio %v%%, want %s %v%%", got.Verdict, got.RatioPct, tt.want, tt.wantRatio)
			}
		})
	}
}

func TestReportTable(t *testing.T) {
	var r Report
	r.AddCeiling(Result{Name: "grpc-echo", Throughput: 20000, P50: 900 * time.Microsecond, P99: 12 * time.Millisecond})
	r.AddScenario(Result{Name: "rpc-noop-grpc", Throughput: 9000, P50: 3 * time.Millisecond, P99: 25 * time.Millisecond, CPUPerOp: 180 * time.Microsecond}, "grpc-echo", 40)
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want header, ceiling and scenario:\n%s", len(lines), buf.String())
	}
	for i, want := range [][]string{
		{"scenario", "ops/s", "p50", "p99", "cpu/op", "ceiling", "ratio", "target", "errors", "verdict"},
		{"grpc-echo", "20000", "900µs", "12.0ms", "-", "-", "-", "-", "0", "ceiling"},
		{"rpc-noop-grpc", "9000", "3.00ms", "25.0ms", "180µs", "grpc-echo", "45.0%", "40%", "0", "PASS"},
	} {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("line %d = %q, want fields %q", i, lines[i], want)
		}
	}
	// Fixed width: every column starts at the same character on every
	// line, with "µ" in some cells.
	col := func(line, field string) int { return utf8.RuneCountInString(line[:strings.LastIndex(line, field)]) }
	if a, b, c := col(lines[0], "verdict"), col(lines[1], "ceiling"), col(lines[2], "PASS"); a != b || a != c {
		t.Errorf("verdict column at %d in header, %d and %d in rows:\n%s", a, b, c, buf.String())
	}
}

func TestReportJSON(t *testing.T) {
	r := Report{Command: "millrace-bench -duration 1s"}
	r.AddCeiling(Result{Name: "grpc-echo", Throughput: 100, P99: time.Millisecond})
	r.AddScenario(Result{Name: "s", Throughput: 50}, "grpc-echo", 40)
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Command  string `json:"command"`
		NumCPU   int    `json:"num_cpu"`
		Ceilings []struct {
			Name  string `json:"name"`
			P99NS int64  `json:"p99_ns"`
		} `json:"ceilings"`
		Scenarios []struct {
			Name     string  `json:"name"`
			Ceiling  string  `json:"ceiling"`
			RatioPct float64 `json:"ratio_pct"`
			Verdict  string  `json:"verdict"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("decode: %v\n%s", err, buf.String())
	}
	if doc.Command != r.Command || doc.NumCPU == 0 {
		t.Errorf("command %q num_cpu %d, want %q and > 0", doc.Command, doc.NumCPU, r.Command)
	}
	if len(doc.Ceilings) != 1 || doc.Ceilings[0].Name != "grpc-echo" || doc.Ceilings[0].P99NS != int64(time.Millisecond) {
		t.Errorf("ceilings = %+v", doc.Ceilings)
	}
	if len(doc.Scenarios) != 1 || doc.Scenarios[0].RatioPct != 50 || doc.Scenarios[0].Verdict != VerdictPass || doc.Scenarios[0].Ceiling != "grpc-echo" {
		t.Errorf("scenarios = %+v", doc.Scenarios)
	}
}
