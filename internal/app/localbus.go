package app

import (
	"context"
	"errors"
	"slices"
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
// The relay hands the bus a whole round of its outbox at once
// (PublishBatch): every event is queued, then the bus waits for them all,
// so a consumer with a backlog takes it in batches (SubscribeBatch), one
// transaction each, rather than one event per wait.
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
	_, err := b.PublishBatch(ctx, []*eventsv1.Envelope{env})
	return err
}

var _ events.BatchPublisher = (*handledBus)(nil)

// PublishBatch implements events.BatchPublisher: it queues every event of
// envs, then waits for the consumers to handle them, so that a consumer
// with a backlog takes it in batches while the relay waits once. The slow
// bound counts from the call.
func (b *handledBus) PublishBatch(ctx context.Context, envs []*eventsv1.Envelope) (int, error) {
	ws := make([]*handledWait, len(envs)) // nil: nobody to wait for
	queued, err := len(envs), error(nil)
	// Under mu the consumers counted are exactly those the inner bus queues
	// each event for: Subscribe and Stop change both under mu too.
	b.mu.Lock()
	for i, env := range envs {
		w := &handledWait{left: map[string]bool{}, done: make(chan struct{})}
		for name, c := range b.subs {
			if !c.failing && events.Matches(c.filters, env.GetType()) {
				w.left[name] = true
			}
		}
		if len(w.left) > 0 {
			b.waits[env.GetId()] = append(b.waits[env.GetId()], w)
			ws[i] = w
		}
		if err = b.inner.Publish(ctx, env); err != nil {
			queued = i
			break
		}
	}
	for i := queued; i < len(envs); i++ {
		if ws[i] != nil {
			b.forgetLocked(envs[i].GetId(), ws[i])
		}
	}
	b.mu.Unlock()

	slow := time.NewTimer(b.slow)
	defer slow.Stop()
	var gaveUp error // the publisher's context ended before the consumers answered
wait:
	for _, w := range ws[:queued] {
		if w == nil {
			continue
		}
		select {
		case <-w.done:
		case <-slow.C:
			// Queued, as the plain in-process bus promises; the consumer
			// that keeps them waiting must not hold back the others.
			break wait
		case <-ctx.Done():
			gaveUp = ctx.Err()
			break wait
		}
	}
	// Accepted are the events before the first whose consumers failed it
	// (stopped, closed) or that Publish gave up on (ctx); every wait still
	// open is forgotten.
	n := queued
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, w := range ws[:queued] {
		if w == nil {
			continue
		}
		select {
		case <-w.done: // answered, perhaps after the wait ended
			if w.err != nil && i < n {
				n, err = i, w.err
			}
			continue
		default:
		}
		b.forgetLocked(envs[i].GetId(), w)
		if gaveUp != nil && i < n {
			n, err = i, gaveUp
		}
	}
	return n, err
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

// releaseLocked takes consumer name off the waits for the events ids (nil:
// every event) and finishes, with err, those that wait for nobody else;
// with err set they are finished even if others are left.
func (b *handledBus) releaseLocked(name string, ids []string, err error) {
	if ids == nil {
		for id := range b.waits {
			b.releaseEventLocked(name, id, err)
		}
		return
	}
	for _, id := range ids {
		b.releaseEventLocked(name, id, err)
	}
}

func (b *handledBus) releaseEventLocked(name, id string, err error) {
	ws, ok := b.waits[id]
	if !ok {
		return
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

// Subscribe implements events.Bus.
func (b *handledBus) Subscribe(name string, filters []string, h events.Handler) (events.Subscription, error) {
	if h == nil {
		return b.inner.Subscribe(name, filters, nil) // the inner bus says what is wrong
	}
	c := &handledConsumer{filters: slices.Clone(filters)}
	return b.register(name, c, func() (events.Subscription, error) {
		return b.inner.Subscribe(name, filters, func(ctx context.Context, env *eventsv1.Envelope) error {
			return b.handled(ctx, name, c, h(ctx, env), env)
		})
	})
}

// SubscribeBatch implements events.Bus: a batch handled answers the
// publishers of every event in it.
func (b *handledBus) SubscribeBatch(name string, filters []string, size int, h events.BatchHandler) (events.Subscription, error) {
	if h == nil {
		return b.inner.SubscribeBatch(name, filters, size, nil) // the inner bus says what is wrong
	}
	c := &handledConsumer{filters: slices.Clone(filters)}
	return b.register(name, c, func() (events.Subscription, error) {
		return b.inner.SubscribeBatch(name, filters, size, func(ctx context.Context, envs []*eventsv1.Envelope) error {
			return b.handled(ctx, name, c, h(ctx, envs), envs...)
		})
	})
}

// register subscribes on the inner bus and starts counting the consumer in.
func (b *handledBus) register(name string, c *handledConsumer, subscribe func() (events.Subscription, error)) (events.Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sub, err := subscribe()
	if err != nil {
		return nil, err
	}
	b.subs[name] = c
	return &handledSub{bus: b, name: name, inner: sub}, nil
}

// handled tells the publishers waiting for consumer name how its handler
// did with envs, and passes the handler's error on to the inner bus.
func (b *handledBus) handled(ctx context.Context, name string, c *handledConsumer, err error, envs ...*eventsv1.Envelope) error {
	if err != nil && ctx.Err() != nil {
		return err // stopping: Stop answers the waiting publishers
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		// Stop waiting for this consumer: the publishers of these events
		// and of those queued behind them go on without it.
		c.failing = true
		b.releaseLocked(name, nil, nil)
		return err
	}
	c.failing = false
	ids := make([]string, len(envs))
	for i, env := range envs {
		ids[i] = env.GetId()
	}
	b.releaseLocked(name, ids, nil)
	return nil
}

// Close implements events.Bus. Publishers still waiting get ErrClosed.
func (b *handledBus) Close() error {
	err := b.inner.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.subs)
	b.releaseLocked("", nil, events.ErrClosed)
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
		b.releaseLocked(s.name, nil, errConsumerStopped)
	})
}
