package events

import (
	"context"
	"time"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
)

// Paced wraps a BatchHandler whose every call costs a disk sync so that,
// while events keep arriving, it is called at most once per interval: after
// a batch smaller than size it waits out the rest of the interval before
// taking the next, and the events published meanwhile arrive as one batch.
// A full batch (size events, a backlog) is followed at once, so pacing never
// lowers how fast a consumer drains, and a lone event after a quiet spell
// is handled at once; an event published while the consumer waits is
// handled at most interval after the previous batch began.
//
// What it changes is how often a consumer that keeps up syncs: the feed,
// which takes every event, would otherwise commit a few events at a time
// hundreds of times a second, each commit an fsync on the disk the
// services' own commits wait for. A publisher that waits for its events to
// be handled waits for the pacing too.
//
// size must be the size the consumer subscribed with (BatchSize gives the
// default). The wait ends early when the subscription stops. A failed batch
// is not waited after: the bus's retry pause applies.
func Paced(h BatchHandler, interval time.Duration, size int) BatchHandler {
	size = BatchSize(size)
	return func(ctx context.Context, envs []*eventsv1.Envelope) error {
		start := time.Now()
		if err := h(ctx, envs); err != nil {
			return err
		}
		rest := interval - time.Since(start)
		if len(envs) >= size || rest <= 0 {
			return nil
		}
		wait := time.NewTimer(rest)
		defer wait.Stop()
		select {
		case <-wait.C:
		case <-ctx.Done():
		}
		return nil
	}
}
