package app

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the garbage collector target millrace serve runs with
// unless GOGC is set. Go's default of 100 collects every time the heap
// doubles; Millrace keeps little on its heap (its stores are memory-mapped
// files) and allocates a lot per request, so at 100 a loaded server spends
// a tenth or more of its CPU collecting. At 400 the heap may grow to five
// times what is live between collections, for about a quarter of that CPU.
const DefaultGCPercent = 400

// memoryShare is the part of a container's memory limit given to the Go
// runtime as its soft limit, so that the larger heap GC target gives way
// before the container is killed.
const memoryShare = 0.8

// TuneGC applies Millrace's garbage collector settings to the process: GC
// percent DefaultGCPercent unless GOGC is set, and, when the process runs
// under a cgroup memory limit and GOMEMLIMIT is not set, a soft memory limit
// of memoryShare of it. It returns a line saying what applies, for the
// start banner.
func TuneGC(getenv func(string) string) string {
	return tuneGC(getenv, os.ReadFile)
}

func tuneGC(getenv func(string) string, readFile func(string) ([]byte, error)) string {
	var parts []string
	if v := getenv("GOGC"); v != "" {
		parts = append(parts, "GOGC="+v+" (from the environment)")
	} else {
		debug.SetGCPercent(DefaultGCPercent)
		parts = append(parts, fmt.Sprintf("GOGC=%d (Millrace's default; set GOGC to change it)", DefaultGCPercent))
	}
	switch limit, ok := cgroupMemoryLimit(readFile); {
	case getenv("GOMEMLIMIT") != "":
		parts = append(parts, "GOMEMLIMIT="+getenv("GOMEMLIMIT")+" (from the environment)")
	case ok:
		soft := int64(float64(limit) * memoryShare)
		debug.SetMemoryLimit(soft)
		parts = append(parts, fmt.Sprintf("memory limit %d MiB (%.0f%% of the container's %d MiB)", soft>>20, memoryShare*100, limit>>20))
	}
	return strings.Join(parts, ", ")
}

// cgroupMemoryLimit reads the memory limit of the process's cgroup (v2,
// then v1). It reports false when there is none or it cannot be read.
func cgroupMemoryLimit(readFile func(string) ([]byte, error)) (int64, bool) {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := readFile(path)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		// cgroup v1 reports "no limit" as a number near the largest int64.
		if err != nil || n <= 0 || n >= 1<<50 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
