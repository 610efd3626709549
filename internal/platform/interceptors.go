// Package platform is the server bootstrap every Millrace service shares:
// the gRPC server with health and reflection, the interceptor chain
// (correlation id, metrics and logging, panic recovery, authentication and
// authorization, rate limiting, input validation, idempotency), and the REST
// edge that grpc-gateway serves over a gRPC client connection so that every
// interceptor applies to REST as well.
package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/millrace/millrace/internal/apierr"
	"github.com/millrace/millrace/internal/auth"
	"github.com/millrace/millrace/internal/reqctx"
	"github.com/millrace/millrace/internal/validation"
)

// Metadata keys Millrace reads and writes. gRPC metadata keys are lowercase;
// the gateway maps the HTTP headers onto them.
const (
	MDCorrelationID      = "x-correlation-id"
	MDTraceparent        = "traceparent"
	MDAuthorization      = "authorization"
	MDIdempotencyKey     = "idempotency-key"
	MDIdempotentReplayed = "idempotent-replayed"
	MDRetryAfter         = "retry-after"
)

// incomingMD returns the first value of a key of the request's metadata,
// "" when there is none. Unlike metadata.FromIncomingContext it does not
// copy all of the request's metadata to read one key, which every call
// does several times.
func incomingMD(ctx context.Context, key string) string {
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// correlate puts the correlation id (accepted from the caller when well
// formed, generated otherwise), the traceparent and the actor into ctx, and
// returns the correlation id to the caller as a response header.
func correlate(ctx context.Context) context.Context {
	id := incomingMD(ctx, MDCorrelationID)
	if !reqctx.ValidCorrelationID(id) {
		id = reqctx.NewCorrelationID()
	}
	ctx = reqctx.WithCorrelationID(ctx, id)
	if tp := incomingMD(ctx, MDTraceparent); validTraceparent(tp) {
		ctx = reqctx.WithTraceparent(ctx, tp)
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(MDCorrelationID, id))
	return ctx
}

// validTraceparent accepts the W3C form version-traceid-parentid-flags.
func validTraceparent(tp string) bool {
	if len(tp) != 55 {
		return false
	}
	for i, c := range tp {
		switch i {
		case 2, 35, 52:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// Chain holds what the interceptors need.
type Chain struct {
	Log         *slog.Logger
	Auth        *Authenticator
	Limiter     *RateLimiter
	Validate    bool // check the contract's protovalidate rules
	Idempotency *Idempotency
	Metrics     *Metrics
}

// Unary returns the unary interceptors in order.
func (c *Chain) Unary() []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{c.unary}
}

// Stream returns the stream interceptors in order.
func (c *Chain) Stream() []grpc.StreamServerInterceptor {
	return []grpc.StreamServerInterceptor{c.stream}
}

// unary runs the whole chain in one function: one closure per call instead
// of eight keeps the per-call overhead small, and the order is readable.
func (c *Chain) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	ctx = correlate(ctx)
	var p auth.Principal
	defer func() {
		if r := recover(); r != nil {
			c.Log.ErrorContext(ctx, "panic in handler; the call fails with INTERNAL and the server keeps running",
				"method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()), "correlation_id", reqctx.CorrelationID(ctx))
			resp, err = nil, apierr.Internal()
		}
		err = c.sanitize(ctx, info.FullMethod, err)
		c.observe(ctx, info.FullMethod, p, start, err)
	}()
	ctx, p, err = c.Auth.Authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if err := c.Limiter.Allow(ctx, p); err != nil {
		return nil, err
	}
	markDeprecation(ctx, info.FullMethod)
	if msg, ok := req.(proto.Message); ok && c.Validate && !validation.PerItem[info.FullMethod] {
		if err := validation.Check(msg); err != nil {
			return nil, err
		}
	}
	if c.Idempotency != nil {
		return c.Idempotency.Handle(ctx, p, info.FullMethod, req, handler)
	}
	return handler(ctx, req)
}

func (c *Chain) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	ctx := correlate(ss.Context())
	var p auth.Principal
	defer func() {
		if r := recover(); r != nil {
			c.Log.ErrorContext(ctx, "panic in stream handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = apierr.Internal()
		}
		err = c.sanitize(ctx, info.FullMethod, err)
		c.observe(ctx, info.FullMethod, p, start, err)
	}()
	ctx, p, err = c.Auth.Authorize(ctx, info.FullMethod)
	if err != nil {
		return err
	}
	if err := c.Limiter.Allow(ctx, p); err != nil {
		return err
	}
	return handler(srv, &validatingStream{ServerStream: ss, ctx: ctx, validate: c.Validate})
}

type validatingStream struct {
	grpc.ServerStream
	ctx      context.Context
	validate bool
}

func (s *validatingStream) Context() context.Context { return s.ctx }

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if msg, ok := m.(proto.Message); ok && s.validate {
		return validation.Check(msg)
	}
	return nil
}

// sanitize makes sure no internal detail reaches a caller: an error that is
// not a gRPC status is logged with its cause and answered with INTERNAL.
func (c *Chain) sanitize(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return status.Error(codes.Canceled, "the call was cancelled")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed")
	}
	if apierr.IsStatus(err) {
		st, _ := status.FromError(err)
		if st.Code() != codes.Unknown {
			return err
		}
	}
	c.Log.ErrorContext(ctx, "internal error", "method", method, "err", err.Error(), "correlation_id", reqctx.CorrelationID(ctx))
	return apierr.Internal()
}

func (c *Chain) observe(ctx context.Context, method string, p auth.Principal, start time.Time, err error) {
	code := status.Code(err)
	elapsed := time.Since(start)
	if c.Metrics != nil {
		c.Metrics.ObserveRPC(method, code, elapsed)
	}
	level := slog.LevelDebug
	switch {
	case code == codes.Internal || code == codes.Unknown || code == codes.DataLoss:
		level = slog.LevelError
	case code != codes.OK:
		level = slog.LevelInfo
	}
	if !c.Log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("duration", elapsed),
		slog.String("correlation_id", reqctx.CorrelationID(ctx)),
	}
	if p.KeyID != "" {
		attrs = append(attrs, slog.String("key_id", p.KeyID), slog.String("role", auth.RoleName(p.Role)))
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		attrs = append(attrs, slog.String("peer", pr.Addr.String()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	c.Log.LogAttrs(ctx, level, "rpc", attrs...)
}

// StoreOf returns the name of the store that owns a method's state, for
// example "customer" for "/millrace.customer.v1.CustomerService/GetCustomer"
// and "integration" for the edge's own services.
func StoreOf(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) >= 3 && parts[0] == "millrace" {
		return parts[1]
	}
	return s
}
