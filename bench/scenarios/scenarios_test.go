package scenarios

import (
	"context"
	"testing"
)

func noop(context.Context) (func(context.Context, int) error, func(), error) {
	return func(context.Context, int) error { return nil }, func() {}, nil
}

// reset empties the registry for one test and restores it afterwards.
func reset(t *testing.T) {
	t.Helper()
	mu.Lock()
	saved := registry
	registry = map[string]Scenario{}
	mu.Unlock()
	t.Cleanup(func() {
		mu.Lock()
		registry = saved
		mu.Unlock()
	})
}

func TestRegister(t *testing.T) {
	tests := []struct {
		name      string
		scenarios []Scenario
		wantPanic bool
		wantNames []string
	}{
		{
			name: "sorted by name",
			scenarios: []Scenario{
				{Name: "rpc-noop-rest", Ceiling: "http-json-echo", TargetPct: 30, Setup: noop},
				{Name: "rpc-noop-grpc", Ceiling: "grpc-echo", TargetPct: 50, Setup: noop},
			},
			wantNames: []string{"rpc-noop-grpc", "rpc-noop-rest"},
		},
		{
			name: "duplicate name",
			scenarios: []Scenario{
				{Name: "a", Ceiling: "grpc-echo", Setup: noop},
				{Name: "a", Ceiling: "grpc-echo", Setup: noop},
			},
			wantPanic: true,
		},
		{name: "no name", scenarios: []Scenario{{Ceiling: "grpc-echo", Setup: noop}}, wantPanic: true},
		{name: "no ceiling", scenarios: []Scenario{{Name: "a", Setup: noop}}, wantPanic: true},
		{name: "no setup", scenarios: []Scenario{{Name: "a", Ceiling: "grpc-echo"}}, wantPanic: true},
		{name: "comma in name", scenarios: []Scenario{{Name: "a,b", Ceiling: "grpc-echo", Setup: noop}}, wantPanic: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reset(t)
			defer func() {
				if r := recover(); (r != nil) != tt.wantPanic {
					t.Errorf("panic = %v, want panic %v", r, tt.wantPanic)
				}
			}()
			for _, s := range tt.scenarios {
				Register(s)
			}
			var got []string
			for _, s := range All() {
				got = append(got, s.Name)
			}
			if len(got) != len(tt.wantNames) {
				t.Fatalf("All() = %v, want %v", got, tt.wantNames)
			}
			for i := range got {
				if got[i] != tt.wantNames[i] {
					t.Errorf("All() = %v, want %v", got, tt.wantNames)
				}
			}
		})
	}
}
