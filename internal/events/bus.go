package events

import (
	"context"
	"errors"
	"sync"
	"time"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
)

// Bus carries published events from the services that emit them to the
// consumers that act on them. Delivery is at least once; consumers
// de-duplicate by event id (storage.MarkProcessed).
type Bus interface {
	// Publish hands one event to the bus. It returns only once the bus has
	// accepted it durably (for the in-process bus: once every subscriber's
	// queue has it).
	Publish(ctx context.Context, env *eventsv1.Envelope) error
	// Subscribe registers a named consumer for the given type filters. The
	// handler is called for events published after the subscription, one at
	// a time per consumer; an error makes the bus redeliver the event.
	Subscribe(name string, filters []string, h Handler) (Subscription, error)
	// Close stops delivery.
	Close() error
}

// Handler consumes one event.
type Handler func(ctx context.Context, env *eventsv1.Envelope) error

// Subscription is a registered consumer.
type Subscription interface {
	// Stop ends delivery to the consumer.
	Stop()
}

// ErrClosed is returned by a bus that has been closed.
var ErrClosed = errors.New("events: bus closed")

// LocalBus is the in-process bus of the embedded default: every subscriber
// has its own unbounded queue and goroutine, so a slow consumer never blocks
// the publisher or the other consumers.
type LocalBus struct {
	mu     sync.Mutex
	subs   map[*localSub]struct{}
	closed bool
}

// NewLocalBus returns an empty in-process bus.
func NewLocalBus() *LocalBus { return &LocalBus{subs: map[*localSub]struct{}{}} }

type localSub struct {
	bus     *LocalBus
	name    string
	filters []string
	h       Handler
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*eventsv1.Envelope
	stopped bool
	stopCh  chan struct{}
	done    chan struct{}
}

// Publish implements Bus.
func (b *LocalBus) Publish(_ context.Context, env *eventsv1.Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	for s := range b.subs {
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
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	s := &localSub{bus: b, name: name, filters: filters, h: h, stopCh: make(chan struct{}), done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	b.subs[s] = struct{}{}
	go s.run()
	return s, nil
}

func (s *localSub) run() {
	defer close(s.done)
	ctx := context.Background()
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
		if err := s.h(ctx, env); err != nil {
			if s.sleep(RetryPause) {
				return
			}
			continue
		}
		s.mu.Lock()
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.mu.Unlock()
	}
}

// RetryPause is how long a consumer waits before retrying a failed event.
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
	case <-s.stopCh:
		return true
	}
}

// Stop implements Subscription.
func (s *localSub) Stop() {
	s.bus.mu.Lock()
	delete(s.bus.subs, s)
	s.bus.mu.Unlock()
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.stopCh)
	}
	s.cond.Broadcast()
	s.mu.Unlock()
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
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.Stop()
	}
	return nil
}
