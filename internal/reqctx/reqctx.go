// Package reqctx carries the per-request facts every layer needs: the
// correlation id, the W3C traceparent and the event that caused the work.
// They travel from the edge into every event a request causes.
package reqctx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

type key int

const (
	correlationKey key = iota
	traceparentKey
	causationKey
	actorKey
	idempotencyKey
)

// MaxCorrelationIDLen bounds a caller-supplied correlation id.
const MaxCorrelationIDLen = 128

// ValidCorrelationID reports whether a caller-supplied id may be used as
// is: 1 to MaxCorrelationIDLen of the characters A-Z a-z 0-9 . _ : / -.
func ValidCorrelationID(id string) bool {
	if len(id) == 0 || len(id) > MaxCorrelationIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '/', c == '-':
		default:
			return false
		}
	}
	return true
}

// NewCorrelationID returns a random correlation id.
func NewCorrelationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// WithCorrelationID returns ctx carrying id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey, id)
}

// CorrelationID returns the correlation id of ctx, or "".
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey).(string)
	return id
}

// WithTraceparent returns ctx carrying a W3C traceparent header value.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, traceparentKey, tp)
}

// Traceparent returns the W3C traceparent of ctx, or "".
func Traceparent(ctx context.Context) string {
	tp, _ := ctx.Value(traceparentKey).(string)
	return tp
}

// WithCausationID returns ctx recording the event or request that caused
// the work done under it.
func WithCausationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, causationKey, id)
}

// CausationID returns the causation id of ctx, or "".
func CausationID(ctx context.Context) string {
	id, _ := ctx.Value(causationKey).(string)
	return id
}

// WithActor returns ctx naming who acts: an API key id or "system".
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey, actor)
}

// Actor returns the actor of ctx, or "system" when none is set.
func Actor(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey).(string); ok && a != "" {
		return a
	}
	return "system"
}

// Idempotency identifies a request sent with an Idempotency-Key: the
// scope (caller and method) and key the platform claimed for it. A handler
// that creates a record attaches its id to the claim in the transaction
// that stores it (idempotency.Attach), so that a retry after a crash that
// lost the stored answer arrives with Created set and answers with that
// record instead of creating another.
type Idempotency struct {
	Scope, Key string
	// Created is the id an earlier attempt of this very request created
	// and attached before it died; empty on a first attempt.
	Created string
}

// WithIdempotency returns ctx carrying the request's idempotency claim.
func WithIdempotency(ctx context.Context, id Idempotency) context.Context {
	return context.WithValue(ctx, idempotencyKey, id)
}

// CreatedBefore returns what an earlier attempt of the keyed request ctx
// carries created before it died without its answer stored (see
// Idempotency.Created); "" on a first attempt or without a key.
func CreatedBefore(ctx context.Context) string {
	id, _ := IdempotencyOf(ctx)
	return id.Created
}

// IdempotencyOf returns the idempotency claim of ctx; ok is false for a
// request sent without an Idempotency-Key.
func IdempotencyOf(ctx context.Context) (id Idempotency, ok bool) {
	id, ok = ctx.Value(idempotencyKey).(Idempotency)
	return id, ok && id.Key != ""
}
