package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
)

// Bus carries published events from the services that emit them to the
// consumers that act on them. Delivery is at least once; consumers
// de-duplicate by event id (storage.MarkProcessed).
//
// The contract every implementation meets is the suite in package
// events/bustest.
type Bus interface {
	// Publish hands one event to the bus. It returns only once the bus has
	// accepted it durably (for the in-process bus: once every subscriber's
	// queue has it). Events published one after another by one caller reach
	// every consumer in that order.
	Publish(ctx context.Context, env *eventsv1.Envelope) error
	// Subscribe registers the consumer called name for the given type
	// filters (exact names or prefixes ending in "*"; none means every
	// type). The handler gets events published after the subscription, one
	// at a time per consumer and in publish order; an error makes the bus
	// deliver the same event again, and the consumer's later events wait
	// behind it so that per-aggregate order holds.
	//
	// A name identifies one consumer: subscribing a name that is already
	// subscribed on this bus fails with ErrConsumerExists. On a durable bus
	// the consumer outlives its subscription: subscribing the name again,
	// even from a new process, resumes with the first event it has not
	// handled, including events retained from before its first subscription.
	Subscribe(name string, filters []string, h Handler) (Subscription, error)
	// Close stops delivery to every consumer, waiting for running handlers
	// to return. Publish and Subscribe then fail with ErrClosed.
	Close() error
}

// Handler consumes one event. Its context is cancelled when the
// subscription stops, so a handler blocked on a slow dependency lets
// shutdown proceed; the event is then delivered again later.
type Handler func(ctx context.Context, env *eventsv1.Envelope) error

// Subscription is a registered consumer.
type Subscription interface {
	// Stop ends delivery to the consumer. It cancels the context of a
	// running handler and waits for it to return, so no handler call
	// happens after Stop returns. Calling it from inside the handler
	// deadlocks.
	Stop()
}

// ErrClosed is returned by a bus that has been closed.
var ErrClosed = errors.New("events: bus closed")

// ErrConsumerExists is returned by Subscribe for a consumer name that is
// already subscribed on the bus. Two subscriptions under one name would
// either split a durable consumer's events between them or deliver every
// event twice in one process; neither is what a caller means.
var ErrConsumerExists = errors.New("events: consumer already subscribed")

// LocalBus is the in-process bus of the embedded default: every subscriber
// has its own unbounded queue and goroutine, so a slow consumer never blocks
// the publisher or the other consumers. It is not durable: a consumer sees
// only events published while it is subscribed, and an event queued in
// memory is gone if the process dies. Publish returns once the event is
// queued, so on its own it does not keep an event in the relay's outbox
// until consumers have it; the all-in-one server wraps it so that Publish
// waits for the consumers' handlers (internal/app, handledBus).
type LocalBus struct {
	mu     sync.Mutex
	subs   map[string]*localSub
	closed bool
}

// NewLocalBus returns an empty in-process bus.
func NewLocalBus() *LocalBus { return &LocalBus{subs: map[string]*localSub{}} }

type localSub struct {
	bus     *LocalBus
	name    string
	filters []string
	h       Handler
	ctx     context.Context // cancelled by Stop, so a blocked handler returns
	cancel  context.CancelFunc
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*eventsv1.Envelope
	stopped bool
	done    chan struct{}
}

// Publish implements Bus.
func (b *LocalBus) Publish(_ context.Context, env *eventsv1.Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	for _, s := range b.subs {
		if !Matches(s.filters, env.GetType()) {
			continue
		}
		s.mu.Lock()
		s.queue = append(s.queue, env)
		s.cond.Signal()
		s.mu.Unlock()
	}
	return nil
}

// Subscribe implements Bus.
func (b *LocalBus) Subscribe(name string, filters []string, h Handler) (Subscription, error) {
	if name == "" || h == nil {
		return nil, errors.New("events: Subscribe needs a consumer name and a handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if _, ok := b.subs[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrConsumerExists, name)
	}
	s := &localSub{bus: b, name: name, filters: append([]string(nil), filters...), h: h, done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cond = sync.NewCond(&s.mu)
	b.subs[name] = s
	go s.run()
	return s, nil
}

func (s *localSub) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.stopped {
			s.cond.Wait()
		}
		if s.stopped {
			s.mu.Unlock()
			return
		}
		env := s.queue[0]
		s.mu.Unlock()
		// At least once: a failing handler gets the same event again after a
		// short pause, and the consumer's later events wait behind it so that
		// per-aggregate order holds.
		if err := s.h(s.ctx, env); err != nil {
			if s.sleep(RetryPause) {
				return
			}
			continue
		}
		s.mu.Lock()
		if s.stopped { // Stop dropped the queue while the handler ran
			s.mu.Unlock()
			return
		}
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.mu.Unlock()
	}
}

// RetryPause is how long a consumer of the LocalBus waits before retrying a
// failed event.
var RetryPause = 200 * time.Millisecond

// sleep waits d or until the subscription stops; it reports whether it stopped.
func (s *localSub) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.stopped
	case <-s.ctx.Done():
		return true
	}
}

// Stop implements Subscription.
func (s *localSub) Stop() {
	s.bus.mu.Lock()
	if s.bus.subs[s.name] == s {
		delete(s.bus.subs, s.name)
	}
	s.bus.mu.Unlock()
	s.mu.Lock()
	s.stopped = true
	s.queue = nil
	s.cond.Broadcast()
	s.mu.Unlock()
	s.cancel()
	<-s.done
}

// Close implements Bus: it stops every subscription.
func (b *LocalBus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := make([]*localSub, 0, len(b.subs))
	for _, s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.Stop()
	}
	return nil
}
