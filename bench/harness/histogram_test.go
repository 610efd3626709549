package harness

import (
	"math"
	"slices"
	"testing"
	"time"
)

// nearestRank is the exact quantile the histogram approximates.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q*float64(len(sorted)) - 1e-9))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func TestHistogramQuantiles(t *testing.T) {
	series := func(n int, f func(i int) time.Duration) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	tests := []struct {
		name    string
		values  []time.Duration
		exact   bool // values below subCount ns are kept exactly
		wantP50 time.Duration
		wantP99 time.Duration
		wantMax time.Duration
	}{
		{
			name:    "single value",
			values:  []time.Duration{42 * time.Microsecond},
			wantP50: 42 * time.Microsecond, wantP99: 42 * time.Microsecond, wantMax: 42 * time.Microsecond,
		},
		{
			name:    "small values are exact",
			values:  series(100, func(i int) time.Duration { return time.Duration(i + 1) }),
			exact:   true,
			wantP50: 50, wantP99: 99, wantMax: 100,
		},
		{
			name:    "uniform microseconds",
			values:  series(10000, func(i int) time.Duration { return time.Duration(i+1) * time.Microsecond }),
			wantP50: 5 * time.Millisecond, wantP99: 9900 * time.Microsecond, wantMax: 10 * time.Millisecond,
		},
		{
			name: "one slow outlier in a hundred",
			values: series(100, func(i int) time.Duration {
				if i == 0 {
					return 100 * time.Millisecond
				}
				return time.Millisecond
			}),
			wantP50: time.Millisecond, wantP99: time.Millisecond, wantMax: 100 * time.Millisecond,
		},
		{
			name: "two slow in a hundred",
			values: series(100, func(i int) time.Duration {
				if i < 2 {
					return 3 * time.Second
				}
				return 250 * time.Microsecond
			}),
			wantP50: 250 * time.Microsecond, wantP99: 3 * time.Second, wantMax: 3 * time.Second,
		},
		{
			name:    "negative latency counts as zero",
			values:  []time.Duration{-5, -1},
			exact:   true,
			wantP50: 0, wantP99: 0, wantMax: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistogram()
			for _, v := range tt.values {
				h.record(v)
			}
			sorted := slices.Clone(tt.values)
			slices.Sort(sorted)
			for _, q := range []float64{0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1} {
				got, want := h.quantile(q), max(nearestRank(sorted, q), 0)
				if got < want || float64(got-want) > float64(want)/subCount {
					t.Errorf("quantile(%v) = %v, want %v within +1/%d", q, got, want, subCount)
				}
				if tt.exact && got != want {
					t.Errorf("quantile(%v) = %v, want exactly %v", q, got, want)
				}
			}
			check := func(what string, got, want time.Duration) {
				t.Helper()
				if got < want || float64(got-want) > float64(want)/subCount {
					t.Errorf("%s = %v, want %v within +1/%d", what, got, want, subCount)
				}
			}
			check("p50", h.quantile(0.5), tt.wantP50)
			check("p99", h.quantile(0.99), tt.wantP99)
			if got := time.Duration(h.max); got != tt.wantMax {
				t.Errorf("max = %v, want %v", got, tt.wantMax)
			}
			if h.total != uint64(len(tt.values)) {
				t.Errorf("total = %d, want %d", h.total, len(tt.values))
			}
		})
	}
}

func TestHistogramEmpty(t *testing.T) {
	h := newHistogram()
	if got := h.quantile(0.99); got != 0 {
		t.Errorf("quantile of empty histogram = %v, want 0", got)
	}
}

func TestHistogramMerge(t *testing.T) {
	a, b, all := newHistogram(), newHistogram(), newHistogram()
	for i := range 1000 {
		d := time.Duration(i*i) * time.Nanosecond
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(b)
	if a.total != all.total || a.max != all.max {
		t.Fatalf("merged total/max = %d/%d, want %d/%d", a.total, a.max, all.total, all.max)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		if got, want := a.quantile(q), all.quantile(q); got != want {
			t.Errorf("merged quantile(%v) = %v, want %v", q, got, want)
		}
	}
}

func TestBuckets(t *testing.T) {
	// Buckets must tile the value range: each value lands in the bucket whose
	// top is the smallest one at or above it.
	prevHigh := int64(-1)
	for i := range nBuckets - 1 {
		high := int64(bucketHigh(i))
		if high <= prevHigh {
			t.Fatalf("bucket %d top %d not above bucket %d top %d", i, high, i-1, prevHigh)
		}
		for _, v := range []int64{prevHigh + 1, high} {
			if got := bucketOf(uint64(v)); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d", v, got, i)
			}
		}
		if width := high - prevHigh; prevHigh >= subCount && float64(width) > float64(prevHigh+1)/subCount {
			t.Fatalf("bucket %d is %d wide from %d, more than 1/%d", i, width, prevHigh+1, subCount)
		}
		prevHigh = high
		if high > math.MaxInt64/2 {
			break
		}
	}
}

func BenchmarkRecord(b *testing.B) {
	h := newHistogram()
	for i := 0; b.Loop(); i++ {
		h.record(time.Duration(i))
	}
}
