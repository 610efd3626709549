package harness

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's resolution: every power-of-two range of
// latencies is split into 1<<subBits equal buckets, so a reported percentile
// is at most 1/128 (0.8%) above the true one. That is far below the noise of a
// shared machine and keeps a histogram at a fixed 58 KiB.
const (
	subBits  = 7
	subCount = 1 << subBits
	// nBuckets covers every non-negative int64 nanosecond count.
	nBuckets = (64 - subBits + 1) * subCount
)

// histogram is a log-linear latency histogram in the manner of HdrHistogram:
// recording is an index computation and an increment, with no allocation and
// no lock, so each worker owns one and they are merged once at the end.
type histogram struct {
	counts []uint64
	total  uint64
	max    int64
}

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, nBuckets)}
}

// bucketOf maps a value to its bucket. Values below subCount get a bucket of
// their own; above that the top subBits+1 significant bits pick the bucket.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)<<subBits + int(v>>shift) - subCount
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := i>>subBits - 1
	mantissa := uint64(i&(subCount-1) + subCount)
	return (mantissa+1)<<shift - 1
}

func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))]++
	h.total++
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the nearest-rank q-quantile (0 < q <= 1), reported as the
// top of its bucket and never above the largest recorded value, so it is never
// below the true value. An empty histogram reports 0.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	// The epsilon keeps 0.99*100 from rounding up to rank 100.
	rank := uint64(math.Ceil(q*float64(h.total) - 1e-9))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), uint64(h.max)))
		}
	}
	return time.Duration(h.max)
}
