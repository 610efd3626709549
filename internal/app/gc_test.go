package app

import (
	"errors"
	"io/fs"
	"runtime/debug"
	"strings"
	"testing"
)

func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))

	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if v, ok := m[p]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	const noLimit = int64(^uint64(0) >> 1)
	tests := []struct {
		name      string
		env       map[string]string
		files     map[string]string
		wantPct   int   // GC percent afterwards
		wantLimit int64 // memory limit afterwards
		says      string
	}{
		{"defaults, no container limit", nil, nil, DefaultGCPercent, noLimit, "GOGC=400 (Millrace's default"},
		{"GOGC from the environment", map[string]string{"GOGC": "150"}, nil, 100, noLimit, "GOGC=150 (from the environment)"},
		{"cgroup v2 limit", nil, map[string]string{"/sys/fs/cgroup/memory.max": "1073741824\n"}, DefaultGCPercent, 858993459, "memory limit 819 MiB (80% of the container's 1024 MiB)"},
		{"cgroup v2 without a limit", nil, map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}, DefaultGCPercent, noLimit, "GOGC=400"},
		{"cgroup v1 limit", nil, map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912"}, DefaultGCPercent, 429496729, "memory limit 409 MiB"},
		{"cgroup v1 without a limit", nil, map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712"}, DefaultGCPercent, noLimit, "GOGC=400"},
		{"garbage in the cgroup file", nil, map[string]string{"/sys/fs/cgroup/memory.max": "lots"}, DefaultGCPercent, noLimit, "GOGC=400"},
		{"GOMEMLIMIT from the environment wins", map[string]string{"GOMEMLIMIT": "2GiB"}, map[string]string{"/sys/fs/cgroup/memory.max": "1073741824"}, DefaultGCPercent, noLimit, "GOMEMLIMIT=2GiB (from the environment)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(noLimit)
			line := tuneGC(env(tt.env), files(tt.files))
			if !strings.Contains(line, tt.says) {
				t.Errorf("says %q, want it to contain %q", line, tt.says)
			}
			if got := debug.SetGCPercent(100); got != tt.wantPct {
				t.Errorf("GC percent %d, want %d", got, tt.wantPct)
			}
			if got := debug.SetMemoryLimit(-1); got != tt.wantLimit {
				t.Errorf("memory limit %d, want %d", got, tt.wantLimit)
			}
		})
	}
	if _, ok := cgroupMemoryLimit(func(string) ([]byte, error) { return nil, errors.New("unreadable") }); ok {
		t.Error("an unreadable cgroup gave a limit")
	}
}
