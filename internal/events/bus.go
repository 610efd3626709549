package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	// SubscribeBatch registers the consumer called name as Subscribe does,
	// for a handler that takes several events per call, so that a consumer
	// which writes what it consumes can commit a backlog in one transaction
	// (one disk sync) instead of one per event.
	//
	// Each call gets the events waiting for the consumer at that moment, at
	// most size of them (DefaultBatchSize when size is 0 or less), in
	// publish order; the next call carries on where it ended. The bus never
	// waits for a batch to fill: a consumer that keeps up gets each event on
	// its own as soon as it is published, one that fell behind gets its
	// backlog size events at a time.
	//
	// A batch is handled as a whole: an error makes the bus deliver every
	// event of the batch again, in the same order and before any later
	// event (after a resubscription the redelivery may be batched
	// differently). A handler that commits only part of a batch before it
	// fails sees that part again and drops it by event id, as it drops any
	// redelivered event.
	//
	// Subscribe and SubscribeBatch share one name space of consumers, and a
	// durable consumer may switch between them from one subscription to the
	// next.
	SubscribeBatch(name string, filters []string, size int, h BatchHandler) (Subscription, error)
	// Close stops delivery to every consumer, waiting for running handlers
	// to return. Publish, Subscribe and SubscribeBatch then fail with
	// ErrClosed.
	Close() error
}

// BatchPublisher is a Bus that takes a run of events in one call. The
// outbox relay hands a bus that has it a whole round at once, so that a bus
// whose Publish waits for the consumers (the all-in-one server's) has them
// queued together and consumers can handle them in batches, instead of
// waiting for each event's consumers before publishing the next.
type BatchPublisher interface {
	// PublishBatch publishes envs in order, each as Publish does, and
	// reports how many of them, from the first, the bus accepted: all, or
	// those before the first it refused, with the error.
	PublishBatch(ctx context.Context, envs []*eventsv1.Envelope) (int, error)
}

// Handler consumes one event. Its context is cancelled when the
// subscription stops, so a handler blocked on a slow dependency lets
// shutdown proceed; the event is then delivered again later.
type Handler func(ctx context.Context, env *eventsv1.Envelope) error

// BatchHandler consumes a batch of events: never empty, in publish order.
// The slice is the handler's only for the call. Its context is cancelled
// when the subscription stops, as a Handler's is.
type BatchHandler func(ctx context.Context, envs []*eventsv1.Envelope) error

// DefaultBatchSize is the largest batch SubscribeBatch hands a consumer
// when the caller does not say: enough for a backlog to cost one
// transaction per few hundred events, small enough that one batch commits
// in milliseconds.
const DefaultBatchSize = 256

// BatchSize returns the largest batch a consumer subscribed with
// SubscribeBatch(…, size, …) gets.
func BatchSize(size int) int {
	if size <= 0 {
		return DefaultBatchSize
	}
	return size
}

// PerEvent wraps a Handler as a BatchHandler for batches of one event: how
// a bus implements Subscribe with the machinery of SubscribeBatch.
func PerEvent(h Handler) BatchHandler {
	return func(ctx context.Context, envs []*eventsv1.Envelope) error { return h(ctx, envs[0]) }
}

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
	size    int // largest batch: 1 for Subscribe
	h       BatchHandler
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
	if h == nil {
		return b.subscribe(name, filters, 1, nil)
	}
	return b.subscribe(name, filters, 1, PerEvent(h))
}

// SubscribeBatch implements Bus: each call hands over what the consumer's
// queue holds, up to size events.
func (b *LocalBus) SubscribeBatch(name string, filters []string, size int, h BatchHandler) (Subscription, error) {
	return b.subscribe(name, filters, BatchSize(size), h)
}

func (b *LocalBus) subscribe(name string, filters []string, size int, h BatchHandler) (Subscription, error) {
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
	s := &localSub{bus: b, name: name, filters: append([]string(nil), filters...), size: size, h: h, done: make(chan struct{})}
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
		batch := slices.Clone(s.queue[:min(len(s.queue), s.size)])
		s.mu.Unlock()
		// At least once: a failing handler gets the same events again after
		// a short pause, and the consumer's later events wait behind them
		// so that per-aggregate order holds.
		if err := s.h(s.ctx, batch); err != nil {
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
		clear(s.queue[:len(batch)])
		s.queue = s.queue[len(batch):]
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
