package app

import (
	"context"
	"errors"
	"sync"
	"time"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/events"
)

// handledBus wraps the in-process bus so that Publish returns once every
// consumer the event is for has handled it, not merely queued it.
//
// The outbox relay deletes an event from the outbox as soon as Publish
// returns. The in-process bus returns once the event is in each consumer's
// queue in memory, so a process killed before the consumers (the feed,
// webhook delivery, the order service) had committed what the event means
// to them lost the event for good: no webhook, no feed entry, an order that
// never moves to SHIPPED. Waiting for the handlers keeps the event in the
// outbox until the consumers have it in their stores; a crash before then
// makes the relay publish it again after the restart, and the consumers
// de-duplicate by event id.
//
// One consumer must still not hold back the others (the events.Bus
// contract): Publish stops waiting for a consumer whose handler failed
// (the in-process bus retries it from memory, as before) or has not
// answered within the slow bound. Only the events such a consumer has
// queued at a crash are lost to it; a healthy consumer loses nothing.
type handledBus struct {
	inner events.Bus
	slow  time.Duration

	mu    sync.Mutex
	subs  map[string]*handledConsumer
	waits map[string][]*handledWait // event id → publishers waiting for it
}

// handledConsumer is what the bus knows of one consumer.
type handledConsumer struct {
	filters []string
	failing bool // its last handler call failed
}

// handledWait is one Publish waiting for the consumers in left.
type handledWait struct {
	left map[string]bool
	done chan struct{}
	err  error
}

// slowConsumer bounds how long Publish waits for a consumer that neither
// handles nor fails an event: far beyond a bbolt commit, well below
// anything that would make a stuck consumer look like a stuck relay.
const slowConsumer = 5 * time.Second

// errConsumerStopped is what a Publish waiting for a consumer gets when the
// consumer stops first: the event stays in the outbox.
var errConsumerStopped = errors.New("an event consumer stopped before handling the event")

var _ events.Bus = (*handledBus)(nil)

func newHandledBus(inner events.Bus, slow time.Duration) *handledBus {
	return &handledBus{inner: inner, slow: slow, subs: map[string]*handledConsumer{}, waits: map[string][]*handledWait{}}
}

// Publish implements events.Bus.
func (b *handledBus) Publish(ctx context.Context, env *eventsv1.Envelope) error {
	id := env.GetId()
	w := &handledWait{left: map[string]bool{}, done: make(chan struct{})}
	// Under mu the consumers counted are exactly those the inner bus queues
	// the event for: Subscribe and Stop change both under mu too.
	b.mu.Lock()
	for name, c := range b.subs {
		if !c.failing && events.Matches(c.filters, env.GetType()) {
			w.left[name] = true
		}
	}
	if len(w.left) > 0 {
		b.waits[id] = append(b.waits[id], w)
	}
	err := b.inner.Publish(ctx, env)
	if err != nil || len(w.left) == 0 {
		b.forgetLocked(id, w)
		b.mu.Unlock()
		return err
	}
	b.mu.Unlock()
	slow := time.NewTimer(b.slow)
	defer slow.Stop()
	select {
	case <-w.done:
		return w.err
	case <-slow.C:
		// Queued, as the plain in-process bus promises; the consumer that
		// keeps it waiting must not hold back the others.
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.done: // answered meanwhile
		return w.err
	default:
	}
	b.forgetLocked(id, w)
	return err
}

func (b *handledBus) forgetLocked(id string, w *handledWait) {
	ws := b.waits[id]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(b.waits, id)
	} else {
		b.waits[id] = ws
	}
}

// releaseLocked takes consumer name off the waits selected by match and
// finishes, with err, those that wait for nobody else; with err set they
// are finished even if others are left.
func (b *handledBus) releaseLocked(name string, match func(id string) bool, err error) {
	for id, ws := range b.waits {
		if !match(id) {
			continue
		}
		keep := ws[:0]
		for _, w := range ws {
			if name != "" && !w.left[name] {
				keep = append(keep, w)
				continue
			}
			delete(w.left, name)
			if len(w.left) == 0 || err != nil {
				w.err = err
				close(w.done)
				continue
			}
			keep = append(keep, w)
		}
		if len(keep) == 0 {
			delete(b.waits, id)
		} else {
			b.waits[id] = keep
		}
	}
}

// Subscribe implements events.Bus.
func (b *handledBus) Subscribe(name string, filters []string, h events.Handler) (events.Subscription, error) {
	if h == nil {
		return b.inner.Subscribe(name, filters, nil) // the inner bus says what is wrong
	}
	c := &handledConsumer{filters: append([]string(nil), filters...)}
	wrapped := func(ctx context.Context, env *eventsv1.Envelope) error {
		err := h(ctx, env)
		if err != nil && ctx.Err() != nil {
			return err // stopping: Stop answers the waiting publishers
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if err != nil {
			// Stop waiting for this consumer: the publishers of this event
			// and of those queued behind it go on without it.
			c.failing = true
			b.releaseLocked(name, func(string) bool { return true }, nil)
			return err
		}
		c.failing = false
		id := env.GetId()
		b.releaseLocked(name, func(x string) bool { return x == id }, nil)
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	sub, err := b.inner.Subscribe(name, filters, wrapped)
	if err != nil {
		return nil, err
	}
	b.subs[name] = c
	return &handledSub{bus: b, name: name, inner: sub}, nil
}

// Close implements events.Bus. Publishers still waiting get ErrClosed.
func (b *handledBus) Close() error {
	err := b.inner.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.subs)
	b.releaseLocked("", func(string) bool { return true }, events.ErrClosed)
	return err
}

type handledSub struct {
	bus   *handledBus
	name  string
	inner events.Subscription
	once  sync.Once
}

// Stop implements events.Subscription. The inner subscription stops first
// (its running handler may still report an event handled); publishers
// still waiting for the consumer then get errConsumerStopped, so the relay
// keeps their events in the outbox.
func (s *handledSub) Stop() {
	s.once.Do(func() {
		s.inner.Stop()
		b := s.bus
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, s.name)
		b.releaseLocked(s.name, func(string) bool { return true }, errConsumerStopped)
	})
}
