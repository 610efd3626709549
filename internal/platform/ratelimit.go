package platform

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
)

// RateLimiter keeps one token bucket per API key. A key's own rate
// (ApiKey.rate_limit_per_second) overrides the default.
type RateLimiter struct {
	PerSecond float64 // default sustained rate; <= 0 disables limiting
	Burst     int     // default burst

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	rate float64
}

// NewRateLimiter returns a limiter with the given default rate and burst.
func NewRateLimiter(perSecond float64, burst int) *RateLimiter {
	if burst < 1 {
		burst = 1
	}
	return &RateLimiter{PerSecond: perSecond, Burst: burst, buckets: map[string]*bucket{}}
}

// Allow takes one token from p's bucket, or answers RESOURCE_EXHAUSTED with
// RetryInfo and a retry-after header saying when a token will be there.
// Calls without a key (public methods) and Millrace's own calls are not
// limited.
func (l *RateLimiter) Allow(ctx context.Context, p auth.Principal) error {
	if l == nil || l.PerSecond <= 0 || p.KeyID == "" || p.Role == auth.RoleService {
		return nil
	}
	r := l.PerSecond
	burst := l.Burst
	if p.RatePerSecond > 0 {
		r = float64(p.RatePerSecond)
		burst = max(p.RatePerSecond*2, 1)
	}
	l.mu.Lock()
	b := l.buckets[p.KeyID]
	if b == nil || b.rate != r {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(r), burst), rate: r}
		l.buckets[p.KeyID] = b
	}
	l.mu.Unlock()
	now := time.Now()
	res := b.lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if delay == 0 {
		return nil
	}
	res.CancelAt(now)
	secs := retryAfterSeconds(delay)
	_ = grpc.SetHeader(ctx, metadata.Pairs(MDRetryAfter, strconv.Itoa(secs)))
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("rate limit of %g requests per second exceeded for this key; retry after %d s", r, secs))
	st, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: apierr.ReasonRateLimited, Domain: apierr.Domain, Metadata: map[string]string{"key_id": p.KeyID}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(secs) * time.Second)},
	)
	if err != nil {
		return status.Error(codes.ResourceExhausted, "rate limit exceeded")
	}
	return st.Err()
}
