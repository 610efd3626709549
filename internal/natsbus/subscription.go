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

// fetchWait is how long a pull request for the next event waits on the
// server before the subscription asks again. The client sends such long
// requests with heartbeats, so a connection lost meanwhile is noticed within
// seconds, not at the end of the wait.
const fetchWait = 30 * time.Second

// subscription runs one named consumer: a goroutine that takes the messages
// waiting for it, hands them to the handler as one batch and answers the
// server before it asks for more.
type subscription struct {
	bus      *Bus
	name     string
	filters  []string
	subjects []string
	size     int // largest batch, and the consumer's MaxAckPending
	h        events.BatchHandler
	ctx      context.Context // handler context; ends at Stop
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once

	// Set by open before run starts, then run's own.
	cons jetstream.Consumer
	// delivered is the consumer's delivery sequence of the last message
	// this subscription received: every delivery since open must be the
	// next one (see inSequence).
	delivered uint64
	// remakeFrom is where a consumer that remake deleted starts when it is
	// made again, until that succeeds.
	remakeFrom uint64
}

// errStranded reports a gap in a consumer's deliveries: a message went to a
// pull request nobody reads any more (one that Stop or a timeout cut short
// while the server was answering it). It stays out until the ack wait, and
// later events must not overtake it meanwhile.
var errStranded = errors.New("natsbus: an event went to a pull request that was given up")

// open creates or updates the durable consumer and takes it over for this
// subscription.
func (s *subscription) open() error {
	ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
	defer cancel()
	cons, err := s.ensureConsumer(ctx)
	if err != nil {
		return fmt.Errorf("natsbus: consumer %s on stream %s: %w", s.name, s.bus.opts.Stream, err)
	}
	s.cons, s.delivered = cons, cons.CachedInfo().Delivered.Consumer
	return nil
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
		MaxDeliver:    -1,     // at least once: an event is never given up on
		MaxAckPending: s.size, // one batch at a time, so redelivery cannot reorder
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
		if s.remakeFrom > 0 {
			return s.remake(ctx, cfg, s.remakeFrom, "a remake failed halfway")
		}
	case err != nil:
		return nil, err
	default:
		// Where to start is fixed when a consumer is made; an update that
		// asked to change it would be refused.
		info := existing.CachedInfo()
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = info.Config.DeliverPolicy, info.Config.OptStartSeq, info.Config.OptStartTime
		if info.NumAckPending > 0 {
			// Events handed to a subscriber that is gone (a process that
			// died holding a batch, a Stop that cut a batch or a pull
			// short) would come back only after the ack wait, and through
			// the server's redelivery queue, which does not keep their
			// order; with more than one event allowed out, later events
			// would overtake them meanwhile. Made again from just after
			// the last event it handled, the consumer delivers them at
			// once and in stream order. A consumer name belongs to one
			// process at a time, so no live subscriber loses its batch.
			return s.remake(ctx, cfg, resumeFrom(info), "events it handed out were not answered")
		}
		if !modern && !sameFilters(info.Config, cfg) {
			// Servers before 2.10 take a filter update but then stall
			// delivery; make the consumer again instead.
			return s.remake(ctx, cfg, resumeFrom(info), "to change its filters")
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
		return s.remake(ctx, cfg, resumeFrom(cons.CachedInfo()), "to change its filters")
	}
	return cons, nil
}

// resumeFrom is the stream sequence a consumer made again starts at: just
// after the last event it handled, and never before where it was last made
// to start. A consumer made to start at a sequence has handled nothing yet
// in the ack floor some servers report for it (2.9 reports 0 there until
// its first acknowledgement); starting before would hand out again what an
// earlier incarnation handled.
func resumeFrom(info *jetstream.ConsumerInfo) uint64 {
	from := info.AckFloor.Stream + 1
	if info.Config.DeliverPolicy == jetstream.DeliverByStartSequencePolicy && info.Config.OptStartSeq > from {
		from = info.Config.OptStartSeq
	}
	return from
}

// remake deletes the consumer and creates it again with cfg, starting at
// stream sequence from: just after the last event it handled, so the
// change neither skips nor repeats anything it was due. Should the
// creation fail, the next attempt of this subscription starts at from too,
// not at the start of the stream.
func (s *subscription) remake(ctx context.Context, cfg jetstream.ConsumerConfig, from uint64, why string) (jetstream.Consumer, error) {
	b := s.bus
	s.remakeFrom = from
	if err := b.js.DeleteConsumer(ctx, b.opts.Stream, s.name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, from, nil
	b.log.Info("event consumer made again", "why", why, "consumer", s.name, "stream", b.opts.Stream, "from_stream_seq", from)
	cons, err := b.js.CreateOrUpdateConsumer(ctx, b.opts.Stream, cfg)
	if err != nil {
		return nil, err
	}
	s.remakeFrom = 0
	return cons, nil
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
		msgs, err := s.fetch()
		if s.ctx.Err() != nil {
			// Taken just as Stop came, or none: the next subscription
			// starts with them (ensureConsumer).
			return
		}
		switch {
		case len(msgs) == 0:
		case !s.inSequence(msgs):
			err = errStranded // set up again: from the last event handled
		case !s.handle(msgs):
			return
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		// The consumer may be gone (deleted by an operator, a stream made
		// again) or the connection lost: set up again unless that cannot
		// work.
		if s.bus.nc.IsClosed() {
			log.Error("NATS connection closed; the consumer receives no more events", "err", err)
			return
		}
		log.Warn("pulling events failed; setting the consumer up again", "err", err)
		if !s.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, 10*time.Second)
		if err := s.open(); err != nil {
			log.Warn("setting up the event consumer failed; retrying", "err", err)
			// The pull fails again, or is out of sequence: back here
			// after the pause.
		}
	}
}

// inSequence reports whether msgs are the consumer's next deliveries. A gap
// means one went elsewhere: a stranded event (errStranded).
func (s *subscription) inSequence(msgs []jetstream.Msg) bool {
	for _, msg := range msgs {
		meta, err := msg.Metadata()
		if err != nil || meta.Sequence.Consumer != s.delivered+1 {
			return false
		}
		s.delivered = meta.Sequence.Consumer
	}
	return true
}

// fetch returns the messages waiting for the consumer, up to a batch,
// without waiting for more to come. When none are waiting it waits for the
// next one and returns it alone, so a consumer that keeps up gets every
// event as soon as it is published, and a consumer that fell behind gets a
// batch at a time.
func (s *subscription) fetch() ([]jetstream.Msg, error) {
	batch, err := s.cons.FetchNoWait(s.size)
	if err != nil {
		return nil, err
	}
	msgs, err := collect(batch)
	if len(msgs) > 0 || err != nil {
		return msgs, err
	}
	if s.ctx.Err() != nil {
		return nil, s.ctx.Err() // a pull now would only strand an event
	}
	ctx, cancel := context.WithTimeout(s.ctx, fetchWait)
	defer cancel()
	batch, err = s.cons.Fetch(1, jetstream.FetchContext(ctx))
	if err != nil {
		return nil, err
	}
	msgs, err = collect(batch)
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil // a quiet stream: ask again
	}
	return msgs, err
}

// collect reads a pull request's messages until it ends.
func collect(b jetstream.MessageBatch) ([]jetstream.Msg, error) {
	var msgs []jetstream.Msg
	for msg := range b.Messages() {
		msgs = append(msgs, msg)
	}
	return msgs, b.Error()
}

// handle delivers a batch and answers the server: Ack once handled (events
// the filters leave out included), Term for a message that is not an event
// and never will be. It reports false when the subscription stopped before
// the handler succeeded: the batch then stays unanswered, for the next
// subscription to start with.
func (s *subscription) handle(msgs []jetstream.Msg) bool {
	acks := make([]jetstream.Msg, 0, len(msgs))
	envs := make([]*eventsv1.Envelope, 0, len(msgs))
	for _, msg := range msgs {
		env := &eventsv1.Envelope{}
		if err := proto.Unmarshal(msg.Data(), env); err != nil {
			s.bus.log.Error("message on the events stream is not an event envelope; dropping it", "consumer", s.name, "subject", msg.Subject(), "err", err)
			_ = msg.Term() // no reason: servers before 2.10.4 would ignore the whole answer
			continue
		}
		acks = append(acks, msg)
		if events.Matches(s.filters, env.GetType()) { // narrower than the server-side filter could say
			envs = append(envs, env)
		}
	}
	if len(envs) > 0 && !s.deliver(acks, envs) {
		return false
	}
	s.ack(acks)
	return true
}

// deliver calls the handler until it succeeds, pausing between failures
// with a doubling delay. The batch stays with this subscription meanwhile,
// kept from redelivery by progress notices, so that nothing can overtake
// it. It reports false when the subscription stopped first.
func (s *subscription) deliver(msgs []jetstream.Msg, envs []*eventsv1.Envelope) bool {
	stopKeepAlive := s.keepAlive(msgs)
	defer stopKeepAlive()
	o := s.bus.opts
	delay := o.RetryDelay
	for {
		err := s.h(s.ctx, envs)
		if err == nil {
			return true
		}
		if s.ctx.Err() != nil {
			return false
		}
		s.bus.log.Warn("event consumer failed; the events will be delivered again", "consumer", s.name, "events", len(envs), "type", envs[0].GetType(), "id", envs[0].GetId(), "err", err, "retry_in", delay)
		if !s.sleep(delay) {
			return false
		}
		delay = min(2*delay, o.MaxRetryDelay)
	}
}

// ack answers a handled batch: every message but the last without waiting,
// the last waiting for the server to confirm. The server takes one
// connection's answers to a consumer in order, so the confirmation covers
// the whole batch: the next pull cannot find any of it still out, and a
// consumer that stops and resumes right after is not handed it again.
func (s *subscription) ack(msgs []jetstream.Msg) {
	if len(msgs) == 0 {
		return
	}
	err := func() error {
		for _, msg := range msgs[:len(msgs)-1] {
			if err := msg.Ack(); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		return msgs[len(msgs)-1].DoubleAck(ctx)
	}()
	if err != nil {
		s.bus.log.Warn("event acknowledgement failed; the events may be delivered again", "consumer", s.name, "events", len(msgs), "err", err)
	}
}

// keepAlive tells the server, while a handler runs long or is retried,
// that the messages are still being worked on, so they are not delivered
// again meanwhile.
func (s *subscription) keepAlive(msgs []jetstream.Msg) (stop func()) {
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
		for _, msg := range msgs {
			_ = msg.InProgress()
		}
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
	s.once.Do(s.cancel) // ends a pull in flight, and a handler's context
	<-s.done
	b := s.bus
	b.mu.Lock()
	if b.subs[s.name] == s {
		delete(b.subs, s.name)
	}
	b.mu.Unlock()
}
