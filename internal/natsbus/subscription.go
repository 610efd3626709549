package natsbus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/millrace/millrace/gen/go/millrace/events/v1"
	"github.com/millrace/millrace/internal/events"
)

// pullBatch is how many messages one pull request asks for.
const pullBatch = 64

// subscription runs one named consumer: a goroutine that takes the next
// message, hands it to the handler and answers the server.
type subscription struct {
	bus      *Bus
	name     string
	filters  []string
	subjects []string
	h        events.Handler
	ctx      context.Context // handler context; ends at Stop
	cancel   context.CancelFunc
	done     chan struct{}

	mu      sync.Mutex
	it      jetstream.MessagesContext
	stopped bool
	once    sync.Once
}

// open creates or updates the durable consumer and starts pulling from it.
func (s *subscription) open() (jetstream.MessagesContext, error) {
	ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
	defer cancel()
	cons, err := s.ensureConsumer(ctx)
	if err != nil {
		return nil, fmt.Errorf("natsbus: consumer %s on stream %s: %w", s.name, s.bus.opts.Stream, err)
	}
	// The server hands out one message at a time anyway (MaxAckPending
	// 1); a pull request good for many messages is still what keeps the
	// iterator moving: with a batch of one, every message needs a new
	// request, and the client skips one that races its predecessor and
	// then waits for a missed heartbeat (30s) before asking again.
	it, err := cons.Messages(jetstream.PullMaxMessages(pullBatch))
	if err != nil {
		return nil, fmt.Errorf("natsbus: consumer %s: %w", s.name, err)
	}
	return it, nil
}

// ensureConsumer creates the durable consumer, or brings an existing one
// to this subscription's filters while keeping its place in the stream.
func (s *subscription) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	b := s.bus
	cfg := jetstream.ConsumerConfig{
		Durable:       s.name,
		Description:   "Millrace consumer " + s.name,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.opts.AckWait,
		MaxDeliver:    -1, // at least once: an event is never given up on
		MaxAckPending: 1,  // one at a time, so redelivery cannot reorder
	}
	modern := b.serverAtLeast(2, 10)
	switch {
	case len(s.subjects) == 1:
		cfg.FilterSubject = s.subjects[0]
	case len(s.subjects) > 1 && modern:
		cfg.FilterSubjects = s.subjects
	}
	// Without a server filter, the type check on arrival does it all.

	existing, err := b.js.Consumer(ctx, b.opts.Stream, s.name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		// Deleted under a running process (an operator, a test cleanup):
		// put it back rather than stop consuming for good.
		if err := b.ensureStream(ctx); err != nil {
			return nil, err
		}
	case errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return nil, err
	default:
		// Where to start is fixed when a consumer is made; an update that
		// asked to change it would be refused.
		info := existing.CachedInfo()
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = info.Config.DeliverPolicy, info.Config.OptStartSeq, info.Config.OptStartTime
		if !modern && !sameFilters(info.Config, cfg) {
			// Servers before 2.10 take a filter update but then stall
			// delivery; make the consumer again instead.
			return s.remake(ctx, cfg, info.AckFloor.Stream+1)
		}
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, b.opts.Stream, cfg)
	if errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) {
		// A cluster member older than its peers: fall back on the type
		// check on arrival.
		cfg.FilterSubjects = nil
		cons, err = b.js.CreateOrUpdateConsumer(ctx, b.opts.Stream, cfg)
	}
	if err != nil {
		return nil, err
	}
	if !sameFilters(cons.CachedInfo().Config, cfg) {
		// The server kept the old filters, which would silently starve
		// this subscription of the events it now wants.
		return s.remake(ctx, cfg, cons.CachedInfo().AckFloor.Stream+1)
	}
	return cons, nil
}

// remake deletes the consumer and creates it again with cfg, starting at
// stream sequence from: just after the last event it handled, so the
// change of filters neither skips nor repeats anything it was due.
func (s *subscription) remake(ctx context.Context, cfg jetstream.ConsumerConfig, from uint64) (jetstream.Consumer, error) {
	b := s.bus
	if err := b.js.DeleteConsumer(ctx, b.opts.Stream, s.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, from, nil
	b.log.Info("event consumer made again to change its filters", "consumer", s.name, "stream", b.opts.Stream, "from_stream_seq", from)
	return b.js.CreateOrUpdateConsumer(ctx, b.opts.Stream, cfg)
}

// sameFilters reports whether a consumer's filter subjects are those asked.
func sameFilters(got, want jetstream.ConsumerConfig) bool {
	list := func(c jetstream.ConsumerConfig) []string {
		l := slices.Clone(c.FilterSubjects)
		if c.FilterSubject != "" {
			l = append(l, c.FilterSubject)
		}
		slices.Sort(l)
		return l
	}
	return slices.Equal(list(got), list(want))
}

func (s *subscription) run() {
	defer close(s.done)
	log := s.bus.log.With("consumer", s.name, "stream", s.bus.opts.Stream)
	backoff := 100 * time.Millisecond
	for {
		s.mu.Lock()
		it := s.it
		s.mu.Unlock()
		msg, err := it.Next()
		if s.ctx.Err() != nil {
			if err == nil {
				// Taken just as Stop came: hand it back at once.
				_ = msg.Nak()
			}
			return
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			s.handle(msg)
			continue
		}
		if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			log.Warn("pulling events failed; retrying", "err", err)
			if !s.sleep(backoff) {
				return
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		// The iterator ended without Stop: the consumer was deleted or the
		// connection closed. Set up again unless that cannot work.
		if s.bus.nc.IsClosed() {
			log.Error("NATS connection closed; the consumer receives no more events", "err", err)
			return
		}
		log.Warn("event consumer ended unexpectedly; setting it up again", "err", err)
		if !s.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, 10*time.Second)
		next, err := s.open()
		if err != nil {
			log.Warn("setting up the event consumer failed; retrying", "err", err)
			continue // with the closed iterator: back here after the pause
		}
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			next.Stop()
			return
		}
		s.it = next
		s.mu.Unlock()
	}
}

// handle delivers one message and answers the server: Ack once handled,
// Nak with a growing delay on failure, Term for a message that is not an
// event and never will be.
func (s *subscription) handle(msg jetstream.Msg) {
	log := s.bus.log
	env := &eventsv1.Envelope{}
	if err := proto.Unmarshal(msg.Data(), env); err != nil {
		log.Error("message on the events stream is not an event envelope; dropping it", "consumer", s.name, "subject", msg.Subject(), "err", err)
		_ = msg.Term() // no reason: servers before 2.10.4 would ignore the whole answer
		return
	}
	if !events.Matches(s.filters, env.GetType()) {
		s.ack(msg, env) // narrower than the server-side filter could say
		return
	}
	stopKeepAlive := s.keepAlive(msg)
	err := s.h(s.ctx, env)
	stopKeepAlive()
	if err != nil {
		delay := s.retryDelay(msg)
		if s.ctx.Err() != nil {
			delay = 0 // stopping: the next subscriber may have it at once
		}
		log.Warn("event consumer failed; the event will be delivered again", "consumer", s.name, "type", env.GetType(), "id", env.GetId(), "err", err, "retry_in", delay)
		if err := msg.NakWithDelay(delay); err != nil {
			log.Warn("could not hand a failed event back; the server redelivers it after the ack wait", "consumer", s.name, "id", env.GetId(), "err", err)
		}
		return
	}
	s.ack(msg, env)
}

// ack waits for the server to confirm, so that a handled event is not
// delivered again to a consumer that stops and resumes right after.
func (s *subscription) ack(msg jetstream.Msg, env *eventsv1.Envelope) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		s.bus.log.Warn("event acknowledgement failed; the event may be delivered again", "consumer", s.name, "id", env.GetId(), "err", err)
	}
}

// retryDelay doubles the pause with every failed delivery of the message.
func (s *subscription) retryDelay(msg jetstream.Msg) time.Duration {
	o := s.bus.opts
	n := uint64(1)
	if meta, err := msg.Metadata(); err == nil && meta.NumDelivered > 0 {
		n = meta.NumDelivered
	}
	d := o.RetryDelay
	for i := uint64(1); i < n && d < o.MaxRetryDelay; i++ {
		d *= 2
	}
	return min(d, o.MaxRetryDelay)
}

// keepAlive tells the server, while a handler runs long, that the message
// is still being worked on, so it is not delivered again meanwhile.
func (s *subscription) keepAlive(msg jetstream.Msg) (stop func()) {
	every := s.bus.opts.AckWait / 2
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	mu.Lock() // the callback must see t assigned
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		t.Reset(every)
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

func (s *subscription) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// Stop implements events.Subscription. The consumer stays on the server,
// so subscribing the name again resumes where this one stopped.
func (s *subscription) Stop() {
	s.once.Do(func() {
		s.mu.Lock()
		s.stopped = true
		it := s.it
		s.mu.Unlock()
		s.cancel()
		it.Stop()
	})
	<-s.done
	b := s.bus
	b.mu.Lock()
	if b.subs[s.name] == s {
		delete(b.subs, s.name)
	}
	b.mu.Unlock()
}
