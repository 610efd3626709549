package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/millrace/millrace/bench/harness"
	"github.com/millrace/millrace/bench/scenarios"
)

func TestMain(m *testing.M) {
	// Registered once here, not in TestRun, so -count=N does not register it twice.
	scenarios.Register(scenarios.Scenario{Name: "self-check-noop", Ceiling: "grpc-echo", TargetPct: 100, Setup: noopSetup})
	goleak.VerifyTestMain(m)
}

func noopSetup(context.Context) (func(context.Context, int) error, func(), error) {
	return func(context.Context, int) error { return nil }, func() {}, nil
}

func TestPlan(t *testing.T) {
	cs := []ceiling{{name: "grpc-echo"}, {name: "http-json-echo"}, {name: "bolt-single-commit"}}
	ss := []scenarios.Scenario{
		{Name: "noop-grpc", Ceiling: "grpc-echo", Setup: noopSetup},
		{Name: "noop-rest", Ceiling: "http-json-echo", Setup: noopSetup},
	}
	tests := []struct {
		name          string
		scenarios     []scenarios.Scenario
		only          string
		wantCeilings  []string
		wantScenarios []string
		wantErr       string
	}{
		{name: "everything", scenarios: ss, wantCeilings: []string{"grpc-echo", "http-json-echo", "bolt-single-commit"}, wantScenarios: []string{"noop-grpc", "noop-rest"}},
		{name: "a ceiling alone", scenarios: ss, only: "bolt-single-commit", wantCeilings: []string{"bolt-single-commit"}},
		{name: "a scenario brings its ceiling", scenarios: ss, only: "noop-rest", wantCeilings: []string{"http-json-echo"}, wantScenarios: []string{"noop-rest"}},
		{name: "spaces and repeats", scenarios: ss, only: " noop-grpc, grpc-echo,,noop-grpc", wantCeilings: []string{"grpc-echo"}, wantScenarios: []string{"noop-grpc"}},
		{name: "unknown name", scenarios: ss, only: "grpc-echo,nope", wantErr: "unknown nope"},
		{name: "scenario with unknown ceiling", scenarios: []scenarios.Scenario{{Name: "x", Ceiling: "nope", Setup: noopSetup}}, wantErr: `unknown ceiling "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotC, gotS, err := plan(cs, tt.scenarios, tt.only)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var cNames, sNames []string
			for _, c := range gotC {
				cNames = append(cNames, c.name)
			}
			for _, s := range gotS {
				sNames = append(sNames, s.Name)
			}
			if !slices.Equal(cNames, tt.wantCeilings) || !slices.Equal(sNames, tt.wantScenarios) {
				t.Errorf("plan = %v, %v; want %v, %v", cNames, sNames, tt.wantCeilings, tt.wantScenarios)
			}
		})
	}
}

// TestRun runs the whole command briefly with a do-nothing scenario, which
// must beat any real ceiling, and checks the table and the JSON file. -only
// names every ceiling and the self-check alone: the Millrace scenarios
// registered by the binary's import of bench/millrace have their own test.
func TestRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results", "run.json")
	var stdout, stderr bytes.Buffer
	args := []string{"-duration", "100ms", "-warmup", "10ms", "-concurrency", "4", "-dir", t.TempDir(), "-json", out,
		"-only", "grpc-echo,http-json-echo,bolt-single-commit,bolt-batch64,self-check-noop"}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	for _, want := range []string{"measuring ceiling grpc-echo (100ms)…", "measuring ceiling bolt-batch64 (100ms)…", "running scenario self-check-noop (100ms)…"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	table := stdout.String()
	for _, want := range []string{"grpc-echo", "http-json-echo", "bolt-single-commit", "bolt-batch64"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks ceiling %s:\n%s", want, table)
		}
	}
	if !strings.Contains(table, "self-check-noop") || !strings.Contains(table, harness.VerdictPass) {
		t.Errorf("table lacks a passing self-check-noop:\n%s", table)
	}

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Ceilings  []harness.Result `json:"ceilings"`
		Scenarios []harness.Judged `json:"scenarios"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	if len(doc.Ceilings) != 4 || len(doc.Scenarios) != 1 {
		t.Fatalf("JSON has %d ceilings and %d scenarios, want 4 and 1", len(doc.Ceilings), len(doc.Scenarios))
	}
	for _, c := range doc.Ceilings {
		if c.Ops == 0 || c.Errors != 0 {
			t.Errorf("ceiling %s: %d ops, %d errors", c.Name, c.Ops, c.Errors)
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{name: "zero duration", args: []string{"-duration", "0s"}},
		{name: "zero concurrency", args: []string{"-concurrency", "0"}},
		{name: "unknown flag", args: []string{"-nope"}},
		{name: "stray argument", args: []string{"grpc-echo"}},
		{name: "unknown -only name", args: []string{"-only", "nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := run(context.Background(), tt.args, &stdout, &stderr); err == nil {
				t.Errorf("run(%q) succeeded, want an error", tt.args)
			}
		})
	}
}

// TestRunCPUProfile checks that -cpuprofile writes a profile of the
// scenarios, and that a path it cannot write fails the run.
func TestRunCPUProfile(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	args := []string{"-duration", "50ms", "-warmup", "10ms", "-concurrency", "2", "-only", "self-check-noop", "-cpuprofile", prof}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	info, err := os.Stat(prof)
	if err != nil || info.Size() == 0 {
		t.Fatalf("profile %s: %v (size %v), want a written profile", prof, err, info)
	}
	bad := append(args[:len(args)-1:len(args)-1], filepath.Join(t.TempDir(), "missing", "cpu.prof"))
	if err := run(context.Background(), bad, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "-cpuprofile") {
		t.Errorf("an unwritable -cpuprofile path gave %v, want an error naming the flag", err)
	}
}

// TestRunMemProfile checks that -memprofile writes an allocation profile
// after the scenarios, and that a path it cannot write fails the run before
// any scenario runs.
func TestRunMemProfile(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "mem.prof")
	args := []string{"-duration", "50ms", "-warmup", "10ms", "-concurrency", "2", "-only", "self-check-noop", "-memprofile", prof}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	info, err := os.Stat(prof)
	if err != nil || info.Size() == 0 {
		t.Fatalf("profile %s: %v (size %v), want a written profile", prof, err, info)
	}
	stderr.Reset()
	bad := append(args[:len(args)-1:len(args)-1], filepath.Join(t.TempDir(), "missing", "mem.prof"))
	if err := run(context.Background(), bad, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "-memprofile") {
		t.Errorf("an unwritable -memprofile path gave %v, want an error naming the flag", err)
	}
	if strings.Contains(stderr.String(), "running scenario") {
		t.Errorf("a scenario ran before the bad -memprofile path was refused:\n%s", stderr.String())
	}
}
